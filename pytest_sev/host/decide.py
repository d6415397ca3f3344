"""The mode table of design.md, as two pure functions.

``decide`` answers for a guest test ("run it, skip it, or fail it?") and
``check_outcome`` for one row of the host suite. The rule both follow: a
mode that asks for SEV(-ES) (``--sev-es``, ``--sev``) turns an unready host
into a FAILURE naming the check, so a nightly goes red when a runner loses
SEV-ES; ``auto`` turns it into a skip with the same reason; ``off`` skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pytest_sev.host.report import UNKNOWN, Check, HostReport
from pytest_sev.modes import RUN_MODES, SEV_KINDS

WANTS = SEV_KINDS
OFF_REASON = "--sev-mode=off runs plain guests only"


@dataclass(frozen=True)
class Decision:
    action: Literal["run", "skip", "fail"]
    reason: str


def _validate(mode: str) -> None:
    if mode not in RUN_MODES:
        raise ValueError(f"sev mode must be one of {', '.join(RUN_MODES)}, not {mode!r}")


def describe_failure(check: Check) -> str:
    text = f"host check {check.name} failed: {check.value}"
    return f"{text}; remedy: {check.remedy}" if check.remedy else text


def decide(mode: str, report: HostReport, wants: str) -> Decision:
    """May a test that needs ``wants`` ("sev-es" or "sev") run in ``mode``?"""
    _validate(mode)
    if wants not in WANTS:
        raise ValueError(f"a test wants one of {', '.join(WANTS)}, not {wants!r}")
    if mode == "off":
        return Decision("skip", OFF_REASON)
    if mode == "sev" and wants == "sev-es":
        return Decision("skip", "--sev does not ask for SEV-ES (use --sev-es)")
    first = report.first_failure(wants)
    if first is None:
        return Decision("run", f"host ready for {wants}")
    if mode == "auto":
        return Decision("skip", f"host not ready for {wants}: {describe_failure(first)}")
    return Decision("fail", f"--{mode} but host not ready for {wants}: {describe_failure(first)}")


def mode_needs(mode: str) -> str | None:
    """The readiness a run mode demands of the host, if any."""
    _validate(mode)
    return mode if mode in SEV_KINDS else None


def _unknown(value: str) -> bool:
    v = (value or "").strip().lower()
    return not v or v.startswith(UNKNOWN) or v.startswith("n/a")


def check_outcome(check: Check, mode: str) -> Decision:
    """One row of suites/test_host.py: pass, or skip/fail with value and remedy."""
    needs = mode_needs(mode)
    if check.status == "info" and _unknown(check.value):
        # an info row whose value could not be read is not a pass: say so
        return Decision("skip", f"{check.name} not determined: {check.value}")
    if check.status in ("pass", "info"):
        return Decision("run", f"{check.name}: {check.value}")
    if check.status == "skip":
        reason = f"{check.name} not determined: {check.value}"
        return Decision("skip", f"{reason}; remedy: {check.remedy}" if check.remedy else reason)
    if needs is not None and needs in check.needed_for:
        return Decision("fail", f"--{mode} needs it: {describe_failure(check)}")
    needed = "/".join(sorted(check.needed_for)) or "nothing the harness runs"
    return Decision("skip", f"{describe_failure(check)} (needed for {needed}; mode {mode} does not require it)")
