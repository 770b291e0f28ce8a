#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the install manifest (what install.sh created).

# ---------------------------------------------------------------- manifest
# One line per thing install.sh created: type<TAB>sha256 or -<TAB>path (relative to the
# prefix). Types: dir (removed when empty), data (var/anomaly, logs/anomaly: removed with
# their contents unless --keep-data), file (rules, decoders, config, launcher: removed
# when unchanged), dist (a new default written beside a changed file), log (an output file),
# venv (an absolute path: the virtualenv the add-on was pip-installed into; its sha field
# is "created" when install.sh made it, and only then does --uninstall remove it).

declare -A old_type=() old_sha=() new_type=() new_sha=()
old_order=()
new_order=()
old_venvs=()
new_venvs=()
declare -A created_venvs=()  # virtualenvs install.sh made (from the manifest, or this run)
mark_created_venv() { created_venvs[$1]=1; }

read_manifest() {
    local f=$prefix/$MANIFEST_REL t s p
    [ -f "$f" ] || return 0
    while IFS=$'\t' read -r t s p; do
        case $t in ''|'#'*) continue ;; esac
        if [ "$t" = venv ]; then
            case $p in /?*)
                old_venvs+=("$p")
                [ "$s" != created ] || created_venvs[$p]=1
                continue ;;
            esac
            die "$f lists a virtualenv '$p' that is not an absolute path; fix or delete that line."
        fi
        case $p in
            ''|/*|..|../*|*/../*|*/..) die "$f lists an unsafe path '$p'; fix or delete that line." ;;
        esac
        # Only our own places: a damaged manifest must not make uninstall touch anything else.
        case $t:$p in
            dir:*|data:var/anomaly|data:logs/anomaly|log:logs/anomaly/*) ;;
            file:etc/anomaly/*|file:etc/rules/*|file:etc/decoders/*|file:wodles/anomaly/*) ;;
            file:integrations/custom-anomaly|file:active-response/bin/anomaly-response) ;;
            dist:etc/anomaly/*|dist:etc/rules/*|dist:etc/decoders/*) ;;
            *) die "$f has an unexpected entry '$t $p'; fix or delete that line." ;;
        esac
        [ -n "${old_type[$p]:-}" ] || old_order+=("$p")
        old_type[$p]=$t
        old_sha[$p]=$s
    done <"$f"
}

record() {  # record TYPE SHA REL
    [ -n "${new_type[$3]:-}" ] || new_order+=("$3")
    new_type[$3]=$1
    new_sha[$3]=$2
}

write_manifest() {
    local f=$prefix/$MANIFEST_REL tmp=$work/manifest p t
    {
        say "# wazuh-anomaly install manifest: what install.sh created under $prefix."
        say "# type<TAB>sha256<TAB>path; install.sh --uninstall removes exactly this."
        for p in ${new_venvs[@]+"${new_venvs[@]}"}; do
            # ours: made now, listed so before, or carrying the mark of an earlier (failed) run
            if [ -n "${created_venvs[$p]:-}" ] || [ -f "$p/$VENV_MARK" ]; then t=created; else t=-; fi
            printf 'venv\t%s\t%s\n' "$t" "$p"
        done
        for p in ${new_order[@]+"${new_order[@]}"}; do
            printf '%s\t%s\t%s\n' "${new_type[$p]}" "${new_sha[$p]}" "$p"
        done
    } >"$tmp"
    if [ -f "$f" ] && cmp -s "$tmp" "$f"; then return 0; fi
    tx_file "$f"
    install -m 0640 -- "$tmp" "$f"
    perm 0640 "$f"
}
