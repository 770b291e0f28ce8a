#!/usr/bin/env bash
# shellcheck disable=SC2034,SC2154  # variables shared by install.sh and its lib/*.sh
# Part of install.sh (sourced by it; not run on its own): ossec.conf, templates and the rules' locations.

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
    _tpl=${_tpl//@ANOMALIES_FILE@/"$prefix/$(at anomalies_file)"}
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
