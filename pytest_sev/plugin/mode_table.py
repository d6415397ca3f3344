"""Apply design.md's mode table to a test: run, skip or fail, naming the check.

The table itself is a pure function (:func:`pytest_sev.host.decide.decide`);
this is the one place that turns its answer into ``pytest.skip`` or a
failure.  Three paths lead here and end the same way (same action, same
reason text), so no way of asking for an SEV guest escapes the table:

- a collected item marked ``@pytest.mark.sev_snp`` / ``sev_es`` / ``sev``
  (any item, not only functions), or one requesting the ``sev_snp_guest`` /
  ``sev_es_guest`` / ``sev_guest`` fixture: decided before any fixture is set up (:func:`apply_to_item`);
- ``guest_factory`` asked for an SEV(-ES, -SNP) guest (an SEV or SNP spec,
  or ``kind="sev-es"``/``"sev-snp"``), in a fixture or in the test body: decided before the
  spec is assembled or a slot taken (:func:`guard_guest`).  A refusal there
  raises :class:`ModeTableRefusal`, which the plugin's setup and call hooks
  turn into the same call-phase failure a marked test gets.

A test that wants several kinds gets the strictest answer (fail over skip
over run), so a skip for one kind can never hide a failure for another.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pytest_sev.errors import PytestSevError
from pytest_sev.host.decide import OFF_REASON, Decision, decide
from pytest_sev.modes import GUEST_KINDS, Mode
from pytest_sev.plugin.state import host_report, run_config

#: marker name -> the readiness it asks of the host
MARKER_WANTS: dict[str, str] = {kind.replace("-", "_"): str(kind) for kind in GUEST_KINDS}
#: fixture name -> the readiness it asks of the host (decided like the marker)
FIXTURE_WANTS = {f"{marker}_guest": kind for marker, kind in MARKER_WANTS.items()}
#: a marker or fixture name -> the readiness it asks of the host
WANTS_BY_NAME = {**MARKER_WANTS, **FIXTURE_WANTS}
#: how strict each answer is: the strictest of several wins
STRICTNESS = {"run": 0, "skip": 1, "fail": 2}


class ModeTableRefusal(PytestSevError):
    """The mode table refused an SEV(-ES) guest (a ``fail`` decision) where a
    guest was asked for; the plugin reports it as the test's failure."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


def decision_for(config: pytest.Config, wants: str) -> Decision:
    """The mode table's answer for a test that needs *wants* in this run."""
    cfg = run_config(config)
    if cfg.mode == Mode.OFF:  # no host probe needed to know the answer
        return Decision("skip", OFF_REASON)
    return decide(cfg.mode, host_report(config), wants)


def strictest(decisions: Iterable[Decision]) -> Decision | None:
    """Fail over skip over run (the first of equals); None when nothing was decided."""
    return max(decisions, key=lambda d: STRICTNESS[d.action], default=None)


def guard_guest(config: pytest.Config, wants: str) -> None:
    """Before an SEV(-ES) guest is made: skip, or refuse it (the caller's test
    fails with the reason), unless the run's mode and host allow *wants*."""
    decision = decision_for(config, wants)
    if decision.action == "skip":
        pytest.skip(decision.reason)
    if decision.action == "fail":
        raise ModeTableRefusal(decision)


def wants_of(item: pytest.Item) -> list[str]:
    """The SEV kinds an item asks for: by marker (its own, its class's or its
    module's), or by requesting a guest fixture (items that are not functions
    have no fixtures)."""
    names = {mark.name for mark in item.iter_markers()} | set(getattr(item, "fixturenames", ()))
    return [kind for name, kind in WANTS_BY_NAME.items() if name in names]


def _no_setup() -> None:
    """A decided test sets up nothing: no fixture, so no guest."""


def fail_in_call_phase(item: pytest.Item, reason: str) -> None:
    """Make *item* fail in its call phase (a test failure, not a set-up error)
    without running its body or setting up any more fixtures."""
    item.setup = _no_setup  # type: ignore[method-assign]

    def fail_fast() -> None:
        pytest.fail(reason, pytrace=False)

    item.runtest = fail_fast  # type: ignore[method-assign]


def apply_to_item(item: pytest.Item) -> None:
    """Before an item's fixtures: skip it, or make it fail at once naming the
    host check, so no guest boots for a test that cannot pass."""
    decision = strictest(decision_for(item.config, wants) for wants in wants_of(item))
    if decision is None or decision.action == "run":
        return
    if decision.action == "skip":
        pytest.skip(decision.reason)
    fail_in_call_phase(item, decision.reason)
