#!/usr/bin/env bash
# Installs wazuh-anomaly on a Wazuh 4.x manager (or into a sandbox prefix that mirrors
# /var/ossec), and removes it again with --uninstall. Safe to re-run: the result of the
# same options is the same, files an admin changed are never overwritten, and a failed
# configuration check rolls every change back.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true  # "&" in a path must stay literal

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
BEGIN_MARK='<!-- wazuh-anomaly:begin (managed by install.sh, do not edit inside) -->'
END_MARK='<!-- wazuh-anomaly:end -->'
MANIFEST_REL=etc/anomaly/.install-manifest
VENV_MARK=.wazuh-anomaly-created  # inside a virtualenv this script created
DATA_RELS=(var/anomaly logs/anomaly)
CPU_INDEX=https://download.pytorch.org/whl/cpu

prefix=/var/ossec
venv=/opt/wazuh-anomaly/venv
python_opt=
dry=0
uninstall=0
keep_data=0
restart=1
yes=0
cuda=0
torch_index=$CPU_INDEX
torch_index_set=0
find_links=
allow_worker=0
interval=5m
realtime=0
active_response=0
indexer=0
ar_timeout=3600
netflow_sensors=()

usage() {
    cat <<EOF
Usage: ./install.sh [options]          install or upgrade wazuh-anomaly
       ./install.sh --uninstall [...]  remove exactly what install.sh added

Options:
  --prefix DIR        Wazuh manager directory (default /var/ossec); a sandbox copy works too
  --venv DIR          virtualenv for the add-on (default /opt/wazuh-anomaly/venv)
  --python PATH       Python 3.10-3.12 used to create the virtualenv (default: the first
                      of python3.12, python3.11, python3.10, python3 on PATH); never the
                      manager's own framework/python
  --interval TIME     how often the wodle scores new data (default 5m; s, m, h, d, w)
  --torch-index URL   where torch comes from (default $CPU_INDEX, the CPU
                      build); "pypi" means the default package index
  --cuda              torch from the default index with CUDA (large download)
  --find-links DIR    offline: install everything from this folder of wheels
  --allow-worker      schedule the scoring wodle even on a cluster worker
  --indexer           also install opensearch-py, for the Wazuh indexer as source or
                      shipping destination (see README "The Wazuh indexer")
  --realtime          also install the real-time integration (integrations/custom-anomaly)
                      and its <integration> block (opt-in; see README "Real-time path")
  --active-response   also install active-response/bin/anomaly-response and the blocks
                      that run it on critical anomalies with a source address (opt-in)
  --ar-timeout SECS   how long the active response blocks an address (default 3600)
  --netflow-sensor AGENT:PATH
                      also accept NetFlow events that agent AGENT reads from PATH (a
                      normaliser on an agent beside the flow collector); repeat for each
                      sensor. Without it the NetFlow rules only accept the manager's own
                      logs/anomaly/netflow.json (see docs/security.md)
  --no-restart        do not restart the manager afterwards
  --yes               do not ask before restarting the manager or removing files
  --dry-run           print every action and change nothing
  --uninstall         remove what install.sh added (ossec.conf is restored byte for byte)
  --keep-data         with --uninstall: keep var/anomaly and logs/anomaly
  --help              show this help
EOF
}

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

need_value() { [ "$2" -ge 2 ] || die "option $1 needs a value (see --help)."; }

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) need_value "$1" $#; prefix=$2; shift ;;
        --prefix=*) prefix=${1#*=} ;;
        --venv) need_value "$1" $#; venv=$2; shift ;;
        --venv=*) venv=${1#*=} ;;
        --python) need_value "$1" $#; python_opt=$2; shift ;;
        --python=*) python_opt=${1#*=} ;;
        --interval) need_value "$1" $#; interval=$2; shift ;;
        --interval=*) interval=${1#*=} ;;
        --torch-index) need_value "$1" $#; torch_index=$2; torch_index_set=1; shift ;;
        --torch-index=*) torch_index=${1#*=}; torch_index_set=1 ;;
        --find-links) need_value "$1" $#; find_links=$2; shift ;;
        --find-links=*) find_links=${1#*=} ;;
        --cuda) cuda=1 ;;
        --allow-worker) allow_worker=1 ;;
        --indexer) indexer=1 ;;
        --realtime) realtime=1 ;;
        --active-response) active_response=1 ;;
        --ar-timeout) need_value "$1" $#; ar_timeout=$2; shift ;;
        --ar-timeout=*) ar_timeout=${1#*=} ;;
        --netflow-sensor) need_value "$1" $#; netflow_sensors+=("$2"); shift ;;
        --netflow-sensor=*) netflow_sensors+=("${1#*=}") ;;
        --no-restart) restart=0 ;;
        --yes|-y) yes=1 ;;
        --dry-run) dry=1 ;;
        --uninstall) uninstall=1 ;;
        --keep-data) keep_data=1 ;;
        --help|-h) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)." ;;
    esac
    shift
done

# ---------------------------------------------------------------- checks

[ "$keep_data" = 0 ] || [ "$uninstall" = 1 ] || die "--keep-data only makes sense with --uninstall."
[[ $ar_timeout =~ ^[1-9][0-9]*$ ]] || die "--ar-timeout '$ar_timeout' must be a number of seconds such as 3600."
[[ $interval =~ ^[1-9][0-9]*[smhdw]?$ ]] ||
    die "--interval '$interval' is not a Wazuh interval such as 300s, 5m, 1h or 1d."
# Each sensor becomes part of a PCRE2 pattern in the NetFlow rules: a Wazuh agent name
# (OS_IsValidName: 2-128 letters, digits, - _ ., not starting with .) and an absolute
# path of plain characters, both escaped where PCRE2 would read them as syntax.
plain() {  # plain TEXT REGEX: TEXT matches REGEX with ASCII ranges (the C locale)
    local LC_ALL=C
    [[ $1 =~ $2 ]]
}
for s in ${netflow_sensors[@]+"${netflow_sensors[@]}"}; do
    [[ $s == *:* ]] || die "--netflow-sensor '$s' must be AGENT:PATH, e.g. sensor-01:/var/ossec/logs/anomaly/netflow.json."
    plain "${s%%:*}" '^[A-Za-z0-9_-][A-Za-z0-9._-]{1,127}$' ||
        die "--netflow-sensor '$s': '${s%%:*}' is not a Wazuh agent name (2-128 letters, digits, - _ . and not starting with .)."
    plain "${s#*:}" '^/[A-Za-z0-9._/+-]*$' ||
        die "--netflow-sensor '$s': '${s#*:}' must be an absolute path of letters, digits and . _ - + / (the file the agent's <localfile> reads)."
done
if [ "$cuda" = 1 ] && [ "$torch_index_set" = 1 ]; then
    die "choose either --cuda or --torch-index, not both."
fi
[ "$cuda" = 0 ] || torch_index=pypi
if [ -n "$find_links" ]; then
    [ -d "$find_links" ] || die "--find-links $find_links is not a directory of wheels."
    find_links=$(cd "$find_links" && pwd)
fi

[ -d "$prefix" ] || die "$prefix does not exist; pass the manager's directory with --prefix."
prefix=$(cd "$prefix" && pwd)
# The launcher path goes unquoted into the wodle's <command>, which modulesd splits on spaces.
[[ $prefix =~ ^/[A-Za-z0-9._/+-]*$ ]] ||
    die "the prefix $prefix may only contain letters, digits and . _ - + / (it is written unquoted into ossec.conf)."
conf=$prefix/etc/ossec.conf
[ -f "$conf" ] || die "$prefix does not look like a Wazuh manager (no etc/ossec.conf); pass the right --prefix."
[ -r "$conf" ] || die "cannot read $conf; run install.sh as root."
[ "$dry" = 1 ] || [ -w "$prefix/etc" ] || die "cannot write to $prefix/etc; run install.sh as root."
if [ "$(tr -d '\000' <"$conf" | wc -c)" != "$(wc -c <"$conf")" ]; then
    die "$conf contains NUL bytes; fix the file before installing."
fi
case $venv in /*) ;; *) venv=$PWD/$venv ;; esac
case $venv in
    "$prefix"/framework/*|/var/ossec/framework/*)
        die "--venv $venv is inside the manager's framework; use a separate directory such as /opt/wazuh-anomaly/venv." ;;
esac
[ "$venv" != / ] || die "--venv cannot be /."

# ---------------------------------------------------------------- one install.sh at a time
# An flock on the prefix directory itself (nothing to create or clean up), held until this
# script exits; the manager restart does not inherit it (9<&- there).
take_install_lock() {
    if ! command -v flock >/dev/null 2>&1; then
        say "warning: no flock command (util-linux); cannot make sure no other install.sh runs on $prefix" >&2
        return 0
    fi
    exec 9<"$prefix"
    flock -n 9 || die "another install.sh is running on $prefix; wait for it to finish, then re-run."
}
take_install_lock

is_tty=0
[ -t 0 ] && is_tty=1
control=$prefix/bin/wazuh-control
# A sandbox prefix has no wazuh-control: nothing to restart there.
will_restart=0
if [ "$restart" = 1 ] && [ -x "$control" ] && [ "$dry" = 0 ]; then will_restart=1; fi
if [ "$yes" = 0 ] && [ "$is_tty" = 0 ] && [ "$dry" = 0 ]; then
    if [ "$uninstall" = 1 ]; then
        die "--uninstall removes files and there is no terminal to confirm it; re-run with --yes."
    elif [ "$will_restart" = 1 ]; then
        die "there is no terminal to confirm the manager restart; re-run with --yes to allow it, or with --no-restart."
    fi
fi

confirm() {
    [ "$yes" = 0 ] || return 0
    local answer
    printf '%s [y/N] ' "$1"
    read -r answer || answer=
    case $answer in [yY]|[yY][eE][sS]) return 0 ;; *) return 1 ;; esac
}

# Ownership: root:wazuh needs root and the wazuh group; a sandbox has neither.
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

work=$(mktemp -d "${TMPDIR:-/tmp}/wazuh-anomaly-install.XXXXXX")

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
trap on_exit EXIT
trap 'exit 130' INT TERM

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

# ---------------------------------------------------------------- files

ensure_dir() {  # ensure_dir REL TYPE MODE [parent]
    local rel=$1 type=$2 mode=$3 as_parent=${4:-} dir=$prefix/$1 parent=${1%/*}
    # Parents first, so that a parent made by an earlier install stays on the list.
    [ "$parent" = "$rel" ] || ensure_dir "$parent" dir 0750 parent
    no_link "$dir"
    if [ -n "${planned_dirs[$rel]:-}" ]; then  # made (or, in a dry run, listed) earlier in this run
        [ "$dry" = 1 ] || [ -n "$as_parent" ] || perm "$mode" "$dir"
        return 0
    fi
    if [ -d "$dir" ]; then
        # Ours from an earlier install: keep it on the list, and its mode right when it is
        # named itself (as a parent its mode is the one its own call sets: 2770 stays 2770).
        if [ -n "${old_type[$rel]:-}" ]; then
            record "${old_type[$rel]}" - "$rel"
            [ "$dry" = 1 ] || [ -n "$as_parent" ] || perm "$mode" "$dir"
        fi
        return 0
    fi
    [ ! -e "$dir" ] || die "$dir exists and is not a directory; move it away and re-run."
    if [ "$dry" = 0 ]; then
        tx_mkdir "$dir"
        perm "$mode" "$dir"
    fi
    say "$(v create) $dir"
    record "$type" - "$rel"
    planned_dirs[$rel]=1
}

changed_kept=()
declare -A planned_dirs=()

# place_file SRC REL MODE WHAT POLICY: POLICY "protect" never overwrites a file that
# differs from what the previous install wrote (the new one goes beside it as .dist);
# "replace" is for generated files nobody should edit (the launcher).
place_file() {
    local src=$1 rel=$2 mode=$3 what=$4 policy=$5
    local dst=$prefix/$2 new cur rec=
    new=$(sha "$src")
    [ "${old_type[$rel]:-}" != file ] || rec=${old_sha[$rel]}
    if [ -e "$dst" ] || [ -L "$dst" ]; then
        if [ ! -f "$dst" ] || [ -L "$dst" ]; then
            die "$dst exists and is not a regular file; move it away and re-run."
        fi
        cur=$(sha "$dst")
        if [ "$cur" = "$new" ]; then
            # Identical: ours stays on the list; an admin's own identical copy stays theirs.
            if [ -n "$rec" ]; then
                record file "$new" "$rel"
                [ "$dry" = 1 ] || perm "$mode" "$dst"
            fi
            say "$what $dst is up to date"
            return 0
        fi
        if [ "$policy" = replace ] || { [ -n "$rec" ] && [ "$cur" = "$rec" ]; }; then
            write_file "$src" "$dst" "$mode"
            record file "$new" "$rel"
            say "$(v update) $what $dst"
            return 0
        fi
        # Changed by the admin (or never ours): keep it, put the new version beside it.
        [ -z "$rec" ] || record file "$rec" "$rel"
        write_file "$src" "$dst.dist" "$mode"
        record dist "$new" "$rel.dist"
        changed_kept+=("$dst")
        say "$(v keep) $dst because it was changed; the new version is $dst.dist (compare and merge by hand)"
        return 0
    fi
    write_file "$src" "$dst" "$mode"
    record file "$new" "$rel"
    say "$(v install) $what to $dst"
}

write_file() {  # write_file SRC DST MODE
    no_link "$2"
    [ "$dry" = 0 ] || return 0
    tx_file "$2"
    install -m "$3" -- "$1" "$2"
    perm "$3" "$2"
}

# Removes a file of ours that the admin did not change; says why it stays otherwise.
remove_if_unchanged() {  # REL SHA
    local f=$prefix/$1
    [ -e "$f" ] || return 0
    if [ "$(sha "$f")" != "$2" ]; then
        changed_kept+=("$f")
        say "$(v keep) $f because it was changed after install.sh wrote it"
        return 0
    fi
    if [ "$dry" = 0 ]; then
        tx_file "$f"
        rm -f -- "$f"
    fi
    say "$(v remove) $f"
}

# ---------------------------------------------------------------- ossec.conf

read_all() {  # read_all FILE VAR: the exact bytes (no NULs), trailing newlines kept
    local _content=
    IFS= read -r -d '' _content <"$1" || true
    printf -v "$2" '%s' "$_content"
}

# Our block is always appended as "\n" + block, so removing it (with that one newline)
# gives back the original bytes, whether or not the file ended with a newline.
strip_block() {  # strip_block TEXT VAR
    local _s=$1 _before _rest _after
    while [[ $_s == *"$BEGIN_MARK"* ]]; do
        _before=${_s%%"$BEGIN_MARK"*}
        _rest=${_s#*"$BEGIN_MARK"}
        [[ $_rest == *"$END_MARK"* ]] ||
            die "$conf has the wazuh-anomaly begin marker but no end marker; remove the partial block by hand."
        _after=${_rest#*"$END_MARK"}
        _after=${_after#$'\n'}
        _s=${_before%$'\n'}$_after
    done
    printf -v "$2" '%s' "$_s"
}

render() {  # render TEMPLATE VAR: fill the @NAME@ placeholders of a snippet
    local _tpl
    read_all "$1" _tpl
    _tpl=${_tpl//@LAUNCHER@/"$launcher"}
    _tpl=${_tpl//@INTERVAL@/"$interval"}
    _tpl=${_tpl//@ANOMALIES_FILE@/"$prefix/logs/anomaly/anomalies.json"}
    _tpl=${_tpl//@AR_TIMEOUT@/"$ar_timeout"}
    printf -v "$2" '%s' "$_tpl"
}

# ---------------------------------------------------------------- location binding
# The rule files bind each family to where its events legitimately come from: the
# manager's own anomalies.json / netflow.json (the repository's files name the default
# prefix), plus for NetFlow the sensor agents of --netflow-sensor, whose lines reach
# analysisd with the location "(AGENT) ip->PATH". Agents and syslog senders never match.
ANOMALIES_LOCATION='^/var/ossec/logs/anomaly/anomalies\.json$'
NETFLOW_LOCATION='^/var/ossec/logs/anomaly/netflow\.json$'

pcre2_literal() {  # pcre2_literal TEXT VAR: TEXT with the PCRE2 metacharacters escaped
    local _in=$1 _out='' _c i
    for ((i = 0; i < ${#_in}; i++)); do
        _c=${_in:i:1}
        case $_c in "\\"|'^'|'$'|'.'|'|'|'?'|'*'|'+'|'('|')'|'['|']'|'{'|'}') _out+="\\$_c" ;; *) _out+=$_c ;; esac
    done
    printf -v "$2" '%s' "$_out"
}

render_rules() {  # render_rules SRC DST: the rule file with this install's locations
    local _t _p _alt s name path
    read_all "$1" _t
    pcre2_literal "$prefix" _p
    if [[ $_t == *"<location"*"$ANOMALIES_LOCATION"* ]]; then
        _t=${_t//"$ANOMALIES_LOCATION"/"^$_p/logs/anomaly/anomalies\\.json\$"}
    fi
    if [[ $_t == *"<location"*"$NETFLOW_LOCATION"* ]]; then
        _alt="$_p/logs/anomaly/netflow\\.json"
        for s in ${netflow_sensors[@]+"${netflow_sensors[@]}"}; do
            pcre2_literal "${s%%:*}" name
            pcre2_literal "${s#*:}" path
            _alt+="|\\($name\\) \\S+->$path"
        done
        if [ ${#netflow_sensors[@]} -gt 0 ]; then _alt="(?:$_alt)"; fi
        _t=${_t//"$NETFLOW_LOCATION"/"^$_alt\$"}
    elif [ ${#netflow_sensors[@]} -gt 0 ] && [[ $_t == *'<rule id="117000"'* ]]; then
        die "${1##*/} has no <location> line '$NETFLOW_LOCATION' to add the --netflow-sensor agents to."
    fi
    printf '%s' "$_t" >"$2"
}

render_ini() {  # render_ini SRC DST: the rule tests with this prefix in their locations
    local _line _out=''
    while IFS= read -r _line || [ -n "$_line" ]; do
        if [[ $_line == "location = "* ]]; then _line=${_line//\/var\/ossec\//"$prefix/"}; fi
        _out+=$_line$'\n'
    done <"$1"
    printf '%s' "$_out" >"$2"
}

# Writes TEXT to ossec.conf after a timestamped backup (kept until the run succeeds).
write_conf() {  # write_conf TEXT
    local bak tmp
    bak=$conf.anomaly-bak.$(date +%Y%m%d%H%M%S)
    tmp=$conf.anomaly-tmp.$$
    cp -p -- "$conf" "$bak"
    tx_log+=("restore-conf $bak $conf")
    tx_commit_rm+=("$bak")
    tx_log+=("remove - $tmp")
    cp -p -- "$conf" "$tmp"  # same owner and mode as the original
    printf '%s' "$1" >"$tmp"
    mv -f -- "$tmp" "$conf"
}

# Prints "worker", "master", "standalone" or "agent" from ossec.conf's text
# (comments removed; a <cluster> block without <disabled>yes</disabled> is active).
node_type() {
    awk '
    function tag(s, name,   a, b) {
        a = index(s, "<" name ">"); if (a == 0) return ""
        s = substr(s, a + length(name) + 2); b = index(s, "</" name ">"); if (b == 0) return ""
        s = substr(s, 1, b - 1); gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", s); return s
    }
    { buf = buf $0 "\n" }
    END {
        while ((i = index(buf, "<!--")) > 0) {
            rest = substr(buf, i + 4); j = index(rest, "-->")
            if (j == 0) { buf = substr(buf, 1, i - 1); break }
            buf = substr(buf, 1, i - 1) substr(rest, j + 3)
        }
        if (index(buf, "<client>") > 0 && index(buf, "<remote>") == 0) { print "agent"; exit }
        found = 0; type = ""; disabled = ""; s = buf
        while ((i = index(s, "<cluster>")) > 0) {
            s = substr(s, i + 9); j = index(s, "</cluster>")
            blk = (j > 0) ? substr(s, 1, j - 1) : s
            found = 1
            x = tag(blk, "node_type"); if (x != "") type = x
            x = tag(blk, "disabled"); if (x != "") disabled = x
            if (j == 0) break
            s = substr(s, j + 10)
        }
        if (!found || disabled == "yes") print "standalone"
        else if (type == "worker" || type == "client") print "worker"
        else print "master"
    }' "$conf"
}

# ---------------------------------------------------------------- checks of the manager

# Runs the daemons' own configuration test (what wazuh-control does before starting).
validate() {
    local d bin out checked=0
    for d in wazuh-analysisd wazuh-logcollector wazuh-modulesd; do
        bin=$prefix/bin/$d
        [ -x "$bin" ] || continue
        checked=1
        if [ "$dry" = 1 ]; then
            say "[dry-run] would check the configuration with $bin -t"
            continue
        fi
        if out=$("$bin" -t 2>&1); then
            say "configuration check passed: $d -t"
        else
            printf '%s\n' "$out" >&2
            say "configuration check failed: $bin -t (output above)" >&2
            return 1
        fi
    done
    [ "$checked" = 1 ] || say "skipping the configuration check: no $prefix/bin/wazuh-analysisd (a sandbox prefix)"
}

restart_manager() {
    if [ "$restart" = 0 ]; then
        say "not restarting the manager (--no-restart): restart it to load the changes"
        return 0
    fi
    if [ ! -x "$control" ]; then
        say "skipping the restart: no $control (a sandbox prefix)"
        return 0
    fi
    local use_systemd=0
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
        systemctl show -p ExecStart wazuh-manager.service 2>/dev/null | grep -qF "$control"; then
        use_systemd=1
    fi
    if [ "$dry" = 1 ]; then
        if [ "$use_systemd" = 1 ]; then say "[dry-run] would run systemctl restart wazuh-manager"
        else say "[dry-run] would run $control restart"; fi
        return 0
    fi
    if ! confirm "Restart the Wazuh manager now to load the changes?"; then
        say "not restarted: restart the manager yourself to load the changes"
        return 0
    fi
    if [ "$use_systemd" = 1 ]; then
        systemctl restart wazuh-manager 9<&- ||
            die "the changes are in place, but 'systemctl restart wazuh-manager' failed; see journalctl -u wazuh-manager and $prefix/logs/ossec.log."
    else
        "$control" restart 9<&- ||
            die "the changes are in place, but '$control restart' failed; see $prefix/logs/ossec.log."
    fi
    say "$(v restart) the Wazuh manager"
}

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
            created_venvs[$venv]=1
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
    find "$src/integration" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
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
}

# ---------------------------------------------------------------- install

launcher=$prefix/wodles/anomaly/wazuh-anomaly

do_install() {
    local node wodle=1 f rel block current base new_text p t

    node=$(node_type)
    case $node in
        agent) die "$conf is a Wazuh agent's configuration; install wazuh-anomaly on the manager." ;;
        worker)
            if [ "$allow_worker" = 1 ]; then
                say "this node is a cluster worker; scheduling the wodle anyway (--allow-worker)"
            else
                wodle=0
                say "this node is a cluster worker: not scheduling the scoring wodle, because it must score on the master only (each node runs its own ossec.conf); use --allow-worker to override"
            fi ;;
    esac

    read_manifest
    # From here on every change, the virtualenv's included, is undone if anything fails.
    [ "$dry" = 1 ] || tx_begin
    setup_python

    # This virtualenv, and earlier ones that still hold the add-on (uninstall cleans them).
    new_venvs=("$venv")
    for p in ${old_venvs[@]+"${old_venvs[@]}"}; do
        [ "$p" = "$venv" ] || [ ! -x "$p/bin/python" ] || new_venvs+=("$p")
    done

    # Directories (root:wazuh 0750).
    ensure_dir etc/anomaly dir 0750
    ensure_dir wodles/anomaly dir 0750
    ensure_dir var/anomaly data 0750
    ensure_dir var/anomaly/models dir 0750
    ensure_dir var/anomaly/state dir 0750
    # The real-time integration runs as wazuh and appends to logs/anomaly/anomalies.json.
    if [ "$realtime" = 1 ]; then ensure_dir logs/anomaly data 0770; else ensure_dir logs/anomaly data 0750; fi
    ensure_dir etc/rules dir 0770
    ensure_dir etc/decoders dir 0770

    # Default config and scenarios: every file under wazuh/etc/anomaly/.
    if [ -d "$REPO/wazuh/etc/anomaly" ]; then
        while IFS= read -r -d '' f; do
            rel=etc/anomaly/${f#"$REPO/wazuh/etc/anomaly/"}
            ensure_dir "${rel%/*}" dir 0750
            place_file "$f" "$rel" 0640 config protect
        done < <(find "$REPO/wazuh/etc/anomaly" -type f ! -name '.*' -print0 | sort -z)
    fi

    # Rules (bound to this prefix's files and the NetFlow sensors) and decoders
    # (root:wazuh 0660, like Wazuh's own etc/rules files).
    mkdir -p "$work/rules"
    for f in "$REPO"/rules/*.xml; do
        [ -f "$f" ] || continue
        render_rules "$f" "$work/rules/${f##*/}"
        place_file "$work/rules/${f##*/}" "etc/rules/${f##*/}" 0660 rules protect
    done
    for f in "$REPO"/decoders/*.xml; do
        [ -f "$f" ] || continue
        place_file "$f" "etc/decoders/${f##*/}" 0660 decoders protect
    done
    # The rule test cases, so that `wazuh-anomaly logtest` can check the rules on this manager.
    ensure_dir etc/anomaly/ruleset-tests dir 0750
    # Their `location = ` lines name the default prefix: this manager's instead.
    mkdir -p "$work/ruleset-tests"
    for f in "$REPO"/tests/ruleset/*.ini; do
        [ -f "$f" ] || continue
        render_ini "$f" "$work/ruleset-tests/${f##*/}"
        place_file "$work/ruleset-tests/${f##*/}" "etc/anomaly/ruleset-tests/${f##*/}" 0640 "rule tests" replace
    done

    # The launcher: a tiny sh script with the virtualenv and prefix baked in.
    render "$REPO/wazuh/wodles/anomaly/wazuh-anomaly.in" t
    t=${t//@CLI@/"$(sq "$venv/bin/wazuh-anomaly")"}
    t=${t//@PREFIX@/"$(sq "$prefix")"}
    printf '%s' "$t" >"$work/launcher"
    place_file "$work/launcher" wodles/anomaly/wazuh-anomaly 0750 launcher replace

    # Opt-in launchers of the real-time path and the active response (root:wazuh 0750:
    # integratord and execd refuse scripts the wazuh user can write).
    if [ "$realtime" = 1 ]; then
        ensure_dir integrations dir 0750
        ensure_dir var/anomaly/realtime dir 2770  # state shared by root (CLI) and wazuh (integration)
        ensure_dir var/anomaly/realtime/state dir 2770
        render "$REPO/wazuh/integrations/custom-anomaly.in" t
        t=${t//@PYTHON@/"$(sq "$venv/bin/python")"}
        t=${t//@PREFIX@/"$(sq "$prefix")"}
        printf '%s' "$t" >"$work/integration"
        place_file "$work/integration" integrations/custom-anomaly 0750 integration replace
    fi
    if [ "$active_response" = 1 ]; then
        ensure_dir active-response dir 0750
        ensure_dir active-response/bin dir 0750
        render "$REPO/wazuh/active-response/bin/anomaly-response.in" t
        t=${t//@PYTHON@/"$(sq "$venv/bin/python")"}
        t=${t//@PREFIX@/"$(sq "$prefix")"}
        printf '%s' "$t" >"$work/active-response"
        place_file "$work/active-response" active-response/bin/anomaly-response 0750 "active response" replace
    fi

    # A logrotate configuration for logs/anomaly, for the admin to enable (outside the prefix).
    render "$REPO/wazuh/logrotate/wazuh-anomaly.in" t
    t=${t//@PREFIX@/"$prefix"}
    if [ "$can_chown" = 1 ]; then
        t=${t//@USER@/root}
        t=${t//@GROUP@/wazuh}
    else  # a sandbox: whoever owns it
        t=${t//@USER@/"$(id -un)"}
        t=${t//@GROUP@/"$(id -gn)"}
    fi
    printf '%s' "$t" >"$work/logrotate"
    place_file "$work/logrotate" etc/anomaly/logrotate.conf 0640 "logrotate configuration" replace

    # The output file logcollector reads (created empty so it has something to open).
    rel=logs/anomaly/anomalies.json
    no_link "$prefix/$rel"
    if [ -e "$prefix/$rel" ]; then
        [ "${old_type[$rel]:-}" != log ] || record log - "$rel"
    else
        if [ "$dry" = 0 ]; then
            tx_file "$prefix/$rel"
            : >"$prefix/$rel"
            perm 0640 "$prefix/$rel"
        fi
        say "$(v create) $prefix/$rel"
        record log - "$rel"
    fi
    if [ "$realtime" = 1 ]; then
        # The integration (user wazuh) appends to it under the writer's lock file.
        for p in "$rel" "$rel.lock"; do
            no_link "$prefix/$p"
            if [ ! -e "$prefix/$p" ]; then
                if [ "$dry" = 0 ]; then tx_file "$prefix/$p"; : >"$prefix/$p"; fi
                record log - "$p"
            elif [ "${old_type[$p]:-}" = log ]; then
                record log - "$p"
            fi
            [ "$dry" = 1 ] || perm 0660 "$prefix/$p"
        done
    fi

    # Files of an earlier install that this version no longer ships.
    for p in ${old_order[@]+"${old_order[@]}"}; do
        [ -z "${new_type[$p]:-}" ] || continue
        case ${old_type[$p]} in
            file|dist) remove_if_unchanged "$p" "${old_sha[$p]}" ;;
            log) record log - "$p" ;;
            dir|data) stale_dirs+=("$p") ;;
        esac
    done

    # ossec.conf: one block between markers, replaced on every run.
    block=$BEGIN_MARK$'\n<ossec_config>\n'
    if [ "$wodle" = 1 ]; then
        render "$REPO/wazuh/ossec.conf.d/wodle-command.xml.in" t
        block+=$t$'\n'
    fi
    render "$REPO/wazuh/ossec.conf.d/localfile-anomalies.xml.in" t
    block+=$t
    if [ "$realtime" = 1 ]; then
        render "$REPO/wazuh/ossec.conf.d/integration-anomaly.xml.in" t
        block+=$t
    fi
    if [ "$active_response" = 1 ]; then
        render "$REPO/wazuh/ossec.conf.d/active-response-anomaly.xml.in" t
        block+=$t
    fi
    block+=$'</ossec_config>\n'$END_MARK$'\n'
    read_all "$conf" current
    strip_block "$current" base
    new_text=$base$'\n'$block
    if [ "$new_text" = "$current" ]; then
        say "the wazuh-anomaly block in $conf is up to date"
    elif [ "$dry" = 1 ]; then
        say "[dry-run] would write this block at the end of $conf (after a backup):"
        printf '%s' "$block" | sed 's/^/    /'
    else
        write_conf "$new_text"
        if [ "$wodle" = 1 ]; then
            say "wrote the wazuh-anomaly block in $conf (wodle every $interval, localfile $prefix/logs/anomaly/anomalies.json)"
        else
            say "wrote the wazuh-anomaly block in $conf (localfile $prefix/logs/anomaly/anomalies.json, no wodle)"
        fi
    fi

    if [ "$dry" = 0 ]; then
        write_manifest
        validate || exit 1  # the EXIT trap rolls everything back
        tx_commit
        for p in ${stale_dirs[@]+"${stale_dirs[@]}"}; do
            if rmdir -- "$prefix/$p" 2>/dev/null; then say "removed $prefix/$p"; fi
        done
    else
        say "[dry-run] would write the install manifest $prefix/$MANIFEST_REL"
        validate
    fi

    restart_manager

    say ""
    if [ "$dry" = 1 ]; then
        say "Dry run: nothing was changed."
        return 0
    fi
    say "wazuh-anomaly is installed in $prefix."
    say "  launcher:   $launcher (runs $venv/bin/wazuh-anomaly --prefix $prefix)"
    say "  config:     $prefix/etc/anomaly/ (scenarios: etc/anomaly/scenarios/*.yaml, 'enabled: false' to switch one off)"
    if [ "$wodle" = 1 ]; then
        say "  scoring:    every $interval by wazuh-modulesd (wodle tag wazuh-anomaly)"
    else
        say "  scoring:    not scheduled on this worker; it runs on the master"
    fi
    say "  anomalies:  $prefix/logs/anomaly/anomalies.json, raised as alerts by rules 117xxx (from this file only)"
    if [ ${#netflow_sensors[@]} -gt 0 ]; then
        say "  netflow:    rules 117000-117049 also accept these sensor agents and files: ${netflow_sensors[*]}"
    fi
    say "  models:     $prefix/var/anomaly/"
    say "  logs:       $prefix/logs/anomaly/wazuh-anomaly.log (each run), $prefix/logs/ossec.log (wazuh-modulesd)"
    if [ ${#changed_kept[@]} -gt 0 ]; then
        say "  kept your changes in: ${changed_kept[*]} (new versions are beside them as .dist)"
    fi
    say "Next steps:"
    say "  1. check the config and scenarios:     $launcher validate"
    say "  2. check the rules with the manager:   $launcher logtest"
    say "  3. score once by hand, then look:      $launcher run; $launcher status"
    say "  4. rotate logs/anomaly with logrotate: install -m 0644 $prefix/etc/anomaly/logrotate.conf /etc/logrotate.d/wazuh-anomaly"
    say "  to remove it again:                    $REPO/install.sh --prefix $prefix --uninstall"
}

sq() {  # single-quote for sh
    printf "'%s'" "${1//\'/\'\\\'\'}"
}

# ---------------------------------------------------------------- uninstall

under_data() {
    local d
    for d in "${DATA_RELS[@]}"; do
        case $1 in "$d"|"$d"/*) return 0 ;; esac
    done
    return 1
}

do_uninstall() {
    local manifest=$prefix/$MANIFEST_REL i p t current base venvs=() dirs=() data=() logs=() d

    read_manifest
    read_all "$conf" current
    strip_block "$current" base
    if [ ${#old_order[@]} -eq 0 ] && [ "$base" = "$current" ] && [ ! -f "$manifest" ]; then
        say "nothing to uninstall: no $manifest and no wazuh-anomaly block in $conf"
        return 0
    fi
    venvs=(${old_venvs[@]+"${old_venvs[@]}"})

    if [ "$dry" = 0 ]; then
        local what="the files install.sh added to $prefix and its block in ossec.conf"
        for d in ${venvs[@]+"${venvs[@]}"}; do
            if [ -n "${created_venvs[$d]:-}" ] || [ -f "$d/$VENV_MARK" ]; then what+=", the virtualenv $d"; fi
        done
        if [ "$keep_data" = 0 ]; then what+=", including the models, state and anomalies in var/anomaly and logs/anomaly"; fi
        confirm "Remove $what?" || die "nothing was removed (answered no)."
        tx_begin
    fi

    for ((i = ${#old_order[@]} - 1; i >= 0; i--)); do
        p=${old_order[i]}
        t=${old_type[$p]}
        if [ "$keep_data" = 1 ] && under_data "$p"; then continue; fi
        case $t in
            file|dist) remove_if_unchanged "$p" "${old_sha[$p]}" ;;
            log) logs+=("$p") ;;
            data) data+=("$p") ;;
            dir) dirs+=("$p") ;;
        esac
    done

    if [ "$base" != "$current" ]; then
        if [ "$dry" = 1 ]; then say "[dry-run] would remove the wazuh-anomaly block from $conf"
        else
            write_conf "$base"
            say "removed the wazuh-anomaly block from $conf"
        fi
    fi
    if [ -f "$manifest" ]; then
        if [ "$dry" = 0 ]; then tx_file "$manifest"; rm -f -- "$manifest"; fi
        say "$(v remove) $manifest"
    fi

    if [ "$dry" = 0 ]; then
        validate || exit 1  # the EXIT trap rolls everything back
        tx_commit
    else
        validate
    fi

    # Data and directories: after the configuration check passed.
    for p in ${data[@]+"${data[@]}"}; do
        case $p in var/anomaly|logs/anomaly) ;; *) continue ;; esac
        [ -d "$prefix/$p" ] || continue
        [ "$dry" = 1 ] || rm -rf -- "${prefix:?}/$p"
        say "$(v remove) $prefix/$p and everything in it"
    done
    for p in ${logs[@]+"${logs[@]}"}; do
        [ -e "$prefix/$p" ] || continue  # gone with its data directory
        [ "$dry" = 1 ] || rm -f -- "${prefix:?}/$p"
        say "$(v remove) $prefix/$p"
    done
    if [ "$keep_data" = 1 ]; then
        say "kept $prefix/var/anomaly and $prefix/logs/anomaly (--keep-data)"
    fi
    for p in ${dirs[@]+"${dirs[@]}"}; do
        [ -d "$prefix/$p" ] || continue
        if [ "$dry" = 1 ]; then say "[dry-run] would remove $prefix/$p if it is empty"
        elif rmdir -- "$prefix/$p" 2>/dev/null; then say "removed $prefix/$p"
        else say "kept $prefix/$p because it is not empty"; fi
    done

    for d in ${venvs[@]+"${venvs[@]}"}; do
        # Ours when the manifest says so (or, from older installs, our mark is inside it).
        if { [ -n "${created_venvs[$d]:-}" ] || [ -f "$d/$VENV_MARK" ]; } && [ -f "$d/pyvenv.cfg" ]; then
            if [ "$dry" = 1 ]; then say "[dry-run] would remove the virtualenv $d"
            else
                local parents=()
                [ ! -f "$d/$VENV_MARK" ] || mapfile -t parents <"$d/$VENV_MARK"
                rm -rf -- "$d"
                for p in ${parents[@]+"${parents[@]}"}; do
                    if [ -n "$p" ]; then rmdir -- "$p" 2>/dev/null || true; fi
                done
                say "removed the virtualenv $d"
            fi
        elif [ -x "$d/bin/python" ]; then
            # Not ours: whatever is in it (our package too) may be used by something else.
            say "$(v keep) the virtualenv $d as it is, because install.sh did not create it; if nothing else uses wazuh-anomaly there: $d/bin/python -m pip uninstall wazuh-anomaly"
        fi
    done

    restart_manager
    say ""
    if [ "$dry" = 1 ]; then say "Dry run: nothing was changed."; return 0; fi
    if [ ${#changed_kept[@]} -gt 0 ]; then
        say "Kept because you changed them: ${changed_kept[*]}"
    fi
    say "wazuh-anomaly is uninstalled from $prefix."
    if grep -qsF -- "$prefix/logs/anomaly/" /etc/logrotate.d/wazuh-anomaly; then
        say "Remove its logrotate configuration too: rm /etc/logrotate.d/wazuh-anomaly"
    fi
}

stale_dirs=()
if [ "$uninstall" = 1 ]; then do_uninstall; else do_install; fi
