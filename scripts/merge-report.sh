#!/usr/bin/env bash
# One report from several runners' results (the nightly's report job).
#
#   scripts/merge-report.sh RUNS_DIR [REPORT_DIR]
#
# RUNS_DIR holds one directory per runner, each with reports/allure-results/
# (or allure-results/) and optionally reports/junit.xml, as the CI templates
# upload them. Writes reports/allure-results-merged/, reports/junit-merged.xml
# and the HTML report (default reports/allure-report) with one Allure 3
# environment per runner; the history (reports/allure-history.jsonl) carries
# over between nights when the CI keeps it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=$(realpath -m "${1:?usage: merge-report.sh RUNS_DIR [REPORT_DIR]}")
report=$(realpath -m "${2:-$here/reports/allure-report}")
merged="$here/reports/allure-results-merged"
cd "$here"
[ -x .venv/bin/python ] || bash scripts/setup.sh

results=()
junit=()
for dir in "$runs"/*/; do
  for cand in "$dir/reports/allure-results" "$dir/allure-results"; do
    if [ -d "$cand" ]; then results+=("$cand"); break; fi
  done
  for cand in "$dir/reports/junit.xml" "$dir/junit.xml"; do
    name=$(basename "$dir"); name=${name#results-}
    if [ -f "$cand" ]; then junit+=(--junit-in "$name=$cand"); break; fi
  done
done
if ((${#results[@]} == 0)); then
  echo "merge-report: no runner results under $runs" >&2
  exit 2
fi
rm -rf "$merged"
args=("$merged" "${results[@]}")
if ((${#junit[@]})); then args+=(--junit "$here/reports/junit-merged.xml" "${junit[@]}"); fi
.venv/bin/python -m pytest_sev merge "${args[@]}"
exec bash scripts/report.sh "$merged" "$report"
