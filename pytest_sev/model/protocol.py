"""The protocols the layers above bind to: a guest console (:class:`ConsoleLike`)
and a running guest (:class:`GuestLike`).

Why protocols: labgrid's shell driver binds to ``ConsoleProtocol``, not to a
serial port class, so any transport works.  Here the guest, the GRUB menu
walker, the witnesses and the DMA runner bind to :class:`ConsoleLike`; the
serial console on a socketpair (:mod:`pytest_sev.console.serial`) is one
implementation, a console on a libvirt domain's pty another.  Witnesses, the
DMA runner and reports take a :class:`GuestLike`, so they work on the QEMU
launcher's guest and the libvirt one alike, and are tested with small doubles.
Why here, in layer 1: ``console/``, ``qemu/`` and the proofs all name these
types; kept below them, no folder imports upward.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

from pytest_sev.model.spec import GuestSpec


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


class QmpLike(Protocol):
    def execute(self, cmd: str, **args: Any) -> Any: ...


class GuestLike(Protocol):
    spec: GuestSpec
    argv: list[str]
    console: ConsoleLike | None
    qmp: Any  # QmpLike once started

    @property
    def logs(self) -> dict[str, Path]: ...

    @property
    def alive(self) -> bool: ...

    @property
    def responsive(self) -> bool: ...

    def run(self, cmd: str, timeout: float = ...) -> tuple[str, int]: ...

    def check(self, cmd: str, timeout: float = ...) -> str: ...

    def kernel_log(self) -> str: ...
