"""Errors a guest raises, each carrying what a person needs to act on it.

Every failure on a guest says what was awaited, shows the tail of the serial
console, the QEMU command line and where the full logs are, so a red test in
a nightly report can be understood without re-running it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path


class GuestError(RuntimeError):
    """Base class: something a guest did (or did not do) in time."""

    def __init__(self, what: str, *, console_tail: str = "", argv: Sequence[str] = (),
                 logs: dict[str, Path] | None = None, detail: str = "") -> None:
        self.what = what
        self.console_tail = console_tail
        self.argv = list(argv)
        self.logs = dict(logs or {})
        self.detail = detail
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.what]
        if self.detail:
            parts.append(self.detail)
        if self.console_tail:
            tail = self.console_tail.rstrip()
            parts.append("--- console tail ---\n" + tail + "\n--- end of console tail ---")
        if self.argv:
            parts.append("qemu command line: " + shlex.join(self.argv))
        for name, path in self.logs.items():
            parts.append(f"{name}: {path}")
        return "\n".join(parts)


class GuestLaunchError(GuestError):
    """QEMU did not start, or exited before its monitor answered."""


class GuestTimeout(GuestError):
    """A wait on the guest expired (boot, login, a command)."""


class GuestDied(GuestError):
    """QEMU exited while the harness was waiting on the guest."""


class GuestProtocolError(GuestError):
    """The console answered, but not in the framing the harness expects."""
