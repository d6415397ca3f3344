"""QMP with qemu.qmp, recording a transcript: the one QMP client of pytest-sev.

Guests hand QEMU one end of a ``socketpair()`` (``-chardev socket,fd=N``), so
there is no listening socket to race for and nothing on the filesystem; the
``launch`` tool, whose QEMU a person may also reach, talks to a unix socket
path instead.  Every command and its reply (or error) is kept in the
transcript (when one is given) and logged at DEBUG, so a report can show
exactly what the harness asked QEMU and what QEMU said.

A connection that breaks or stops answering is :class:`QMPLost` (a
``GuestError``: the command, argv and log paths), never a raw asyncio or
``ExecInterruptedError``, and it is raised without its asyncio cause: the
cause is one line of the message, not ~250 lines of event-loop frames in a
pytest report.  A transcript that cannot be written any more is reported
once and the monitor goes on.  asyncio's own complaints about the tasks of a
connection torn down by Ctrl-C, and qemu.qmp's warnings about a reply that
came after its command was given up, go to the DEBUG log, not to the
terminal after pytest's summary.

Given ``frozen`` (a guest passes :meth:`QemuProcess.frozen`), a command's
wait is cut into slices of :data:`WATCH_EVERY` seconds and QEMU's process
state is looked at between them: a stopped QEMU (SIGSTOP, a debugger) is
:class:`GuestFrozen` naming the state within about a second, not a
``QMPLost`` after the whole timeout.  The common path pays nothing for it:
a reply that comes within the first slice never looks.
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

from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestFrozen, QMPLost
from pytest_sev.sidelog import SideLog

__all__ = ["QMP", "ExecuteError", "GuestFrozen", "QMPLost"]

log = logging.getLogger(__name__)

#: seconds between two looks at QEMU's process state while a reply is awaited
WATCH_EVERY = 1.0


class _Frozen(Exception):
    """QEMU was found stopped while a reply was awaited (internal)."""


class _QuietLibraryLog(logging.Filter):
    """qemu.qmp's own warnings and errors about one connection (a reply to a
    command given up on, a writer flushed into a killed QEMU) become DEBUG
    lines of ours: the harness already raised one named error for them."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        log.debug("%s: qemu.qmp %s: %s", self._name, record.levelname.lower(), record.getMessage())
        return False


class QMP:
    """Synchronous QMP on a connected socket (or a unix socket path)."""

    def __init__(self, sock: socket.socket | str | Path, transcript_path: Path | None = None,
                 timeout: float = 30.0, name: str = "qemu",
                 context: Callable[[], dict[str, Any]] | None = None,
                 frozen: Callable[[], str | None] | None = None) -> None:
        """``context()`` returns the argv and log paths a :class:`QMPLost` carries;
        ``frozen()`` says why QEMU cannot answer (stopped), or None."""
        self._mon = QEMUMonitorProtocol(str(sock) if isinstance(sock, (str, Path)) else sock)
        self._mon._aloop.set_exception_handler(self._asyncio_exception)
        self._mon._qmp.logger.addFilter(_QuietLibraryLog(name))
        self.frozen = frozen
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
        refused it), GuestFrozen (QEMU is stopped) or QMPLost (no answer
        within the timeout, or no connection)."""
        self.last_command = cmd
        try:
            reply = self._call(cmd, args, self._timeout if timeout is None else timeout)
        except ExecuteError as exc:
            self._record(cmd, args, None, f"{exc.error_class}: {exc}")
            raise
        except _Frozen as exc:
            self._record(cmd, args, None, f"GuestFrozen: {exc}")
            self.lost_reason = f"{exc} (no answer to QMP {cmd!r})"
            raise self.lost(f"{exc}: no answer to QMP {cmd!r}", GuestFrozen) from None
        except Exception as exc:  # socket lost or timed out: keep it in the transcript too
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._record(cmd, args, None, why)
            if cmd != "quit":  # quit is answered by QEMU going away
                self.lost_reason = f"QMP lost: no answer to {cmd!r} ({why})"
            # the cause is in the message: its chain is only asyncio's frames (~250 lines)
            raise self.lost(f"QMP lost: no answer to {cmd!r} ({why})") from None
        except BaseException as exc:  # Ctrl-C while waiting: the transcript says so
            self._record(cmd, args, None, f"{type(exc).__name__} while waiting for the reply")
            self.lost_reason = f"QMP lost: {type(exc).__name__} while waiting for the reply to {cmd!r}"
            raise
        self._record(cmd, args, reply, None)
        return reply

    def _call(self, cmd: str, args: dict[str, Any], timeout: float | None) -> Any:
        """Send *cmd* and wait for its reply: in one wait without a ``frozen``
        check, else in slices with a look at QEMU's state between them."""
        if self.frozen is None:
            self._mon.settimeout(timeout)
            try:
                return self._mon.cmd(cmd, **args)
            finally:
                self._mon.settimeout(self._timeout)
        loop = self._mon._aloop
        task = loop.create_task(self._mon._qmp.execute(cmd, args))
        deadline = Deadline(timeout) if timeout is not None else None
        try:
            while True:
                wait = WATCH_EVERY if deadline is None else min(WATCH_EVERY, deadline.remaining())
                try:
                    return loop.run_until_complete(asyncio.wait_for(asyncio.shield(task), wait))
                except TimeoutError:
                    if task.done():  # the reply came as the slice ended
                        return task.result()
                    why = self.frozen()
                    if why:
                        raise _Frozen(why) from None
                    if deadline is not None and deadline.expired:
                        raise
        finally:
            self._settle(task)

    def _settle(self, task: asyncio.Task[Any]) -> None:
        """Cancel a command given up on and let the loop see it go (no "Task
        exception was never retrieved" later); never raises."""
        try:
            if not task.done():
                task.cancel()
                self._mon._aloop.run_until_complete(asyncio.wait([task], timeout=1))
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: asyncio does not complain at exit
        except BaseException as exc:  # noqa: BLE001 - a second Ctrl-C or a closed loop: nothing to settle
            log.debug("%s: QMP task not settled: %r", self.name, exc)

    def lost(self, what: str, cls: type[QMPLost] | type[GuestFrozen] = QMPLost) -> QMPLost | GuestFrozen:
        ctx = self._context() if self._context is not None else {}
        detail = f"last QMP command: {self.last_command}"
        if ctx.get("exit"):
            detail += f"\n{ctx['exit']}"
        logs = dict(ctx.get("logs", {}))
        if self.transcript_path is not None:
            logs.setdefault("qmp transcript", self.transcript_path)
        return cls(what, argv=ctx.get("argv", ()), logs=logs, detail=detail)

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
