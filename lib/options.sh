#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the options and their checks.

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
realtime=0            # the real-time state and permissions (either way of running it)
realtime_service=0    # --realtime: the long-running service
realtime_per_alert=0  # --realtime-per-alert: the integratord integration, one process per alert
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
                      shipping destination (see docs/indexer.md)
  --realtime          also install the real-time service (wazuh-anomaly-realtime: follows
                      alerts.json and judges each alert as it is written; a systemd unit,
                      started where systemd runs) (opt-in; see docs/realtime.md)
  --realtime-per-alert
                      instead, the per-alert integration (integrations/custom-anomaly, run
                      by wazuh-integratord once per alert) and its <integration> block
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

need_value() { [ "$2" -ge 2 ] || die "option $1 needs a value (see --help)."; }

parse_options() {
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
            --realtime) realtime=1; realtime_service=1 ;;
            --realtime-per-alert) realtime=1; realtime_per_alert=1 ;;
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
}

# The options' values, the prefix and the virtualenv path, before anything is touched.
check_options() {
    local s
    [ "$keep_data" = 0 ] || [ "$uninstall" = 1 ] || die "--keep-data only makes sense with --uninstall."
    [ "$realtime_service" = 0 ] || [ "$realtime_per_alert" = 0 ] ||
        die "choose --realtime (the service) or --realtime-per-alert (the integration), not both: both would judge every alert twice."
    [[ $ar_timeout =~ ^[1-9][0-9]*$ ]] || die "--ar-timeout '$ar_timeout' must be a number of seconds such as 3600."
    [[ $interval =~ ^[1-9][0-9]*[smhdw]?$ ]] ||
        die "--interval '$interval' is not a Wazuh interval such as 300s, 5m, 1h or 1d."
    # Each sensor becomes part of a PCRE2 pattern in the NetFlow rules: a Wazuh agent name
    # (OS_IsValidName: 2-128 letters, digits, - _ ., not starting with .) and an absolute
    # path of plain characters, both escaped where PCRE2 would read them as syntax.
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
    launcher=$prefix/$(at launcher)
    control=$prefix/bin/wazuh-control
}

# Without a terminal, --yes must allow what would otherwise be asked.
check_confirmations() {
    is_tty=0
    [ -t 0 ] && is_tty=1
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
}
