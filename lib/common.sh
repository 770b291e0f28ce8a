#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): messages, questions, ownership.

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# "installed" when acting, "[dry-run] would install" when only planning.
v() {
    if [ "$dry" = 1 ]; then printf '[dry-run] would %s' "$1"; return; fi
    case $1 in
        add) printf added ;; create) printf created ;; install) printf installed ;;
        keep) printf kept ;; remove) printf removed ;; replace) printf replaced ;;
        restart) printf restarted ;; update) printf updated ;; write) printf wrote ;;
        *) printf '%sed' "$1" ;;
    esac
}


confirm() {
    [ "$yes" = 0 ] || return 0
    local answer
    printf '%s [y/N] ' "$1"
    read -r answer || answer=
    case $answer in [yY]|[yY][eE][sS]) return 0 ;; *) return 1 ;; esac
}


# Ownership: root:wazuh needs root and the wazuh group; a sandbox has neither.
decide_ownership() {
    can_chown=0
    if [ "$(id -u)" = 0 ]; then
        if getent group wazuh >/dev/null 2>&1 || grep -q '^wazuh:' /etc/group 2>/dev/null; then
            can_chown=1
        else
            chown_why="no 'wazuh' group on this host (a sandbox prefix)"
        fi
    else
        chown_why="not running as root (fine for a sandbox prefix, not for a real manager)"
    fi
    chown_said=0
}
# Root never follows a link the wazuh user could have planted: it can write logs/anomaly,
# var/anomaly/realtime and etc/rules, and chmod/chown/">" would act on the link's target.
no_link() {  # no_link PATH
    [ ! -L "$1" ] ||
        die "$1 is a symbolic link where install.sh expects its own file or directory; the wazuh user can write there, so check who made it, remove it and re-run."
}
perm() {  # perm MODE PATH: mode always, root:wazuh when possible
    no_link "$2"
    chmod "$1" -- "$2"
    if [ "$can_chown" = 1 ]; then
        chown root:wazuh -- "$2"
    elif [ "$chown_said" = 0 ]; then
        say "skipping chown: ${chown_why}"
        chown_said=1
    fi
}

sha() { sha256sum -- "$1" | cut -d' ' -f1; }

sq() {  # single-quote for sh
    printf "'%s'" "${1//\'/\'\\\'\'}"
}

plain() {  # plain TEXT REGEX: TEXT matches REGEX with ASCII ranges (the C locale)
    local LC_ALL=C
    [[ $1 =~ $2 ]]
}
