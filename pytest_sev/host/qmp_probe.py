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
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Callable

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
    def from_dict(cls, d: dict[str, Any]) -> "QmpAnswer":
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
    """Start ``qemu -machine none``, run ``query-sev-capabilities``, kill QEMU."""
    # Imported here so parsing and recorded hosts work without qemu.qmp.
    from qemu.qmp import ExecuteError
    from qemu.qmp.legacy import QEMUMonitorProtocol

    ours, theirs = socket.socketpair()
    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                qemu_argv(qemu, accel, theirs.fileno()),
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            ours.close()
            theirs.close()
            return QmpAnswer(accel, error_desc=f"cannot start {qemu}: {exc.strerror}", launched=False)
        theirs.close()  # QEMU holds it now; its exit must EOF our end
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        qmp = QEMUMonitorProtocol(ours)
        try:
            qmp.connect()
            qmp.settimeout(timeout)
            try:
                return QmpAnswer(accel, result=qmp.cmd("query-sev-capabilities"))
            except ExecuteError as exc:
                return QmpAnswer(accel, error_class=exc.error_class, error_desc=str(exc))
        except Exception as exc:  # QEMU died, timed out, or spoke no QMP
            proc.kill()
            proc.wait()
            output.seek(0)
            said = output.read().decode("utf-8", errors="replace").strip()
            why = said.splitlines()[-1] if said else f"{type(exc).__name__}: {exc}"
            return QmpAnswer(accel, error_desc=f"QEMU gave no QMP answer: {why}", launched=False)
        finally:
            watchdog.cancel()
            try:
                qmp.close()
            except Exception:
                pass
            ours.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
