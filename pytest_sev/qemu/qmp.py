"""QMP with qemu.qmp, recording a transcript: the one QMP client of pytest-sev.

Guests hand QEMU one end of a ``socketpair()`` (``-chardev socket,fd=N``), so
there is no listening socket to race for and nothing on the filesystem; the
``launch`` tool, whose QEMU a person may also reach, talks to a unix socket
path instead.  Every command and its reply (or error) is kept in the
transcript (when one is given) and logged at DEBUG, so a report can show
exactly what the harness asked QEMU and what QEMU said.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import IO, Any

from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

__all__ = ["QMP", "ExecuteError"]

log = logging.getLogger(__name__)


class QMP:
    """Synchronous QMP on a connected socket (or a unix socket path)."""

    def __init__(self, sock: socket.socket | str | Path, transcript_path: Path | None = None,
                 timeout: float = 30.0, name: str = "qemu") -> None:
        self._mon = QEMUMonitorProtocol(str(sock) if isinstance(sock, (str, Path)) else sock)
        self._timeout = timeout
        self.name = name
        self.transcript_path = transcript_path
        self._transcript: IO[str] | None = open(transcript_path, "a") if transcript_path else None
        self.greeting: dict[str, Any] | None = None
        #: the last command sent, for errors that happen while waiting for its reply
        self.last_command: str | None = None

    def connect(self, timeout: float = 30.0) -> dict[str, Any]:
        """Read the greeting and negotiate capabilities."""
        self._mon.settimeout(timeout)
        self.greeting = self._mon.connect(negotiate=True)
        self._mon.settimeout(self._timeout)
        self._record("<greeting>", None, self.greeting, None)
        return self.greeting or {}

    def settimeout(self, seconds: float) -> None:
        self._timeout = seconds
        self._mon.settimeout(seconds)

    def _record(self, cmd: str, args: dict[str, Any] | None, reply: Any, error: str | None) -> None:
        entry: dict[str, Any] = {"time": round(time.time(), 3), "execute": cmd}
        if args:
            entry["arguments"] = args
        entry["error" if error is not None else "return"] = error if error is not None else reply
        line = json.dumps(entry)
        log.debug("%s: qmp %s", self.name, line)
        if self._transcript is not None:
            self._transcript.write(line + "\n")
            self._transcript.flush()

    def execute(self, cmd: str, **args: Any) -> Any:
        """Run *cmd*; return its ``return`` value or raise ExecuteError."""
        self.last_command = cmd
        try:
            reply = self._mon.cmd(cmd, **args)
        except ExecuteError as exc:
            self._record(cmd, args, None, f"{exc.error_class}: {exc}")
            raise
        except Exception as exc:  # socket lost or timed out: keep it in the transcript too
            self._record(cmd, args, None, f"{type(exc).__name__}: {exc}")
            raise
        self._record(cmd, args, reply, None)
        return reply

    def events(self) -> list[dict[str, Any]]:
        """Events QEMU sent so far (e.g. SHUTDOWN, GUEST_PANICKED)."""
        try:
            return list(self._mon.get_events(wait=False))
        except Exception:  # a closed monitor has no events to give
            return []

    def close(self) -> None:
        try:
            self._mon.close()
        except Exception:  # already gone with QEMU: nothing to close politely
            pass
        if self._transcript is not None:
            self._transcript.close()
            self._transcript = None
