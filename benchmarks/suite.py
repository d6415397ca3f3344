"""The main job serial vs in parallel: what xdist and the guest budget buy.

Runs the suites (``pytest suites/``, the README's main job without set-up and
report) in the configurations below, alternating so machine noise hits all
alike, and prints each wall time and the median ratio to the serial run; the
``-n 2`` ratio is the LAST ratio line:

- ``serial``:   one process (``-p no:xdist``), the baseline;
- ``budget1``:  ``-n auto --max-guests 1``: the budget leaves one worker
  (goal: not slower than serial by more than 5 %);
- ``auto``:     ``-n auto --dist loadgroup``, as the main job runs: as many
  workers as the budget serves without deadlock (3 on 2 CPUs);
- ``n2``:       ``-n 2 --dist loadgroup`` (goal on 2 cores: <= 0.65 of serial).

    .venv/bin/python benchmarks/suite.py [--runs 1] [--only serial,auto,n2,budget1] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import sys

from walltime import ROOT, compare

CONFIGS = {
    "serial": ["-p", "no:xdist"],
    "budget1": ["-n", "auto", "--dist", "loadgroup", "--max-guests", "1"],
    "auto": ["-n", "auto", "--dist", "loadgroup"],
    "n2": ["-n", "2", "--dist", "loadgroup"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default=",".join(CONFIGS))
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    compare([str(ROOT / "suites")], CONFIGS, [n for n in args.only.split(",") if n], args.runs, args.extra,
            last="n2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
