#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the lock, the configuration check and the restart of the manager.

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

# ---------------------------------------------------------------- the real-time service

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# --realtime: link the unit install.sh placed under the prefix and (re)start it; without
# systemd (a container, a sandbox prefix) say how to run it under another supervisor.
start_realtime_service() {
    local unit
    unit=$prefix/$(at realtime_unit)
    if [ "$realtime_service" = 0 ]; then
        stop_realtime_service   # switched to --realtime-per-alert, or real time left out
        return 0
    fi
    if [ "$dry" = 1 ]; then
        say "[dry-run] would link, enable and start $unit with systemctl"
        return 0
    fi
    if ! have_systemd || [ "$can_chown" = 0 ] || [ ! -x "$control" ]; then
        say "not starting the real-time service: no systemd here, not root, or no $control (a sandbox prefix); run '$launcher realtime serve' as the wazuh user under your supervisor, restarting it when it exits"
        return 0
    fi
    if ! { systemctl link "$unit" >/dev/null 9<&- &&
        systemctl daemon-reload 9<&- &&
        systemctl enable wazuh-anomaly-realtime.service >/dev/null 2>&1 9<&- &&
        systemctl restart wazuh-anomaly-realtime.service 9<&-; }; then
        die "the files are in place, but the real-time service did not start; see journalctl -u wazuh-anomaly-realtime."
    fi
    say "$(v start) the real-time service wazuh-anomaly-realtime (journalctl -u wazuh-anomaly-realtime)"
}

# Stops and unlinks the service if systemd knows it (uninstall, or real time switched off).
stop_realtime_service() {
    have_systemd || return 0
    systemctl cat wazuh-anomaly-realtime.service >/dev/null 2>&1 || return 0
    if [ "$dry" = 1 ]; then
        say "[dry-run] would stop and disable wazuh-anomaly-realtime"
        return 0
    fi
    systemctl disable --now wazuh-anomaly-realtime.service >/dev/null 2>&1 9<&- || true
    say "stopped and disabled the real-time service wazuh-anomaly-realtime"
}
