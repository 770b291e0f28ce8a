#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): --uninstall.

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
    stop_realtime_service

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
