#!/usr/bin/env bash
# The main job: the SEV-ES suites on the embedded default guest, then the
# Allure HTML report. Mode flags (--sev-es, --sev, --sev-mode=off) and other
# pytest arguments pass through; the exit status is the suites'.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh || exit $?
# Guests in parallel: as many xdist workers as the host's guest budget serves
# (-n auto asks the plugin), suites' shared guests kept in one worker each
# (--dist loadgroup). Give -n yourself (e.g. -n 0 for one process) to override.
parallel=(-n auto --dist loadgroup)
for arg in "$@"; do
  case "$arg" in -n|-n*|--numprocesses*|--dist*|no:xdist) parallel=() ;; esac
done
.venv/bin/python -m pytest suites/ -p no:cacheprovider "${parallel[@]}" "$@"
status=$?
if [ -x scripts/report.sh ] || [ -f scripts/report.sh ]; then
  bash scripts/report.sh || echo "run-suites: the HTML report could not be generated (results are in reports/allure-results)"
fi
exit $status
