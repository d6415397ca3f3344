"""The host report: one :class:`Check` per prerequisite, plus plain facts.

Readiness is a property of the report, not of the probe: a check says which
modes need it (``needed_for``) and whether it passed, so the same report can
answer "ready for SEV?", "ready for SEV-ES?" and "ready for SEV-SNP?" and name
the reason not.

The answer has three values (:class:`Readiness`), because not knowing is not
knowing yes: *ready* only when every check the mode needs passed; *not ready*
when one of them failed (a failure is named first: it is a fact about the
host); *undetermined* when none failed but some could not be answered (a
``skip``: unreadable evidence, e.g. the SYSCFG MSR without the msr driver, a
rotated kernel log). ``info`` rows are facts, never needed by a mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pytest_sev.modes import READINESS_KINDS

Status = Literal["pass", "fail", "skip", "info"]
STATUSES: tuple[str, ...] = ("pass", "fail", "skip", "info")
MODES = READINESS_KINDS  # the readiness a report answers for: sev, sev-es, sev-snp

# needed_for shorthands. SEV-ES guests are SEV guests, and SEV-SNP guests are
# SEV-ES guests (an encrypted VMSA, ASIDs from the SEV-ES range; kvm_amd turns
# SNP on only over SEV-ES over SEV), so what SEV needs SEV-ES and SEV-SNP need
# too, and what SEV-ES needs SEV-SNP needs too.
FOR_SEV: frozenset[str] = frozenset({"sev", "sev-es", "sev-snp"})
FOR_SEV_ES: frozenset[str] = frozenset({"sev-es", "sev-snp"})
FOR_SNP: frozenset[str] = frozenset({"sev-snp"})
# Rows SEV and SEV-ES need but SNP does not: the plain-SEV ASID range (SNP
# guests take SEV-ES ASIDs) and the OVMF code/vars pair (SNP firmware is one
# -bios image, a pair answers nothing about it).
FOR_SEV_NOT_SNP: frozenset[str] = frozenset({"sev", "sev-es"})
FOR_NONE: frozenset[str] = frozenset()

UNKNOWN = "unknown"

ReadinessState = Literal["ready", "not-ready", "undetermined"]


@dataclass(frozen=True)
class Check:
    """One prerequisite: what was found (``value``) and how to fix it (``remedy``)."""

    name: str
    status: Status
    value: str
    remedy: str = ""
    needed_for: frozenset[str] = FOR_NONE

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check {self.name}: bad status {self.status!r}")
        unknown = set(self.needed_for) - set(MODES)
        if unknown:
            raise ValueError(f"check {self.name}: unknown modes {sorted(unknown)}")
        if self.status == "info" and self.needed_for:
            # an info row is never judged, so a mode cannot need it to pass
            raise ValueError(f"check {self.name}: an info row cannot be needed for {sorted(self.needed_for)}")

    def fails(self, mode: str) -> bool:
        """A check *mode* needs, and it failed."""
        return self.status == "fail" and mode in self.needed_for

    def unanswered(self, mode: str) -> bool:
        """A check *mode* needs, and the probe could not tell (a skip)."""
        return self.status == "skip" and mode in self.needed_for

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "value": self.value,
            "remedy": self.remedy,
            "needed_for": sorted(self.needed_for),
        }


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"readiness mode must be one of {', '.join(MODES)}, not {mode!r}")


def names(checks: tuple[Check, ...] | list[Check]) -> str:
    return ", ".join(c.name for c in checks)


@dataclass(frozen=True)
class Readiness:
    """A report's answer for one mode, with the checks behind it."""

    mode: str
    failed: tuple[Check, ...]  # needed checks that failed, in report order
    unanswered: tuple[Check, ...]  # needed checks the probe could not answer

    @property
    def state(self) -> ReadinessState:
        if self.failed:  # a failure is a fact about the host: it wins over not knowing
            return "not-ready"
        return "undetermined" if self.unanswered else "ready"

    @property
    def ready(self) -> bool:
        """True only when every check the mode needs passed."""
        return self.state == "ready"

    def describe(self) -> str:
        """``ready`` / ``NOT ready (first failure: X)`` / ``UNDETERMINED (could not answer: X, Y)``."""
        if self.failed:
            return f"NOT ready (first failure: {self.failed[0].name})"
        if self.unanswered:
            return f"UNDETERMINED (could not answer: {names(self.unanswered)})"
        return "ready"

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state, "failed": [c.name for c in self.failed],
                "unanswered": [c.name for c in self.unanswered]}


@dataclass
class HostReport:
    """Every check the probe made, in a fixed order (root causes first)."""

    checks: list[Check]
    facts: dict[str, str] = field(default_factory=dict)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no host check named {name!r}")

    def failures(self, mode: str) -> list[Check]:
        _check_mode(mode)
        return [c for c in self.checks if c.fails(mode)]

    def first_failure(self, mode: str) -> Check | None:
        """The first needed check that FAILED (None also when some could not be
        answered: ask :meth:`readiness` or :meth:`ready_for` whether the host is ready)."""
        failures = self.failures(mode)
        return failures[0] if failures else None

    def unanswered(self, mode: str) -> list[Check]:
        _check_mode(mode)
        return [c for c in self.checks if c.unanswered(mode)]

    def readiness(self, mode: str) -> Readiness:
        return Readiness(mode, tuple(self.failures(mode)), tuple(self.unanswered(mode)))

    def ready_for(self, mode: str) -> bool:
        """True only when every check *mode* needs passed (none failed, none unanswered)."""
        return self.readiness(mode).ready

    def format_text(self) -> str:
        """``sevctl ok`` style: one line per check, remedies indented below."""
        lines = []
        for c in self.checks:
            lines.append(f"[ {c.status.upper():<4} ] {c.name}: {c.value}")
            if c.remedy and c.status in ("fail", "skip"):
                lines.append(f"         remedy: {c.remedy}")
        for mode in MODES:
            lines.append(f"{mode}: {self.readiness(mode).describe()}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, object]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "facts": dict(self.facts),
            "ready": {mode: self.ready_for(mode) for mode in MODES},
            "readiness": {mode: self.readiness(mode).to_dict() for mode in MODES},
        }
