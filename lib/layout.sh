#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): the layout of an installation,
# read from the file the Python package reads too (wazuh_anomaly/data/layout.tsv).

LAYOUT_FILE=$REPO/integration/wazuh_anomaly/data/layout.tsv
declare -A LAYOUT_PATH=() LAYOUT_KIND=() LAYOUT_MODE=() LAYOUT_RT_MODE=()

read_layout() {
    local name path kind mode rt extra n=0
    [ -f "$LAYOUT_FILE" ] || die "$LAYOUT_FILE is missing; run install.sh from a complete copy of the wazuh-anomaly source tree."
    while IFS=$'\t' read -r name path kind mode rt extra || [ -n "$name" ]; do
        n=$((n + 1))
        case $name in ''|'#'*) continue ;; esac
        if [ -z "$rt" ] || [ -n "$extra" ]; then
            die "$LAYOUT_FILE, line $n: expected 5 tab-separated fields (name, path, kind, mode, realtime mode)."
        fi
        [ "$rt" != - ] || rt=$mode
        LAYOUT_PATH[$name]=$path
        LAYOUT_KIND[$name]=$kind
        LAYOUT_MODE[$name]=$mode
        LAYOUT_RT_MODE[$name]=$rt
    done <"$LAYOUT_FILE"
    for name in etc_dir ruleset_tests_dir logrotate_file manifest_file rules_dir decoders_dir wodle_dir launcher \
        var_dir models_dir state_dir realtime_dir realtime_state_dir logs_dir anomalies_file anomalies_lock \
        integrations_dir integration active_response_dir active_response_bin_dir active_response; do
        [ -n "${LAYOUT_PATH[$name]:-}" ] || die "$LAYOUT_FILE has no line for '$name'; use the layout.tsv of this source tree."
    done
    MANIFEST_REL=$(at manifest_file)
    DATA_RELS=()
    for name in "${!LAYOUT_KIND[@]}"; do
        [ "${LAYOUT_KIND[$name]}" != data ] || DATA_RELS+=("${LAYOUT_PATH[$name]}")
    done
}

at() {  # at NAME: the path of NAME under the prefix (relative)
    [ -n "${LAYOUT_PATH[$1]:-}" ] || die "$LAYOUT_FILE has no '$1'; it does not belong to this install.sh."
    printf '%s' "${LAYOUT_PATH[$1]}"
}

mode_of() {  # mode_of NAME: its mode, the --realtime one with --realtime
    if [ "$realtime" = 1 ]; then printf '%s' "${LAYOUT_RT_MODE[$1]}"; else printf '%s' "${LAYOUT_MODE[$1]}"; fi
}

layout_dir() {  # layout_dir NAME: the directory NAME, of its kind and mode
    ensure_dir "$(at "$1")" "${LAYOUT_KIND[$1]}" "$(mode_of "$1")"
}
