#!/usr/bin/env bash
# The project's own tests (unit, pytester, real-QEMU integration), after the
# idempotent set-up. Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
# lint and types first: cheap, and a red one says where without a 7-minute wait
.venv/bin/ruff check pytest_sev suites tests benchmarks conftest.py
.venv/bin/mypy
# the nightly's CI templates against their published schemas (vendored: offline)
.venv/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/nightly.yml
.venv/bin/check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
# self-tests keep reports/allure-results for the main job. In parallel (one
# worker per CPU): each test has its own guest budget, log and scratch
# directories and looks only for the QEMU it started; the tests that restart
# the machine's one libvirtd share an xdist group (--dist loadgroup), so one
# worker runs them in turn. Give -n 0 to run serially.
parallel=(-n auto --dist loadgroup)
for arg in "$@"; do
  case "$arg" in -n|-n*|--numprocesses*|--dist*|no:xdist) parallel=() ;; esac
done
exec .venv/bin/python -m pytest tests/ -p no:cacheprovider -o sev_allure=false "${parallel[@]}" "$@"
