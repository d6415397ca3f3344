"""QMP with qemu.qmp, recording a transcript: the one QMP client of pytest-sev.

Guests hand QEMU one end of a ``socketpair()`` (``-chardev socket,fd=N``), so
there is no listening socket to race for and nothing on the filesystem; the
``launch`` tool, whose QEMU a person may also reach, talks to a unix socket
path instead.  Every command and its reply (or error) is kept in the
transcript (when one is given) and logged at DEBUG, so a report can show
exactly what the harness asked QEMU and what QEMU said.

A connection that breaks or stops answering is :class:`QMPLost` (a
``GuestError``: the command, argv and log paths), never a raw asyncio or
``ExecInterruptedError``; a transcript that cannot be written any more is
reported once and the monitor goes on.  asyncio's own complaints about the
tasks of a connection torn down by Ctrl-C go to the DEBUG log, not to the
terminal after pytest's summary.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError
from qemu.qmp.legacy import QEMUMonitorProtocol

from pytest_sev.errors import QMPLost
from pytest_sev.sidelog import SideLog

__all__ = ["QMP", "ExecuteError", "QMPLost"]

log = logging.getLogger(__name__)


class QMP:
    """Synchronous QMP on a connected socket (or a unix socket path)."""

    def __init__(self, sock: socket.socket | str | Path, transcript_path: Path | None = None,
                 timeout: float = 30.0, name: str = "qemu",
                 context: Callable[[], dict[str, Any]] | None = None) -> None:
        """``context()`` returns the argv and log paths a :class:`QMPLost` carries."""
        self._mon = QEMUMonitorProtocol(str(sock) if isinstance(sock, (str, Path)) else sock)
        self._mon._aloop.set_exception_handler(self._asyncio_exception)
        self._timeout = timeout
        self.name = name
        self._context = context
        self.transcript_path = transcript_path
        self._transcript = SideLog(transcript_path, "QMP transcript", name)
        self.greeting: dict[str, Any] | None = None
        #: the last command sent, for errors that happen while waiting for its reply
        self.last_command: str | None = None
        #: why the connection counts as lost (None while it answers)
        self.lost_reason: str | None = None

    def _asyncio_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log.debug("%s: asyncio: %s %r", self.name, context.get("message"), context.get("exception"))

    @property
    def transcript_broken(self) -> str | None:
        """Why the transcript could not be written (None: it could)."""
        return self._transcript.broken

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
        self.note(entry)

    def note(self, entry: dict[str, Any]) -> None:
        """Append one JSON line to the transcript (QMP traffic, stop stages)."""
        entry.setdefault("time", round(time.time(), 3))
        line = json.dumps(entry, default=str)
        log.debug("%s: qmp %s", self.name, line)
        self._transcript.write(line + "\n")

    def execute(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Run *cmd*; return its ``return`` value, raise ExecuteError (QEMU
        refused it) or QMPLost (no answer within the timeout, or no connection)."""
        self.last_command = cmd
        if timeout is not None:
            self._mon.settimeout(timeout)
        try:
            reply = self._mon.cmd(cmd, **args)
        except ExecuteError as exc:
            self._record(cmd, args, None, f"{exc.error_class}: {exc}")
            raise
        except Exception as exc:  # socket lost or timed out: keep it in the transcript too
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._record(cmd, args, None, why)
            if cmd != "quit":  # quit is answered by QEMU going away
                self.lost_reason = f"QMP lost: no answer to {cmd!r} ({why})"
            raise self.lost(f"QMP lost: no answer to {cmd!r} ({why})") from exc
        except BaseException as exc:  # Ctrl-C while waiting: the transcript says so
            self._record(cmd, args, None, f"{type(exc).__name__} while waiting for the reply")
            self.lost_reason = f"QMP lost: {type(exc).__name__} while waiting for the reply to {cmd!r}"
            raise
        finally:
            if timeout is not None:
                self._mon.settimeout(self._timeout)
        self._record(cmd, args, reply, None)
        return reply

    def lost(self, what: str) -> QMPLost:
        ctx = self._context() if self._context is not None else {}
        detail = f"last QMP command: {self.last_command}"
        if ctx.get("exit"):
            detail += f"\n{ctx['exit']}"
        logs = dict(ctx.get("logs", {}))
        if self.transcript_path is not None:
            logs.setdefault("qmp transcript", self.transcript_path)
        return QMPLost(what, argv=ctx.get("argv", ()), logs=logs, detail=detail)

    def events(self) -> list[dict[str, Any]]:
        """Events QEMU sent so far (e.g. SHUTDOWN, GUEST_PANICKED)."""
        try:
            return list(self._mon.get_events(wait=False))
        except Exception:  # a closed monitor has no events to give
            return []

    def close(self) -> None:
        try:
            self._mon._sync(self._mon._qmp.disconnect(), 5)
        except (Exception, asyncio.CancelledError):  # already gone with QEMU: nothing to close politely
            pass
        self._transcript.close()
