#!/usr/bin/env bash
# The main job on the embedded default, without a Wazuh manager: install wazuh-anomaly
# into a sandbox prefix that mirrors /var/ossec, lay the bundled sample alerts (AIT-ADS,
# four days, attacks on the last) out as the manager's logs/alerts, train on the first
# three days, run the scoring job over the fourth, and show each anomaly with the Wazuh
# rule it raises. Usage: bash examples/sandbox.sh [PREFIX]   (default /tmp/wazuh-anomaly-sandbox)
# PREFIX and PREFIX.venv are deleted and made again, but only when they are empty or were
# made by an earlier run of this script (it leaves a .wazuh-anomaly-sandbox file in each).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:-/tmp/wazuh-anomaly-sandbox}
case "$prefix" in /*) ;; *) prefix=$PWD/$prefix ;; esac
prefix=${prefix%/}
[ -n "$prefix" ] || { echo "sandbox.sh: the sandbox cannot be /; name a new directory such as /tmp/wazuh-anomaly-sandbox." >&2; exit 2; }
venv=$prefix.venv
mark=.wazuh-anomaly-sandbox
for dir in "$prefix" "$venv"; do
    if [ -L "$dir" ] || { [ -e "$dir" ] && ! [ -d "$dir" ]; } ||
        { [ -d "$dir" ] && [ ! -f "$dir/$mark" ] && [ -n "$(ls -A -- "$dir")" ]; }; then
        echo "sandbox.sh: $dir exists and was not made by sandbox.sh, so it is not deleted; name a new or empty directory (or remove it yourself)." >&2
        exit 2
    fi
done

# Python dependencies (torch included) come from the development virtualenv, built once
# and cached outside the clone; the sandbox gets its own small virtualenv on top of it.
devenv=$(bash "$repo/.ci/venv.sh")

echo "== sandbox prefix $prefix"
rm -rf -- "$prefix" "$venv"
mkdir -p "$prefix/etc/rules" "$prefix/etc/decoders" "$prefix/logs" "$prefix/bin"
echo "made by examples/sandbox.sh; the next run may delete this directory" > "$prefix/$mark"
cp "$repo/tests/data/ossec.conf" "$prefix/etc/ossec.conf"
"$devenv/bin/python" -m venv "$venv"
echo "made by examples/sandbox.sh; the next run may delete this directory" > "$venv/$mark"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$devenv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/wazuh-anomaly-deps.pth"

echo "== install.sh"
"$repo/install.sh" --prefix "$prefix" --venv "$venv" --no-restart --yes

cli=$prefix/wodles/anomaly/wazuh-anomaly
echo "== sample alerts"
"$cli" sample-data
echo "== train on 2022-01-21 .. 2022-01-23 (MVAD and the seasonal baseline; a few minutes on 2 cores)"
"$cli" train --from 2022-01-21T00:00:00Z --to 2022-01-24T00:00:00Z --now 2022-01-24T00:05:00Z
echo "== the wodle's scoring run, as if it were 2022-01-25 00:05 UTC (scores every bucket of the 24th)"
"$cli" run --now 2022-01-25T00:05:00Z
echo "== the anomalies written to $prefix/logs/anomaly/anomalies.json, and the alert each raises"
"$cli" show --last 0
echo "== status"
"$cli" status --now 2022-01-25T00:05:00Z
