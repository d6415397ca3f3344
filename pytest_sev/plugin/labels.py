"""Allure labels from where a test lives, so suites need not repeat them.

A test module ``suites/test_<suite>.py`` gets, unless it already set them:

- epic ``pytest-sev``, feature ``<suite>``, story = the test function's name
  without ``test_`` (parametrized variants share it), so Behaviors reads
  host / activation / dma / components / smoke;
- a severity per suite (:data:`SEVERITY`): what a red test in it means for
  a release;
- every test (suites or not) gets the runner name as parent suite, so the
  Suites tree of a report merged from several runners is runner -> module.

Labels are pytest marks (``allure_label``), applied at collection, so they
also work with allure-pytest's ``--allure-features`` selection. A label a
test sets itself (module ``pytestmark``, decorator) wins; only missing label
types are filled.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from allure_commons.types import LabelType
from allure_pytest.utils import ALLURE_LABEL_MARK, allure_label

from pytest_sev.reporting.runner_name import RUNNER_LABEL

SUITES_DIR = "suites"
EPIC = "pytest-sev"

#: suite -> severity. Host checks and activation are the product's promise
#: (SEV-ES is there and really on): critical. The smoke suite failing means no
#: guest boots at all and nothing else can be trusted: blocker.
SEVERITY = {
    "host": "critical",
    "activation": "critical",
    "smoke": "blocker",
    "dma": "normal",
    "components": "normal",
}
DEFAULT_SEVERITY = "normal"


def suite_of(path: Path, rootpath: Path) -> str | None:
    """``dma`` for ``<root>/suites/test_dma.py``; None outside suites/."""
    try:
        rel = Path(path).resolve().relative_to(Path(rootpath).resolve())
    except ValueError:
        return None
    if len(rel.parts) < 2 or rel.parts[0] != SUITES_DIR:
        return None
    stem = rel.stem
    return stem[len("test_"):] if stem.startswith("test_") else stem


def story_of(item: pytest.Item) -> str:
    name = getattr(item, "originalname", None) or item.name.split("[")[0]
    return name[len("test_"):] if name.startswith("test_") else name


def suite_labels(suite: str, story: str) -> list[tuple[str, str]]:
    """(label type, value) pairs a test of *suite* gets by default."""
    return [
        (LabelType.EPIC, EPIC),
        (LabelType.FEATURE, suite),
        (LabelType.STORY, story),
        (LabelType.SEVERITY, SEVERITY.get(suite, DEFAULT_SEVERITY)),
    ]


def _mark(label_type: str, value: str) -> pytest.MarkDecorator:
    return getattr(pytest.mark, ALLURE_LABEL_MARK)(value, label_type=label_type)


def apply_labels(item: pytest.Item, rootpath: Path, runner: str) -> list[tuple[str, str]]:
    """Add the missing default labels to *item*; return what was added."""
    wanted: list[tuple[str, str]] = []
    suite = suite_of(item.path, rootpath)
    if suite is not None:
        wanted.extend(suite_labels(suite, story_of(item)))
    wanted.append((LabelType.PARENT_SUITE, runner))
    wanted.append((RUNNER_LABEL, runner))  # Allure 3 environments: one per runner (fixtures/allure/allurerc.mjs)
    added = []
    for label_type, value in wanted:
        if allure_label(item, label_type):
            continue  # the test set its own
        item.add_marker(_mark(label_type, value))
        added.append((label_type, value))
    return added
