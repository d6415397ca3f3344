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
"""

from __future__ import annotations

import shutil
from pathlib import Path

RESULTS_SUBDIR = Path("reports") / "allure-results"


def default_results_dir(rootpath: Path, enabled: bool) -> Path | None:
    """The default results directory for *rootpath*, or None to leave it unset."""
    if not enabled or not (Path(rootpath) / "reports").is_dir():
        return None
    return Path(rootpath) / RESULTS_SUBDIR


def empty_results_dir(path: Path) -> None:
    """Remove the previous run's results (files and attachment dirs) from *path*."""
    path.mkdir(parents=True, exist_ok=True)
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
