#!/usr/bin/env bash
# Generate the HTML report of a pytest-sev run with Allure 3.
#
#   scripts/report.sh [RESULTS_DIR] [REPORT_DIR]
#
# RESULTS_DIR  Allure results of the run (default reports/allure-results, where
#              the plugin writes them unless --alluredir says otherwise)
# REPORT_DIR   where the HTML goes (default reports/allure-report); replaced
#              only once the new report is complete
#
# History: every generation appends to SEV_ALLURE_HISTORY (default
# allure-history.jsonl beside REPORT_DIR), which the next report reads for
# trends and per-test history; keep that file between nightly runs (it is
# outside REPORT_DIR on purpose). SEV_ALLURE_HISTORY_LIMIT caps its entries.
# SEV_ALLURE_REPORT_NAME names the report (default "pytest-sev").
#
# Idempotent, and works on a fresh Debian 12: installs Node.js and npm with
# apt when missing, and the pinned npm `allure` package (Allure 3) into
# .tools/ (git-ignored; SEV_TOOLS_DIR to move it). The report is a static
# JavaScript app: open it through a web server, e.g.
#   python3 -m http.server --bind 127.0.0.1 -d REPORT_DIR 8000
set -euo pipefail

ALLURE_VERSION=3.18.0   # npm package `allure`; checked with Node.js 18 and 20
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
results=$(realpath -m "${1:-$here/reports/allure-results}")
report=$(realpath -m "${2:-$here/reports/allure-report}")
history=$(realpath -m "${SEV_ALLURE_HISTORY:-$(dirname "$report")/allure-history.jsonl}")
tools=$(realpath -m "${SEV_TOOLS_DIR:-$here/.tools}")

say() { echo "report.sh: $*" >&2; }

if ! compgen -G "$results/*-result.json" >/dev/null; then
  say "no Allure results in $results (run pytest first; the plugin writes them there by default)"
  exit 2
fi

# Node.js and npm, from Debian when the machine has none (Debian 12: Node 18).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  say "installing nodejs and npm with apt-get"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  say "Node.js $(node --version) is too old for Allure 3 (needs 18 or newer)"
  exit 2
fi

# The Allure 3 command line, pinned, in a project-local prefix. A lock keeps
# two concurrent runs from installing over each other.
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9
cli="$tools/node_modules/allure/cli.js"
installed=$(node -p "require('$tools/node_modules/allure/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$ALLURE_VERSION" ]; then
  say "installing allure@$ALLURE_VERSION into $tools"
  npm install --prefix "$tools" --no-audit --no-fund --save-exact --loglevel=error \
    "allure@$ALLURE_VERSION" >&2
fi

# Generate next to the target, then swap: a failed generation leaves the
# previous report, and Allure never sees an old report in its output dir.
mkdir -p "$(dirname "$report")" "$(dirname "$history")"
staging=$(mktemp -d "$report.new.XXXXXX")
trap 'rm -rf "$staging"' EXIT
SEV_ALLURE_RESULTS="$results" SEV_ALLURE_HISTORY="$history" \
  node "$cli" generate --config "$here/fixtures/allure/allurerc.mjs" --cwd "$tools" \
  --output "$staging" "$results" >&2
if [ ! -f "$staging/index.html" ]; then
  say "Allure produced no index.html in $staging"
  exit 1
fi
rm -rf "$report"
mv "$staging" "$report"
trap - EXIT
echo "$report/index.html"
