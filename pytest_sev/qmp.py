"""QMP over a socketpair with qemu.qmp, recording a transcript.

QEMU gets one end of a ``socketpair()`` (``-chardev socket,fd=N``), so there
is no listening socket to race for and nothing on the filesystem.  Every
command and its reply (or error) is kept, so a report can show exactly what
the harness asked QEMU and what QEMU said.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

__all__ = ["QMP", "ExecuteError"]


class QMP:
    def __init__(self, sock: socket.socket, transcript_path: Path, timeout: float = 30.0) -> None:
        self._mon = QEMUMonitorProtocol(sock)
        self._timeout = timeout
        self.transcript_path = transcript_path
        self._transcript = open(transcript_path, "a")
        self.greeting: dict | None = None

    def connect(self, timeout: float = 30.0) -> dict:
        """Read the greeting and negotiate capabilities."""
        self._mon.settimeout(timeout)
        self.greeting = self._mon.connect(negotiate=True)
        self._mon.settimeout(self._timeout)
        self._record("<greeting>", None, self.greeting, None)
        return self.greeting or {}

    def _record(self, cmd: str, args: dict | None, reply: Any, error: str | None) -> None:
        entry = {"time": round(time.time(), 3), "execute": cmd}
        if args:
            entry["arguments"] = args
        entry["error" if error is not None else "return"] = error if error is not None else reply
        self._transcript.write(json.dumps(entry) + "\n")
        self._transcript.flush()

    def execute(self, cmd: str, **args: Any) -> Any:
        """Run *cmd*; return its ``return`` value or raise ExecuteError."""
        try:
            reply = self._mon.cmd(cmd, **args)
        except ExecuteError as exc:
            self._record(cmd, args, None, f"{exc.error_class}: {exc}")
            raise
        self._record(cmd, args, reply, None)
        return reply

    def events(self) -> list[dict]:
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
        self._transcript.close()
