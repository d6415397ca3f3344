"""The project's own tests serial vs in parallel, in one run (issue: parallel <= 0.60 of serial).

Runs ``pytest tests/`` (what ``scripts/run-tests.sh`` runs after its set-up,
lint and type checks) once serially (``-p no:xdist``) and once as
run-tests.sh does (``-n auto --dist loadgroup``: the live libvirt tests in
one xdist group), alternating when ``--runs`` > 1, and prints each wall time
and, on its last line, the parallel / serial ratio.

    .venv/bin/python benchmarks/selftests.py [--runs 1] [-- extra pytest args, e.g. -k "not libvirt"]
"""

from __future__ import annotations

import argparse
import sys

from walltime import ROOT, compare

CONFIGS = {
    "serial": ["-p", "no:xdist"],
    "parallel": ["-n", "auto", "--dist", "loadgroup"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    compare([str(ROOT / "tests")], CONFIGS, ["serial", "parallel"], args.runs, args.extra, last="parallel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
