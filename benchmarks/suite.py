"""The main job serial vs in parallel: what xdist and the guest budget buy.

Runs the suites (``pytest suites/``, the README's main job without set-up and
report) in the configurations below, alternating so machine noise hits all
alike, and prints each wall time and the median ratio to the serial run:

- ``serial``:   one process (``-p no:xdist``), the baseline;
- ``n2``:       ``-n 2 --dist loadgroup`` (goal on 2 cores: <= 0.65 of serial);
- ``budget1``:  ``-n auto --max-guests 1``: the budget leaves one worker
  (goal: not slower than serial by more than 5 %).

    .venv/bin/python benchmarks/suite.py [--runs 1] [--only serial,n2,budget1] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "serial": ["-p", "no:xdist"],
    "n2": ["-n", "2", "--dist", "loadgroup"],
    "budget1": ["-n", "auto", "--dist", "loadgroup", "--max-guests", "1"],
}


def run_once(name: str, extra: list[str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="sev-bench-suite-") as scratch:
        argv = [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-p", "no:cacheprovider", "-q",
                "-o", "sev_allure=false", f"--guest-log-dir={scratch}/logs", *CONFIGS[name], *extra]
        env = dict(os.environ, PYTEST_SEV_BUDGET_DIR=f"{scratch}/budget")  # its own budget, nobody else's slots
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return seconds, f"rc {proc.returncode}: {tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    if "serial" not in names:
        names.insert(0, "serial")
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.runs):
        for name in names:
            seconds, outcome = run_once(name, args.extra)
            times[name].append(seconds)
            print(f"run {i + 1} {name:<8} {seconds:7.1f}s  {outcome}", flush=True)
    base = statistics.median(times["serial"])
    for name in names:
        med = statistics.median(times[name])
        print(f"{name:<8} median {med:7.1f}s  ratio to serial {med / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
