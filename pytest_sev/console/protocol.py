"""What the rest of pytest-sev needs from a guest console: a Protocol.

Why a protocol: labgrid's shell driver binds to ``ConsoleProtocol``, not to a
serial port class, so any transport works.  Here the guest, the GRUB menu
walker, the witnesses and the DMA runner bind to :class:`ConsoleLike`; the
serial console on a socketpair (:mod:`.serial`) is one implementation, and a
console on a libvirt domain's pty can be another without touching them.
"""

from __future__ import annotations

import re
from typing import Protocol


class ConsoleLike(Protocol):
    """A bidirectional guest console with bounded waits and framed commands."""

    #: (command, exit status, seconds) of every framed command run so far
    transcript: list[tuple[str, int, float]]

    def send(self, data: str | bytes) -> None: ...

    def sendline(self, line: str) -> None: ...

    def expect(self, patterns: list[bytes] | bytes, timeout: float, what: str) -> int:
        """Index of the pattern seen; GuestTimeout/GuestDied naming *what* otherwise."""
        ...

    @property
    def match(self) -> re.Match[bytes]: ...

    @property
    def before(self) -> bytes: ...

    def tail(self, nbytes: int = ...) -> str:
        """The end of the console log, for error messages."""
        ...

    def fail(self, cls: type, what: str, detail: str = "") -> None:
        """Raise *cls* (a GuestError) with the console tail, argv and log paths."""
        ...

    def sync(self, timeout: float) -> None:
        """Make the shell quiet and prove it answers."""
        ...

    def run(self, cmd: str, timeout: float = ...) -> tuple[str, int]: ...

    def run_bytes(self, cmd: str, timeout: float = ...) -> tuple[bytes, int]: ...

    def close(self) -> None: ...
