"""Ask QEMU itself whether it can launch SEV guests: ``query-sev-capabilities``.

QEMU is started with ``-machine none`` (no guest, no firmware, < 1 s) and
QMP runs over one end of a ``socketpair()`` whose other end QEMU inherits:
no socket path, no listen/connect race. QEMU is started from an argv list,
bounded by a watchdog (killing QEMU closes the socket, which unblocks a
QMP call that would otherwise wait forever) and always killed afterwards.

The answer is kept as plain data (:class:`QmpAnswer`) in QMP's own reply
shape, so recorded hosts store and replay it and the error text is evidence.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QmpProbe = Callable[[str, str], "QmpAnswer"]


@dataclass(frozen=True)
class QmpAnswer:
    accel: str  # "kvm" or "tcg": what QEMU was started with
    result: dict[str, Any] | None = None  # the "return" member on success
    error_class: str = ""
    error_desc: str = ""  # QMP error description, or why QEMU gave no answer
    launched: bool = True  # False when QEMU never answered QMP

    @property
    def ok(self) -> bool:
        return self.result is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"accel": self.accel}
        if self.result is not None:
            d["return"] = self.result
        elif self.launched:
            d["error"] = {"class": self.error_class, "desc": self.error_desc}
        else:
            d["launch_error"] = self.error_desc
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QmpAnswer:
        if "return" in d:
            return cls(d["accel"], result=d["return"])
        if "error" in d:
            return cls(d["accel"], error_class=d["error"].get("class", ""),
                       error_desc=d["error"].get("desc", ""))
        return cls(d["accel"], error_desc=d.get("launch_error", ""), launched=False)


def qemu_argv(qemu: str, accel: str, fd: int) -> list[str]:
    return [
        qemu, "-machine", "none", "-accel", accel,
        "-nodefaults", "-display", "none", "-S",
        "-chardev", f"socket,id=mon,fd={fd}",
        "-mon", "chardev=mon,mode=control",
    ]


def query_sev_capabilities(qemu: str, accel: str, timeout: float = 15.0) -> QmpAnswer:
    """Start ``qemu -machine none``, run ``query-sev-capabilities``, stop QEMU."""
    # Imported here so parsing and recorded hosts work without qemu.qmp.
    from pytest_sev.errors import GuestLaunchError
    from pytest_sev.qemu.process import QemuProcess
    from pytest_sev.qemu.qmp import QMP, ExecuteError

    ours, theirs = socket.socketpair()
    with tempfile.TemporaryDirectory(prefix="sev-qmp-probe-") as scratch:
        output = Path(scratch) / "qemu-output.log"
        proc = QemuProcess(qemu_argv(qemu, accel, theirs.fileno()), name=f"qmp-probe-{accel}",
                           output=output, pass_fds=[theirs.fileno()])
        try:
            proc.start()
        except GuestLaunchError as exc:
            ours.close()
            theirs.close()
            why = getattr(exc.__cause__, "strerror", None) or exc.what
            return QmpAnswer(accel, error_desc=f"cannot start {qemu}: {why}", launched=False)
        theirs.close()  # QEMU holds it now; its exit must EOF our end
        qmp = QMP(ours, name=proc.name)
        try:
            with proc.killed_after(timeout):
                try:
                    qmp.connect(timeout)
                    return QmpAnswer(accel, result=qmp.execute("query-sev-capabilities"))
                except ExecuteError as exc:
                    return QmpAnswer(accel, error_class=exc.error_class, error_desc=str(exc))
                except Exception as exc:  # QEMU died, timed out, or spoke no QMP
                    proc.kill()
                    proc.wait(10)
                    said = proc.output_tail(4000)
                    why = said.splitlines()[-1] if said else f"{type(exc).__name__}: {exc}"
                    return QmpAnswer(accel, error_desc=f"QEMU gave no QMP answer: {why}", launched=False)
        finally:
            qmp.close()
            ours.close()
            proc.stop(term_grace=2)
