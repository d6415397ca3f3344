"""Wall time of one pytest target in several configurations, alternated, with ratios to serial.

Why one module: the main job (``benchmarks/suite.py``) and the self-tests
(``benchmarks/selftests.py``) ask the same question, "what does running in
parallel buy on this machine?", and must answer it the same way: each
configuration run in turn (so machine noise hits all alike), each run in its
own scratch directory and guest budget, the median per configuration, and
the ratio to the serial run.  The ratio named ``last`` is printed last, so a
script can read it from the last line.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(target: list[str], config: list[str], extra: list[str]) -> tuple[float, str]:
    """Seconds of one pytest run of *target* and its outcome line."""
    with tempfile.TemporaryDirectory(prefix="sev-bench-") as scratch:
        argv = [sys.executable, "-m", "pytest", *target, "-p", "no:cacheprovider", "-q", "-rfE",
                "-o", "sev_allure=false", f"--guest-log-dir={scratch}/logs", *config, *extra]
        env = dict(os.environ, PYTEST_SEV_BUDGET_DIR=f"{scratch}/budget")  # its own budget, nobody else's slots
        start = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.monotonic() - start
    lines = proc.stdout.strip().splitlines()
    tail = lines[-1] if lines else proc.stderr[-300:]
    failed = [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))]  # a ratio of a red run says so
    return seconds, f"rc {proc.returncode}: {tail}" + "".join(f"\n    {ln}" for ln in failed)


def compare(target: list[str], configs: dict[str, list[str]], names: list[str], runs: int,
            extra: list[str], last: str) -> dict[str, float]:
    """Run every configuration *runs* times in turn; print times and ratios (*last* last)."""
    if "serial" not in names:
        names = ["serial", *names]
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        for name in names:
            seconds, outcome = run_once(target, configs[name], extra)
            times[name].append(seconds)
            print(f"run {i + 1} {name:<8} {seconds:7.1f}s  {outcome}", flush=True)
    base = statistics.median(times["serial"])
    ratios = {n: statistics.median(times[n]) / base for n in names}
    for name in sorted(names, key=lambda n: n == last):
        print(f"{name:<8} median {statistics.median(times[name]):7.1f}s  ratio to serial {ratios[name]:.3f}")
    return ratios
