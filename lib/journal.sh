#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the journal that rolls every change back on failure.

# ---------------------------------------------------------------- transaction
# Every change under the prefix is journaled first, so that a failed configuration
# check (or any error) puts back exactly what was there: never half-installed.

tx_active=0
tx_log=()
tx_commit_rm=()
tx_venv_before=   # a directory beside the virtualenv that holds its state before this run
tx_venv_said=
declare -A tx_seen=()

tx_begin() { tx_active=1; tx_log=(); tx_commit_rm=(); tx_seen=(); mkdir "$work/tx"; }
tx_file() {  # before writing or removing the file $1
    local p=$1 n
    [ -z "${tx_seen[$p]:-}" ] || return 0
    tx_seen[$p]=1
    if [ -e "$p" ] || [ -L "$p" ]; then
        n=${#tx_log[@]}
        cp -P -p -- "$p" "$work/tx/$n"  # a link is kept as a link, never read through
        tx_log+=("restore $n $p")
    else
        tx_log+=("remove - $p")
    fi
}
tx_mkdir() { mkdir -- "$1"; tx_log+=("rmdir - $1"); }
# Before pip changes an existing virtualenv: a copy of it beside it, made of hard links (a
# torch virtualenv is gigabytes; links cost nothing and take a second). That is safe because
# nothing install.sh runs writes into an existing file there: pip moves the files of an
# old version away and unlinks a file before writing its new one, and Python replaces .pyc
# files by renaming. Rolling back renames the copy into place; committing deletes it.
tx_venv() {  # tx_venv DIR
    local parent
    parent=$(dirname -- "$1")
    tx_venv_before=$(mktemp -d "$parent/.${1##*/}.anomaly-before.XXXXXX") ||
        die "cannot write to $parent, where install.sh keeps the virtualenv's previous state until the install succeeds; run install.sh as root."
    tx_log+=("restore-venv - $1")
    if ! cp -a -l -- "$1" "$tx_venv_before/venv"; then
        die "could not copy $1 (as hard links) to $tx_venv_before before upgrading it; nothing was changed."
    fi
    tx_venv_said=$1
}
tx_new_venv() {  # tx_new_venv DIR PARENT...: a virtualenv (and its missing parents) this run makes
    local i
    for ((i = $# ; i >= 2; i--)); do tx_log+=("rmdir - ${!i}"); done  # shallowest first
    tx_log+=("rmtree - $1")
    tx_venv_said=$1
}
tx_rollback() {
    local i op n p
    for ((i = ${#tx_log[@]} - 1; i >= 0; i--)); do
        read -r op n p <<<"${tx_log[i]}"
        case $op in
            restore) mv -f -- "$work/tx/$n" "$p" ;;
            remove) rm -f -- "$p" ;;
            rmdir) rmdir -- "$p" 2>/dev/null || true ;;
            restore-conf) mv -f -- "$n" "$p" ;;
            rmtree) rm -rf -- "$p" ;;
            restore-venv)
                if [ -d "$tx_venv_before/venv" ]; then
                    if [ -e "$p" ]; then mv -- "$p" "$tx_venv_before/failed"; fi
                    mv -- "$tx_venv_before/venv" "$p"
                fi
                rm -rf -- "$tx_venv_before" ;;
        esac
    done
    tx_active=0
}
tx_commit() {
    local p
    for p in ${tx_commit_rm[@]+"${tx_commit_rm[@]}"}; do rm -f -- "$p"; done
    [ -z "$tx_venv_before" ] || rm -rf -- "$tx_venv_before"
    tx_active=0
}


on_exit() {
    local rc=$?
    if [ "$tx_active" = 1 ]; then
        tx_rollback
        if [ -n "$tx_venv_said" ]; then
            say "rolled back: $prefix and the virtualenv $tx_venv_said are as they were before this run." >&2
        else
            say "rolled back: $prefix is as it was before this run." >&2
        fi
        [ "$rc" != 0 ] || rc=1
    fi
    rm -rf -- "$work"
    exit "$rc"
}

# Scratch space for this run, and the EXIT trap that rolls back and cleans it up.
make_work_dir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/wazuh-anomaly-install.XXXXXX")
    trap on_exit EXIT
    trap 'exit 130' INT TERM
}
