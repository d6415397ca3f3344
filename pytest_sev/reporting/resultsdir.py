"""Where Allure results go when nobody says: ``<rootdir>/reports/allure-results``.

Why a default at all: a nightly that forgot ``--alluredir`` produces no
report, and the night it goes red is the night nobody can tell why. So when
the rootdir has a ``reports/`` directory (a checkout of this project, or a
project laid out like it) and the ini option ``sev_allure`` is on (default),
the plugin points allure-pytest there before allure-pytest configures itself.

The default directory holds *this run's* results only: it is emptied at the
start of a run (by the xdist controller, before any worker starts), so a
report never mixes tonight's tests with last week's. History for trends lives
outside it (``scripts/report.sh`` keeps ``reports/allure-history.jsonl``).
An explicit ``--alluredir`` keeps allure-pytest's own rules (append unless
``--clean-alluredir``).

Concurrent runs in one checkout (two jobs started at once) must not wipe each
other: each run holds an exclusive ``flock`` on its own file under
``reports/.allure-runs/`` for as long as its process lives, and the emptying
happens under a guard lock only when no other run holds one. A run that
starts while another is live therefore adds to the same directory; both keep
complete results, and the next run alone starts clean again. A run that was
killed leaves a lock file nobody holds: it counts as finished.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

RESULTS_SUBDIR = Path("reports") / "allure-results"
RUNS_SUBDIR = ".allure-runs"

#: this process's run lock (kept open, hence held, until the process exits)
_HELD: list[int] = []


def default_results_dir(rootpath: Path, enabled: bool) -> Path | None:
    """The default results directory for *rootpath*, or None to leave it unset."""
    if not enabled or not (Path(rootpath) / "reports").is_dir():
        return None
    return Path(rootpath) / RESULTS_SUBDIR


def _other_live_runs(runs: Path) -> list[str]:
    """Run lock files another live process holds; stale ones are removed."""
    live = []
    for f in runs.glob("*.lock"):
        try:
            fd = os.open(f, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live.append(f.name)
        else:
            f.unlink(missing_ok=True)  # nobody holds it: a finished or killed run
        finally:
            os.close(fd)
    return live


def claim_results_dir(path: Path) -> bool:
    """Register this run on *path* (lock held until exit); empty *path* first
    unless another live run is writing there. Returns True when emptied."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    runs = path.parent / RUNS_SUBDIR
    runs.mkdir(exist_ok=True)
    guard = os.open(runs / "guard", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if _HELD:  # this process already claimed it (a second configure)
            return False
        others = _other_live_runs(runs)
        if not others:
            _empty(path)
        mine = os.open(runs / f"{os.getpid()}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(mine, fcntl.LOCK_EX)
        _HELD.append(mine)
        return not others
    finally:
        fcntl.flock(guard, fcntl.LOCK_UN)
        os.close(guard)


def _empty(path: Path) -> None:
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def empty_results_dir(path: Path) -> None:
    """Remove the previous run's results from *path*, unless another run in this
    checkout is live and writing there (see the module docstring)."""
    claim_results_dir(path)
