#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the virtualenv and the pip install of the package.

# ---------------------------------------------------------------- Python environment

py_version_ok() {
    "$1" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null
}
py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo unknown; }

in_framework() {  # the path as given, or where its symlinks lead
    local p
    for p in "$1" "$(readlink -f -- "$1" 2>/dev/null || true)"; do
        case $p in "$prefix"/framework/*|/var/ossec/framework/*) return 0 ;; esac
    done
    return 1
}

find_python() {
    local c p
    if [ -n "$python_opt" ]; then
        p=$(command -v -- "$python_opt" 2>/dev/null) || die "--python $python_opt is not an executable."
        ! in_framework "$p" || die "--python $p is the manager's own framework Python; use a system Python 3.10-3.12 instead."
        py_version_ok "$p" || die "--python $p is Python $(py_version "$p"); wazuh-anomaly needs 3.10, 3.11 or 3.12."
        python=$p
        return 0
    fi
    for c in python3.12 python3.11 python3.10 python3; do
        p=$(command -v "$c" 2>/dev/null) || continue
        in_framework "$p" && continue
        if py_version_ok "$p"; then python=$p; return 0; fi
    done
    die "no Python 3.10-3.12 found on PATH (python3.12, python3.11, python3.10, python3); install one or pass --python."
}

pip() { "$venv/bin/python" -m pip --disable-pip-version-check --no-input -q "$@"; }

setup_python() {
    local vpy=$venv/bin/python nbi=() idx=() missing=() d
    if [ -x "$vpy" ]; then
        py_version_ok "$vpy" ||
            die "the virtualenv $venv runs Python $(py_version "$vpy"); wazuh-anomaly needs 3.10-3.12, so remove it or pass another --venv."
        say "using the virtualenv $venv (Python $(py_version "$vpy"))"
        # The wodle runs this Python as root: nobody else may be able to change it.
        if [ "$(id -u)" = 0 ] && [ -n "$(find "$venv" "$venv/bin" "$venv/lib" -maxdepth 0 \( -perm -0002 -o -perm -0020 -o ! -user root \) -print -quit 2>/dev/null)" ]; then
            say "warning: $venv is writable by users other than root, and the wodle runs it as root; make it root-owned (chown -R root: $venv; chmod -R go-w $venv)" >&2
        fi
        # Put back as it is if anything later fails (where it really is, if it is a link).
        [ "$dry" = 1 ] || tx_venv "$(readlink -f -- "$venv")"
    else
        [ ! -e "$venv" ] || die "$venv exists but is not a virtualenv (no bin/python); remove it or pass another --venv."
        find_python
        if [ "$dry" = 1 ]; then
            say "[dry-run] would create the virtualenv $venv with $python (Python $(py_version "$python"))"
        else
            d=$(dirname "$venv")
            while [ ! -d "$d" ]; do missing+=("$d"); d=$(dirname "$d"); done  # deepest first
            tx_new_venv "$venv" ${missing[@]+"${missing[@]}"}  # removed again if anything fails
            mkdir -p -- "$(dirname "$venv")"
            if ! "$python" -m venv "$venv"; then
                die "could not create a virtualenv with $python; on Debian/Ubuntu install python3-venv, or pass another --python."
            fi
            # Marks the virtualenv as ours (uninstall removes it) and lists the parents made.
            printf '%s\n' ${missing[@]+"${missing[@]}"} >"$venv/$VENV_MARK"
            mark_created_venv "$venv"
            chmod 0755 -- "$venv"
            say "created the virtualenv $venv with $python (Python $(py_version "$python"))"
        fi
    fi

    if [ -n "$find_links" ]; then idx=(--no-index --find-links "$find_links"); fi

    # Installed torch (what pip itself would count as satisfied): no download.
    if [ -x "$vpy" ] && "$vpy" -c 'import importlib.util, importlib.metadata as m, sys; m.version("torch"); sys.exit(importlib.util.find_spec("torch") is None)' >/dev/null 2>&1; then
        say "torch $("$vpy" -c 'import importlib.metadata as m; print(m.version("torch"))') is already installed in $venv; skipping the torch step"
    elif [ -n "$find_links" ]; then
        if [ "$dry" = 1 ]; then say "[dry-run] would install torch from $find_links (offline)"
        else
            say "installing torch from $find_links (offline)"
            pip install "${idx[@]}" 'torch>=2.0' ||
                die "installing torch from $find_links failed (see pip's output above); the folder needs a torch wheel for Python $(py_version "$vpy")."
        fi
    elif [ "$torch_index" = pypi ]; then
        local what="torch from the default package index"
        [ "$cuda" = 0 ] || what="torch with CUDA from the default package index (a large download)"
        if [ "$dry" = 1 ]; then say "[dry-run] would install $what"
        else
            say "installing $what"
            pip install 'torch>=2.0' ||
                die "installing torch from the default package index failed (see pip's output above); for an offline manager use --find-links DIR."
        fi
    else
        if [ "$dry" = 1 ]; then say "[dry-run] would install torch from $torch_index"
        else
            say "installing torch from $torch_index"
            pip install --index-url "$torch_index" 'torch>=2.0' ||
                die "installing torch from $torch_index failed (see pip's output above); if this manager cannot reach it, use --find-links DIR (a folder of wheels) or --torch-index pypi."
        fi
    fi

    if [ "$dry" = 1 ]; then
        say "[dry-run] would install wazuh-anomaly from $REPO into $venv"
        return 0
    fi
    # Offline managers: build with the virtualenv's setuptools instead of downloading it.
    if "$vpy" - <<'EOF' 2>/dev/null; then nbi=(--no-build-isolation); fi
import sys
import setuptools
version = tuple(int(p) for p in setuptools.__version__.split(".")[:2])
if version < (77, 0):   # older ones cannot read pyproject.toml's SPDX license string
    sys.exit(1)
EOF
    say "installing wazuh-anomaly from $REPO into $venv"
    # Build from a copy: pip would write build/ and *.egg-info into the source tree.
    local src=$work/src f
    mkdir "$src"
    for f in "$REPO"/* "$REPO"/.[!.]*; do [ ! -f "$f" ] || cp -p -- "$f" "$src/"; done
    cp -R -- "$REPO/integration" "$src/integration"
    # (a compiled module built in the source tree is for that tree's Python: pip builds its own)
    find "$src/integration" \( -name __pycache__ -o -name '*.egg-info' -o -name '*.so' \) -prune -exec rm -rf {} +
    # The package alone first: resolving torch's whole dependency tree is slow, and
    # needless when "pip check" finds every requirement already satisfied.
    pip install --no-deps ${nbi[@]+"${nbi[@]}"} ${idx[@]+"${idx[@]}"} "$src" ||
        die "installing wazuh-anomaly into $venv failed (see pip's output above)."
    # --indexer: the "indexer" extra (opensearch-py), which "pip check" does not ask for.
    local target=$src
    [ "$indexer" = 0 ] || target="${src}[indexer]"
    if ! "$vpy" -m pip --disable-pip-version-check check >/dev/null 2>&1 ||
        { [ "$indexer" = 1 ] && ! "$vpy" -c 'import opensearchpy' >/dev/null 2>&1; }; then
        say "installing the dependencies of wazuh-anomaly"
        pip install ${nbi[@]+"${nbi[@]}"} ${idx[@]+"${idx[@]}"} "$target" ||
            die "installing the dependencies of wazuh-anomaly into $venv failed (see pip's output above)."
    fi
    [ -x "$venv/bin/wazuh-anomaly" ] || die "pip did not create $venv/bin/wazuh-anomaly; check that $REPO is the wazuh-anomaly source tree."
    # The NetFlow normaliser's compiled fast path is optional (setup.py): pip builds it when
    # a C compiler and the Python headers are there. Without it the Python code runs.
    if "$vpy" -c 'import wazuh_anomaly.netflow.flowfast' >/dev/null 2>&1; then
        say "the NetFlow normaliser's compiled fast path is built"
    else
        say "note: the NetFlow normaliser's compiled fast path was not built (no C compiler or Python headers); \
'wazuh-anomaly netflow normalize' runs in Python, writing the same events about 3 times slower. To build it, \
install gcc and the Python development headers (python3-dev or python3-devel) and run install.sh again."
    fi
}
