"""What witnesses, the DMA runner and reports need from a running guest.

Why a protocol: they must work on any guest that answers these (the QEMU
launcher's :class:`~pytest_sev.guest.guest.Guest` today, a libvirt-launched
guest tomorrow), and be testable with a small double.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pytest_sev.console.protocol import ConsoleLike
from pytest_sev.guest.spec import GuestSpec


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
