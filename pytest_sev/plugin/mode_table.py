"""Apply design.md's mode table to a test: run, skip or fail, naming the check.

The table itself is a pure function (:func:`pytest_sev.host.decide.decide`);
this is the one place that turns its answer into ``pytest.skip`` or
``pytest.fail``.  Markers (``@pytest.mark.sev_es``) and the ``sev_es_guest``
/ ``sev_guest`` fixtures both come here, before any guest boots.
"""

from __future__ import annotations

import pytest

from pytest_sev.host.decide import OFF_REASON, Decision, decide
from pytest_sev.modes import Mode
from pytest_sev.plugin.state import host_report, run_config


def enforce(decision: Decision) -> None:
    """Skip or fail (naming the host check) unless the decision is to run."""
    if decision.action == "skip":
        pytest.skip(decision.reason)
    if decision.action == "fail":
        pytest.fail(decision.reason, pytrace=False)


def decision_for(config: pytest.Config, wants: str) -> Decision:
    """The mode table's answer for a test that needs *wants* in this run."""
    cfg = run_config(config)
    if cfg.mode == Mode.OFF:  # no host probe needed to know the answer
        return Decision("skip", OFF_REASON)
    return decide(cfg.mode, host_report(config), wants)


def apply_mode_table(config: pytest.Config, wants: str) -> None:
    """Skip or fail the current test unless the run's mode and host allow *wants*."""
    enforce(decision_for(config, wants))


def apply_to_item(item: pytest.Item, wants: str) -> None:
    """For a marked test, before its fixtures: skip it, or make it fail at
    once (in its call phase, as a test failure, not a set-up error) without
    setting up any fixture, so no guest boots for a test that cannot pass."""
    decision = decision_for(item.config, wants)
    if decision.action == "skip":
        pytest.skip(decision.reason)
    if decision.action == "fail" and isinstance(item, pytest.Function):
        reason = decision.reason
        item.setup = lambda: None  # type: ignore[method-assign]

        def fail_fast() -> None:
            pytest.fail(reason, pytrace=False)

        item.runtest = fail_fast  # type: ignore[method-assign]
