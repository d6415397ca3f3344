"""The host report: one :class:`Check` per prerequisite, plus plain facts.

Readiness is a property of the report, not of the probe: a check says which
modes need it (``needed_for``) and whether it passed, so the same report can
answer "ready for SEV?" and "ready for SEV-ES?" and name the first reason not.
A ``skip`` check (unreadable evidence, e.g. the SYSCFG MSR without the msr
driver) never makes a host "not ready": not knowing is not a failure, and the
checks that can be read still decide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pytest_sev.modes import SEV_KINDS

Status = Literal["pass", "fail", "skip", "info"]
STATUSES: tuple[str, ...] = ("pass", "fail", "skip", "info")
MODES = SEV_KINDS  # the readiness a report answers for

# needed_for shorthands: SEV-ES guests are SEV guests, so every check SEV
# needs is also needed for SEV-ES.
FOR_SEV: frozenset[str] = frozenset({"sev", "sev-es"})
FOR_SEV_ES: frozenset[str] = frozenset({"sev-es"})
FOR_NONE: frozenset[str] = frozenset()

UNKNOWN = "unknown"


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

    def fails(self, mode: str) -> bool:
        return self.status == "fail" and mode in self.needed_for

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
        failures = self.failures(mode)
        return failures[0] if failures else None

    def ready_for(self, mode: str) -> bool:
        return not self.failures(mode)

    def format_text(self) -> str:
        """``sevctl ok`` style: one line per check, remedies indented below."""
        lines = []
        for c in self.checks:
            lines.append(f"[ {c.status.upper():<4} ] {c.name}: {c.value}")
            if c.remedy and c.status in ("fail", "skip"):
                lines.append(f"         remedy: {c.remedy}")
        for mode in MODES:
            first = self.first_failure(mode)
            verdict = "ready" if first is None else f"NOT ready (first failure: {first.name})"
            lines.append(f"{mode}: {verdict}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, object]:
        return {
            "checks": [c.to_dict() for c in self.checks],
            "facts": dict(self.facts),
            "ready": {mode: self.ready_for(mode) for mode in MODES},
        }
