"""``python -m pytest_sev merge OUT RESULTS_DIR... [--junit OUT.xml RUNNER=FILE...]``:
several runners' Allure results (and JUnit files) into one, for one report
(``scripts/report.sh OUT``) with one environment per runner.

Every input is checked before OUT is created: each RESULTS_DIR must hold
Allure results (only Allure's own files are copied), each ``--junit-in`` must
be RUNNER=FILE with a readable file; a refusal is one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_sev.reporting.merge import check_results_dir, merge_junit, merge_results, read_junit


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pytest_sev merge", description=__doc__)
    p.add_argument("out", type=Path, help="merged Allure results directory (created)")
    p.add_argument("results", type=Path, nargs="+", help="one Allure results directory per runner")
    p.add_argument("--junit", type=Path, help="write a merged JUnit XML here")
    p.add_argument("--junit-in", action="append", default=[], metavar="RUNNER=FILE",
                   help="a runner's JUnit XML (repeat per runner)")
    args = p.parse_args(argv)
    pairs: list[tuple[str, Path]] = []
    try:
        for d in args.results:
            check_results_dir(d)
        for item in args.junit_in:
            runner, sep, file = item.partition("=")
            if not sep or not runner or not Path(file).is_file():
                raise ValueError(f"--junit-in {item!r} is not RUNNER=FILE with an existing file")
            read_junit(Path(file))
            pairs.append((runner, Path(file)))
        if pairs and not args.junit:
            raise ValueError("--junit-in needs --junit OUT.xml (where the merged JUnit XML goes)")
    except ValueError as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 2
    try:
        runs = merge_results(args.out, args.results)
        for run in runs:
            print(f"merge: {run.runner}: {run.results} results from {run.directory}")
        if args.junit:
            print(f"merge: {merge_junit(args.junit, pairs)} test cases in {args.junit}")
    except (ValueError, OSError) as exc:
        print(f"merge: {exc}", file=sys.stderr)
        return 1
    return 0
