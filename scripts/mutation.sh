#!/usr/bin/env bash
# Mutation testing of the verdict core (mutmut, configured in pyproject.toml [tool.mutmut]).
#
#   bash scripts/mutation.sh                       # every module in only_mutate
#   bash scripts/mutation.sh pytest_sev/proofs/dma_run.py # just these (paths as in only_mutate)
#
# Why a private copy: mutmut writes its mutated tree into ./mutants; running it in a copy keeps
# the checkout clean and lets two runs (two developers, two modules) go side by side.
# Leaves $MUTATION_OUT (default reports/mutation): summary.json, survivors.txt (one line each,
# with the diff of every survivor in survivors.diff) and mutmut.log. Its last line is
#   mutation: N mutants, K killed, S survived
# (killed counts timeouts and crashes: the tests stopped the mutant; survived counts mutants no
# test reached). Exit 1 when less than $MUTATION_MIN percent (default 97) were killed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
[ -x .venv/bin/mutmut ] || bash scripts/setup.sh
out=${MUTATION_OUT:-$here/reports/mutation}
min=${MUTATION_MIN:-97}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/pytest-sev-mutation.XXXXXX")
trap 'rm -rf "$work"' EXIT

# the tree as it is (uncommitted changes included), without caches, venv or results
.venv/bin/python - "$here" "$work/tree" "$@" <<'PY'
import re, shutil, sys, tomllib
from pathlib import Path
src, dst, only = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
# results and build output only at the top (fixtures/snp-kat/reports is test data)
top_skip = {".venv", ".git", "mutants", "reports", ".tools", "build"}
skip = {"__pycache__", ".mypy_cache", ".ruff_cache"}
shutil.copytree(src, dst, ignore=lambda d, names: [
    n for n in names
    if n in skip or n.endswith(".egg-info") or (Path(d) == src and n in top_skip)])
if only:
    pyproject = dst / "pyproject.toml"
    known = tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["only_mutate"]
    bad = [m for m in only if m not in known]
    if bad:
        sys.exit(f"mutation: not in [tool.mutmut] only_mutate: {', '.join(bad)}")
    text = pyproject.read_text()
    listing = "only_mutate = [\n" + "".join(f'    "{m}",\n' for m in only) + "]"
    pyproject.write_text(re.sub(r"only_mutate = \[\n(?:.*\n)*?\]", listing, text, count=1))
(dst / "reports").mkdir()
PY

cd "$work/tree"
status=0
"$here/.venv/bin/mutmut" run >"$out/mutmut.log" 2>&1 || status=$?
if [ ! -d mutants ] || ! "$here/.venv/bin/mutmut" export-cicd-stats >>"$out/mutmut.log" 2>&1; then
  tail -30 "$out/mutmut.log" >&2
  echo "mutation: mutmut failed (exit $status); log: $out/mutmut.log" >&2
  exit 2
fi
cp mutants/mutmut-cicd-stats.json "$out/summary.json"
"$here/.venv/bin/mutmut" results >"$out/survivors.txt" 2>>"$out/mutmut.log" || true
: >"$out/survivors.diff"
sed -n 's/^ *\([^ :]*\): .*/\1/p' "$out/survivors.txt" | while read -r name; do
  "$here/.venv/bin/mutmut" show "$name" >>"$out/survivors.diff" 2>&1 || true
  echo >>"$out/survivors.diff"
done
"$here/.venv/bin/python" - "$out/summary.json" "$min" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
killed = s["killed"] + s["timeout"] + s["segfault"]
survived = s["survived"] + s["no_tests"] + s["suspicious"] + s["skipped"]
total = s["total"]
print(f"survivors: {sys.argv[1].rsplit('/', 1)[0]}/survivors.txt" if survived else "survivors: none")
print(f"mutation: {total} mutants, {killed} killed, {survived} survived")
sys.exit(0 if total and 100 * killed >= float(sys.argv[2]) * total else 1)
PY
