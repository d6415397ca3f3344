"""The mode table of design.md, as two pure functions.

``decide`` answers for a guest test ("run it, skip it, or fail it?") and
``check_outcome`` for one row of the host suite. The rule both follow: a
mode that asks for a kind (``--sev-snp``, ``--sev-es``, ``--sev``) turns an
unready host into a FAILURE naming the check, so a nightly goes red when a
runner loses SEV-ES; ``auto`` turns it into a skip with the same reason;
``off`` skips.  What each named mode asks for (:data:`DEMANDS`): ``--sev-es``
SEV-ES and SEV; ``--sev`` SEV; ``--sev-snp`` SEV-SNP, while its SEV-ES and
SEV guests run where the host can and skip naming the check where it cannot
(an SNP runner need not keep SEV-ES working: recent firmware breaks SEV-ES
guests on SNP hosts).  A kind a mode neither demands nor offers
(:data:`OFFERS`) skips, naming the flag that asks for it.

A check that cannot be answered is not a pass: a host whose needed checks
did not fail but could not all be answered is *undetermined*, and a named
mode fails on it too, naming those checks (auto skips, naming them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pytest_sev.host.report import UNKNOWN, Check, HostReport, Readiness, names
from pytest_sev.modes import GUEST_KINDS, RUN_MODES

WANTS = GUEST_KINDS
OFF_REASON = "--sev-mode=off runs plain guests only"
#: the kinds a named mode demands: a host not ready for one of them fails the test
DEMANDS: dict[str, tuple[str, ...]] = {"sev-snp": ("sev-snp",), "sev-es": ("sev-es", "sev"), "sev": ("sev",)}
#: the kinds each mode runs where the host can (skip naming the check where it cannot)
OFFERS: dict[str, tuple[str, ...]] = {"auto": GUEST_KINDS, "sev-snp": ("sev-es", "sev")}
#: how a reason names a kind
KIND_NAMES = {"sev": "SEV", "sev-es": "SEV-ES", "sev-snp": "SEV-SNP"}


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


def describe_unanswered(check: Check) -> str:
    """``name (what was read; remedy: ...)`` for a check the probe could not answer."""
    return f"{check.name} ({check.value}; remedy: {check.remedy})" if check.remedy else f"{check.name} ({check.value})"


def why_not_ready(readiness: Readiness) -> str:
    """Why a host is not ready for a mode: the first failed check, else every
    check that could not be answered (the "ready" answer has no reason)."""
    mode = readiness.mode
    if readiness.failed:
        text = f"host not ready for {mode}: {describe_failure(readiness.failed[0])}"
        if readiness.unanswered:
            text += f"; could not answer either: {names(readiness.unanswered)}"
        return text
    return f"host readiness for {mode} undetermined: " + ", ".join(describe_unanswered(c) for c in readiness.unanswered)


def decide(mode: str, report: HostReport, wants: str) -> Decision:
    """May a test that needs ``wants`` ("sev-snp", "sev-es" or "sev") run in ``mode``?"""
    _validate(mode)
    if wants not in WANTS:
        raise ValueError(f"a test wants one of {', '.join(WANTS)}, not {wants!r}")
    if mode == "off":
        return Decision("skip", OFF_REASON)
    demanded = wants in DEMANDS.get(mode, ())
    if not demanded and wants not in OFFERS.get(mode, ()):
        return Decision("skip", f"--{mode} does not ask for {KIND_NAMES[wants]} (use --{wants})")
    readiness = report.readiness(wants)
    if readiness.ready:
        return Decision("run", f"host ready for {wants}")
    why = why_not_ready(readiness)
    if not demanded:
        return Decision("skip", why)
    return Decision("fail", f"--{mode} but {why}")


def mode_needs(mode: str) -> str | None:
    """The readiness a run mode demands of the host, if any."""
    _validate(mode)
    return mode if mode in DEMANDS else None


def _unknown(value: str) -> bool:
    v = (value or "").strip().lower()
    return not v or v.startswith(UNKNOWN) or v.startswith("n/a")


def _not_determined(check: Check) -> str:
    reason = f"{check.name} not determined: {check.value}"
    return f"{reason}; remedy: {check.remedy}" if check.remedy else reason


def check_outcome(check: Check, mode: str) -> Decision:
    """One row of suites/test_host.py: pass, or skip/fail with value and remedy.

    A row the mode needs fails when it failed AND when it could not be
    answered; a row it does not need skips, saying why."""
    needs = mode_needs(mode)
    if check.status == "pass" or (check.status == "info" and not _unknown(check.value)):
        return Decision("run", f"{check.name}: {check.value}")
    # a failure, a skip, or an info row whose value could not be read (not a pass: say so)
    failed = check.status == "fail"
    what = describe_failure(check) if failed else _not_determined(check)
    if needs is not None and needs in check.needed_for:
        return Decision("fail", f"--{mode} needs it: {what}")
    if not failed:
        return Decision("skip", what)
    needed = "/".join(sorted(check.needed_for)) or "nothing the harness runs"
    return Decision("skip", f"{what} (needed for {needed}; mode {mode} does not require it)")
