#!/usr/bin/env bash
# A real OpenSearch 2.19 server on 127.0.0.1 for the tests, CI and the indexer benchmark.
#
#   bash scripts/opensearch.sh start|stop|status|wait|env
#
# start   fetch (once, cached) the OpenSearch integ-test zip and the security plugin from
#         Maven Central, unpack them, set up TLS + basic auth with the plugin's demo
#         certificates and a generated admin password, start the node and wait until it is ready.
# stop    stop the node started by `start` (by its pid file).
# status  exit 0 when the node answers, 1 otherwise.
# wait    wait up to WAZUH_ANOMALY_OPENSEARCH_WAIT seconds (default 180) until every primary
#         shard is active (yellow or green: one node never holds a replica).
# env     print the connection settings (URL, CA, user, password file) as shell variables.
#
# Settings (environment):
#   WAZUH_ANOMALY_OPENSEARCH_VERSION  default 2.19.4 (the newest 2.19 whose security plugin is on Maven Central)
#   WAZUH_ANOMALY_OPENSEARCH_PORT     default: a free port chosen at the first start
#   WAZUH_ANOMALY_OPENSEARCH_CACHE    where the downloaded zips are kept (default ~/.cache/wazuh-anomaly/opensearch)
#   WAZUH_ANOMALY_OPENSEARCH_DIR      the node's home, data and logs (default /tmp/wazuh-anomaly-opensearch-<uid>)
#   WAZUH_ANOMALY_OPENSEARCH_HEAP     default 512m
#   WAZUH_ANOMALY_OPENSEARCH_SECURITY 1 (default): TLS + basic auth; 0: plain http without auth
# OpenSearch refuses to run as root: as root the node runs as the user `nobody`.
set -euo pipefail

version=${WAZUH_ANOMALY_OPENSEARCH_VERSION:-2.19.4}
cache=${WAZUH_ANOMALY_OPENSEARCH_CACHE:-$HOME/.cache/wazuh-anomaly/opensearch}
base=${WAZUH_ANOMALY_OPENSEARCH_DIR:-/tmp/wazuh-anomaly-opensearch-$(id -u)}
heap=${WAZUH_ANOMALY_OPENSEARCH_HEAP:-512m}
security=${WAZUH_ANOMALY_OPENSEARCH_SECURITY:-1}
home=$base/opensearch-$version
pidfile=$base/run/opensearch.pid
# the integ-test zip has no bundled JDK: the machine's java
OPENSEARCH_JAVA_HOME=${OPENSEARCH_JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$(command -v java || echo /nonexistent/bin/java)")")")}
export OPENSEARCH_JAVA_HOME
envfile=$base/connection.env
passfile=$base/admin.password

say() { echo "opensearch.sh: $*" >&2; }
die() { say "$*"; exit 1; }

fetch() {  # group:artifact:version:zip into the cache, through Maven
    local coords=$1 file=$2
    [ -s "$cache/$file" ] && return 0
    mkdir -p "$cache"
    command -v mvn >/dev/null || die "mvn is not installed; install maven (apt-get install maven) or put $file in $cache."
    say "fetching $coords from Maven Central"
    mvn -q -B dependency:copy "-Dartifact=$coords" "-DoutputDirectory=$cache" >&2 \
        || die "could not fetch $coords through Maven; check the network or the version."
    [ -s "$cache/$file" ] || die "Maven did not produce $cache/$file."
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

url() {
    # shellcheck disable=SC1090
    . "$envfile"
    echo "$OPENSEARCH_URL"
}

curl_node() {  # curl against the node with its CA and admin credentials; never puts the password in argv
    # shellcheck disable=SC1090
    . "$envfile"
    if [ -n "$OPENSEARCH_PASSWORD_FILE" ]; then
        curl -sS -m 5 --cacert "$OPENSEARCH_CA" -K <(printf 'user = "%s:%s"\n' "$OPENSEARCH_USER" "$(cat "$OPENSEARCH_PASSWORD_FILE")") "$@"
    else
        curl -sS -m 5 "$@"
    fi
}

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

cmd_status() {
    [ -f "$envfile" ] || return 1
    running || return 1
    curl_node -f -o /dev/null "$(url)/_cluster/health" 2>/dev/null
}

cmd_wait() {
    local limit=${WAZUH_ANOMALY_OPENSEARCH_WAIT:-180} waited=0 health
    [ -f "$envfile" ] || die "not started; run: bash scripts/opensearch.sh start"
    while [ "$waited" -lt "$limit" ]; do
        running || die "the node exited during startup; see $base/logs/ and $base/stdout.log"
        # Every primary shard active (yellow) is all one node can do: data stream backing
        # indices ask for a replica whatever cluster.default_number_of_replicas says, and
        # the ones earlier runs left in $base/data would keep a restart from ever being green.
        health=$(curl_node "$(url)/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null || true)
        case $health in *'"status":"green"'* | *'"status":"yellow"'*) say "ready at $(url) (every primary shard active)"; return 0 ;; esac
        sleep 2
        waited=$((waited + 3))
    done
    die "its primary shards were not all active after ${limit}s; see $base/logs/"
}

install_node() {
    fetch "org.opensearch.distribution.integ-test-zip:opensearch:$version:zip" "opensearch-$version.zip"
    if [ "$security" = 1 ]; then
        fetch "org.opensearch.plugin:opensearch-security:$version.0:zip" "opensearch-security-$version.0.zip"
    fi
    rm -rf "$home"
    mkdir -p "$base"
    (cd "$base" && unzip -q "$cache/opensearch-$version.zip")
    local port=${WAZUH_ANOMALY_OPENSEARCH_PORT:-$(free_port)}
    cat >>"$home/config/opensearch.yml" <<EOF
cluster.name: wazuh-anomaly-test
node.name: node-1
network.host: 127.0.0.1
http.port: $port
transport.port: $((port + 1))
discovery.type: single-node
path.data: $base/data
path.logs: $base/logs
action.auto_create_index: true
# one node: replicas could never be assigned and the cluster would stay yellow
cluster.default_number_of_replicas: 0
EOF
    printf -- '-Xms%s\n-Xmx%s\n' "$heap" "$heap" >"$home/config/jvm.options.d/heap.options"
    local scheme=http user="" pw=""
    if [ "$security" = 1 ]; then
        "$home/bin/opensearch-plugin" install --batch "file://$cache/opensearch-security-$version.0.zip" >&2
        # a fresh random admin password each install, kept in a 0600 file, never in argv
        pw="Wa$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')9!"
        (umask 077 && printf '%s' "$pw" >"$passfile")
        OPENSEARCH_INITIAL_ADMIN_PASSWORD=$pw bash "$home/plugins/opensearch-security/tools/install_demo_configuration.sh" -y -i -s >"$base/demo-config.log" 2>&1 \
            || die "the security plugin's demo configuration failed; see $base/demo-config.log"
        # the demo's audit log would be one more index on a small test node
        sed -i -e 's/^plugins.security.audit.type: .*/plugins.security.audit.type: noop/' \
            -e '/^node.max_local_storage_nodes:/d' "$home/config/opensearch.yml"
        scheme=https
        user="admin"
    fi
    rm -rf "$base/data" "$base/logs" "$base/run"
    mkdir -p "$base/data" "$base/logs" "$base/run"
    cat >"$envfile" <<EOF
OPENSEARCH_URL=$scheme://127.0.0.1:$port
OPENSEARCH_CA=${user:+$home/config/root-ca.pem}
OPENSEARCH_CLIENT_CERT=${user:+$home/config/kirk.pem}
OPENSEARCH_CLIENT_KEY=${user:+$home/config/kirk-key.pem}
OPENSEARCH_USER=$user
OPENSEARCH_PASSWORD_FILE=${user:+$passfile}
OPENSEARCH_VERSION=$version
OPENSEARCH_PID_FILE=$pidfile
EOF
    echo "$version $security" >"$base/installed"
}

cmd_start() {
    # one start at a time (tests, CI and the benchmark may race)
    mkdir -p "$base"
    exec 9>"$base/start.lock"
    flock 9
    if cmd_status; then
        say "already running at $(url)"
        return 0
    fi
    if running; then
        say "already starting"
        cmd_wait
        return
    fi
    command -v java >/dev/null || die "java is not installed; install a JDK 17 (apt-get install openjdk-17-jre-headless)."
    if [ "$(cat "$base/installed" 2>/dev/null)" != "$version $security" ] || [ ! -d "$home" ]; then
        install_node
    fi
    mkdir -p "$base/data" "$base/logs" "$base/run"
    local run=()
    if [ "$(id -u)" = 0 ]; then
        # OpenSearch will not run as root: the node's directories belong to nobody
        chown -R nobody:nogroup "$home" "$base/data" "$base/logs" "$base/run"
        chmod 755 "$base"
        run=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    fi
    say "starting OpenSearch $version (heap $heap)"
    "${run[@]}" env OPENSEARCH_JAVA_HOME="$OPENSEARCH_JAVA_HOME" "$home/bin/opensearch" -d -p "$pidfile" >"$base/stdout.log" 2>&1 9>&- \
        || die "OpenSearch did not start; see $base/stdout.log and $base/logs/"
    for _ in $(seq 1 30); do [ -s "$pidfile" ] && break; sleep 1; done
    cmd_wait
}

cmd_stop() {
    if ! running; then
        say "not running"
        return 0
    fi
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { say "stopped"; return 0; }
        sleep 1
    done
    kill -9 "$pid" 2>/dev/null || true
    say "killed after 60s"
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) if cmd_status; then echo "running at $(url)"; else echo "not running"; exit 1; fi ;;
    wait) cmd_wait ;;
    env) [ -f "$envfile" ] || die "not installed; run: bash scripts/opensearch.sh start"; cat "$envfile" ;;
    *) echo "usage: bash scripts/opensearch.sh start|stop|status|wait|env" >&2; exit 2 ;;
esac
