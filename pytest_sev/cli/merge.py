"""``python -m pytest_sev merge OUT RESULTS_DIR... [--junit OUT.xml RUNNER=FILE...]``:
several runners' Allure results (and JUnit files) into one, for one report
(``scripts/report.sh OUT``) with one environment per runner."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_sev.reporting.merge import merge_junit, merge_results


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pytest_sev merge", description=__doc__)
    p.add_argument("out", type=Path, help="merged Allure results directory (created)")
    p.add_argument("results", type=Path, nargs="+", help="one Allure results directory per runner")
    p.add_argument("--junit", type=Path, help="write a merged JUnit XML here")
    p.add_argument("--junit-in", action="append", default=[], metavar="RUNNER=FILE",
                   help="a runner's JUnit XML (repeat per runner)")
    args = p.parse_args(argv)
    for d in args.results:
        if not d.is_dir():
            print(f"merge: {d}: no such results directory", file=sys.stderr)
            return 2
    try:
        runs = merge_results(args.out, args.results)
        for run in runs:
            print(f"merge: {run.runner}: {run.results} results from {run.directory}")
        if args.junit:
            pairs = []
            for item in args.junit_in:
                runner, sep, file = item.partition("=")
                if not sep or not Path(file).is_file():
                    print(f"merge: --junit-in {item!r} is not RUNNER=FILE with an existing file", file=sys.stderr)
                    return 2
                pairs.append((runner, Path(file)))
            print(f"merge: {merge_junit(args.junit, pairs)} test cases in {args.junit}")
    except (ValueError, OSError) as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 1
    return 0
