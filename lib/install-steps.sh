#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the steps of an install.

wodle=1        # schedule the scoring wodle (not on a cluster worker, unless --allow-worker)
stale_dirs=()  # directories of an earlier install that this one no longer has

do_install() {
    check_node_type
    read_manifest
    # From here on every change, the virtualenv's included, is undone if anything fails.
    [ "$dry" = 1 ] || tx_begin
    setup_python
    list_virtualenvs
    install_directories
    install_config
    install_rules_and_decoders
    install_rule_tests
    install_launcher
    install_opt_in_launchers
    install_logrotate_config
    create_output_files
    remove_what_this_version_no_longer_ships
    write_ossec_conf_block
    check_and_commit
    start_realtime_service
    restart_manager
    say_what_was_installed
}

# Agents are refused; a cluster worker gets no wodle unless --allow-worker.
check_node_type() {
    local node
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
}

list_virtualenvs() {
    local p
    # This virtualenv, and earlier ones that still hold the add-on (uninstall cleans them).
    new_venvs=("$venv")
    for p in ${old_venvs[@]+"${old_venvs[@]}"}; do
        [ "$p" = "$venv" ] || [ ! -x "$p/bin/python" ] || new_venvs+=("$p")
    done
}

install_directories() {
    # Directories (root:wazuh 0750).
    layout_dir etc_dir
    layout_dir wodle_dir
    layout_dir var_dir
    layout_dir models_dir
    layout_dir state_dir
    # The real-time integration runs as wazuh and appends to logs/anomaly/anomalies.json.
    layout_dir logs_dir
    layout_dir rules_dir
    layout_dir decoders_dir
}

install_config() {
    local f rel
    # Default config and scenarios: every file under wazuh/etc/anomaly/.
    if [ -d "$REPO/wazuh/etc/anomaly" ]; then
        while IFS= read -r -d '' f; do
            rel=etc/anomaly/${f#"$REPO/wazuh/etc/anomaly/"}
            ensure_dir "${rel%/*}" dir 0750
            place_file "$f" "$rel" 0640 config protect
        done < <(find "$REPO/wazuh/etc/anomaly" -type f ! -name '.*' -print0 | sort -z)
    fi
}

install_rules_and_decoders() {
    local f
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
}

install_rule_tests() {
    local f
    # The rule test cases, so that `wazuh-anomaly logtest` can check the rules on this manager.
    layout_dir ruleset_tests_dir
    # Their `location = ` lines name the default prefix: this manager's instead.
    mkdir -p "$work/ruleset-tests"
    for f in "$REPO"/tests/ruleset/*.ini; do
        [ -f "$f" ] || continue
        render_ini "$f" "$work/ruleset-tests/${f##*/}"
        place_file "$work/ruleset-tests/${f##*/}" "etc/anomaly/ruleset-tests/${f##*/}" 0640 "rule tests" replace
    done
}

install_launcher() {
    local t
    # The launcher: a tiny sh script with the virtualenv and prefix baked in.
    render "$REPO/wazuh/wodles/anomaly/wazuh-anomaly.in" t
    t=${t//@CLI@/"$(sq "$venv/bin/wazuh-anomaly")"}
    t=${t//@PREFIX@/"$(sq "$prefix")"}
    printf '%s' "$t" >"$work/launcher"
    place_file "$work/launcher" "$(at launcher)" "$(mode_of launcher)" launcher replace
}

install_opt_in_launchers() {
    local t
    # Opt-in launchers of the real-time path and the active response (root:wazuh 0750:
    # integratord and execd refuse scripts the wazuh user can write).
    if [ "$realtime" = 1 ]; then
        layout_dir realtime_dir  # state shared by root (CLI) and wazuh (service or integration)
        layout_dir realtime_state_dir
    fi
    if [ "$realtime_service" = 1 ]; then
        # The service's systemd unit (runs the launcher as the wazuh user).
        render "$REPO/wazuh/systemd/wazuh-anomaly-realtime.service.in" t
        t=${t//@LAUNCHER@/"$launcher"}
        t=${t//@PREFIX@/"$prefix"}
        printf '%s' "$t" >"$work/realtime-unit"
        place_file "$work/realtime-unit" "$(at realtime_unit)" "$(mode_of realtime_unit)" "real-time service unit" replace
    fi
    if [ "$realtime_per_alert" = 1 ]; then
        layout_dir integrations_dir
        render "$REPO/wazuh/integrations/custom-anomaly.in" t
        t=${t//@PYTHON@/"$(sq "$venv/bin/python")"}
        t=${t//@PREFIX@/"$(sq "$prefix")"}
        printf '%s' "$t" >"$work/integration"
        place_file "$work/integration" "$(at integration)" "$(mode_of integration)" integration replace
    fi
    if [ "$active_response" = 1 ]; then
        layout_dir active_response_dir
        layout_dir active_response_bin_dir
        render "$REPO/wazuh/active-response/bin/anomaly-response.in" t
        t=${t//@PYTHON@/"$(sq "$venv/bin/python")"}
        t=${t//@PREFIX@/"$(sq "$prefix")"}
        printf '%s' "$t" >"$work/active-response"
        place_file "$work/active-response" "$(at active_response)" "$(mode_of active_response)" "active response" replace
    fi
}

install_logrotate_config() {
    local t
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
    place_file "$work/logrotate" "$(at logrotate_file)" "$(mode_of logrotate_file)" "logrotate configuration" replace
}

create_output_files() {
    local rel p name
    # The output file logcollector reads (created empty so it has something to open).
    rel=$(at anomalies_file)
    no_link "$prefix/$rel"
    if [ -e "$prefix/$rel" ]; then
        [ "${old_type[$rel]:-}" != log ] || record log - "$rel"
    else
        if [ "$dry" = 0 ]; then
            tx_file "$prefix/$rel"
            : >"$prefix/$rel"
            perm "$(mode_of anomalies_file)" "$prefix/$rel"
        fi
        say "$(v create) $prefix/$rel"
        record log - "$rel"
    fi
    if [ "$realtime" = 1 ]; then
        # The integration (user wazuh) appends to it under the writer's lock file.
        for name in anomalies_file anomalies_lock; do
            p=$(at "$name")
            no_link "$prefix/$p"
            if [ ! -e "$prefix/$p" ]; then
                if [ "$dry" = 0 ]; then tx_file "$prefix/$p"; : >"$prefix/$p"; fi
                record log - "$p"
            elif [ "${old_type[$p]:-}" = log ]; then
                record log - "$p"
            fi
            [ "$dry" = 1 ] || perm "$(mode_of "$name")" "$prefix/$p"
        done
    fi
}

remove_what_this_version_no_longer_ships() {
    local p
    # Files of an earlier install that this version no longer ships.
    for p in ${old_order[@]+"${old_order[@]}"}; do
        [ -z "${new_type[$p]:-}" ] || continue
        case ${old_type[$p]} in
            file|dist) remove_if_unchanged "$p" "${old_sha[$p]}" ;;
            log) record log - "$p" ;;
            dir|data) stale_dirs+=("$p") ;;
        esac
    done
}

write_ossec_conf_block() {
    local t block current base new_text
    # ossec.conf: one block between markers, replaced on every run.
    block=$BEGIN_MARK$'\n<ossec_config>\n'
    if [ "$wodle" = 1 ]; then
        render "$REPO/wazuh/ossec.conf.d/wodle-command.xml.in" t
        block+=$t$'\n'
    fi
    render "$REPO/wazuh/ossec.conf.d/localfile-anomalies.xml.in" t
    block+=$t
    if [ "$realtime_per_alert" = 1 ]; then
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
            say "wrote the wazuh-anomaly block in $conf (wodle every $interval, localfile $prefix/$(at anomalies_file))"
        else
            say "wrote the wazuh-anomaly block in $conf (localfile $prefix/$(at anomalies_file), no wodle)"
        fi
    fi
}

# The manifest, the daemons' own check, then the commit (or, on failure, the rollback).
check_and_commit() {
    local p
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
}

say_what_was_installed() {
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
    say "  anomalies:  $prefix/$(at anomalies_file), raised as alerts by rules 117xxx (from this file only)"
    if [ ${#netflow_sensors[@]} -gt 0 ]; then
        say "  netflow:    rules 117000-117049 also accept these sensor agents and files: ${netflow_sensors[*]}"
    fi
    if [ "$realtime_service" = 1 ]; then
        say "  real time:  the wazuh-anomaly-realtime service ($prefix/$(at realtime_unit)); status: $launcher realtime status"
    elif [ "$realtime_per_alert" = 1 ]; then
        say "  real time:  integrations/custom-anomaly, run by wazuh-integratord once per alert"
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
