#!/usr/bin/env bash
# Installs wazuh-anomaly on a Wazuh 4.x manager (or into a sandbox prefix that mirrors
# /var/ossec), and removes it again with --uninstall. Safe to re-run: the result of the
# same options is the same, files an admin changed are never overwritten, and a failed
# configuration check rolls every change back.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true  # "&" in a path must stay literal

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
LIB=$REPO/lib  # the parts of this script, one file per concern
[ -f "$LIB/common.sh" ] || {
    printf 'install.sh: %s\n' "$LIB/common.sh is missing; run install.sh from a complete copy of the wazuh-anomaly source tree." >&2
    exit 1
}
BEGIN_MARK='<!-- wazuh-anomaly:begin (managed by install.sh, do not edit inside) -->'
END_MARK='<!-- wazuh-anomaly:end -->'
VENV_MARK=.wazuh-anomaly-created  # inside a virtualenv this script created
CPU_INDEX=https://download.pytorch.org/whl/cpu

# shellcheck source=lib/common.sh
. "$LIB/common.sh"
# shellcheck source=lib/layout.sh
. "$LIB/layout.sh"
# shellcheck source=lib/options.sh
. "$LIB/options.sh"
# shellcheck source=lib/journal.sh
. "$LIB/journal.sh"
# shellcheck source=lib/manifest.sh
. "$LIB/manifest.sh"
# shellcheck source=lib/files.sh
. "$LIB/files.sh"
# shellcheck source=lib/ossec-conf.sh
. "$LIB/ossec-conf.sh"
# shellcheck source=lib/manager.sh
. "$LIB/manager.sh"
# shellcheck source=lib/python.sh
. "$LIB/python.sh"
# shellcheck source=lib/install-steps.sh
. "$LIB/install-steps.sh"
# shellcheck source=lib/uninstall.sh
. "$LIB/uninstall.sh"

main() {
    read_layout             # the paths and modes of an installation (shared with the package)
    parse_options "$@"
    check_options           # values, the prefix, the virtualenv path: nothing touched yet
    take_install_lock       # one install.sh at a time on a prefix
    check_confirmations     # without a terminal, --yes for what would be asked
    decide_ownership        # root:wazuh when root and the wazuh group exist
    make_work_dir           # scratch space, and the trap that rolls a failed run back
    if [ "$uninstall" = 1 ]; then do_uninstall; else do_install; fi
}

main "$@"
