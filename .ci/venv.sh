#!/usr/bin/env bash
# Prints the path of a virtualenv with every dependency of .ci/requirements.txt,
# building it once per distinct requirements file. The virtualenv is kept outside
# the clone (WAZUH_ANOMALY_CACHE, default ~/.cache/wazuh-anomaly) so CI reuses it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${WAZUH_ANOMALY_CACHE:-$HOME/.cache/wazuh-anomaly}
key=$( (cat "$here/requirements.txt"; python3 -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
    echo "building virtualenv $venv (first run only; torch is large)" >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel >&2
    "$venv/bin/python" -m pip install -q -r "$here/requirements.txt" >&2
    touch "$venv/.complete"
fi
# The project's console script, once (an editable install of whichever clone came first);
# callers put their own clone's integration/ first on PYTHONPATH, so its code is what runs.
if [ ! -x "$venv/bin/wazuh-anomaly" ]; then
    "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >&2
fi
echo "$venv"
