"""Errors of the build package, each carrying what a person needs to act.

A failed build names the failing step, shows the tail of its log and where
the full log is, so a red nightly can be read without re-running the build.
"""

from __future__ import annotations

from pathlib import Path


class SourcesError(ValueError):
    """The sources file or a ``--components`` spec is wrong; one line says how."""


class BuildError(RuntimeError):
    """A build step failed (or a source could not be fetched)."""

    def __init__(self, component: str, step: str, *, log_tail: str = "",
                 log: Path | None = None, detail: str = "") -> None:
        self.component = component
        self.step = step
        self.log_tail = log_tail
        self.log = log
        self.detail = detail
        parts = [f"{component}: build step {step!r} failed"]
        if detail:
            parts[0] += f": {detail}"
        if log_tail:
            parts.append("--- log tail ---\n" + log_tail.rstrip() + "\n--- end of log tail ---")
        if log is not None:
            parts.append(f"full log: {log}")
        super().__init__("\n".join(parts))
