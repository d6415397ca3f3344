"""The guest's serial console: pexpect on our end of a socketpair.

Every byte the guest prints is appended to the console log file.  Waits are
always bounded; when one expires the caller gets a :class:`GuestTimeout`
naming what was awaited with the console tail attached.  Commands run with
the framing of :mod:`pytest_sev.console.framing`.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pexpect.fdpexpect

from pytest_sev.console import framing
from pytest_sev.errors import GuestDied, GuestProtocolError, GuestTimeout

TAIL_BYTES = 3000

log = logging.getLogger(__name__)


class _ConsoleLog:
    """Where console bytes go: the console log file, and DEBUG log lines.

    The file gets every byte as it arrives; the logger gets them only when
    DEBUG is on (decoding costs time on bulk output otherwise)."""

    def __init__(self, path: Path, name: str) -> None:
        self._file = open(path, "ab", buffering=0)
        self._name = name

    def write(self, data: bytes) -> None:
        self._file.write(data)
        if log.isEnabledFor(logging.DEBUG):
            text = framing.strip_ansi(data).replace(b"\r", b"").decode(errors="replace")
            for line in text.splitlines():
                if line.strip():
                    log.debug("%s: console: %s", self._name, line)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Console:
    """The serial console on our end of a socketpair (implements ``ConsoleLike``)."""

    def __init__(self, sock: socket.socket, log_path: Path,
                 context: Callable[..., dict[str, Any]], name: str = "guest") -> None:
        """``context(exited=False)`` returns the argv, log paths (and, once
        QEMU is gone, its exit status) that errors should carry."""
        self._sock = sock
        self.log_path = log_path
        self._log = _ConsoleLog(log_path, name)
        self._child = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=30, maxread=65536,
                                                searchwindowsize=None)
        self._child.logfile_read = self._log
        self._context = context
        self.transcript: list[tuple[str, int, float]] = []  # (command, exit status, seconds)

    # -- raw I/O -------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        self._child.send(data.encode() if isinstance(data, str) else data)

    def sendline(self, line: str) -> None:
        self.send(line + "\n")

    def tail(self, nbytes: int = TAIL_BYTES) -> str:
        """Last bytes of the console log, escapes removed, for error messages."""
        try:
            size = self.log_path.stat().st_size
            with open(self.log_path, "rb") as f:
                f.seek(max(0, size - nbytes))
                data = f.read()
        except OSError:
            return ""
        return framing.strip_ansi(data).replace(b"\r", b"").decode(errors="replace")

    def fail(self, cls: type, what: str, detail: str = "") -> None:
        """Raise *cls* (a GuestError) with the console tail, argv and log paths."""
        ctx = self._context(exited=cls is GuestDied)
        raise cls(what, console_tail=self.tail(), argv=ctx.get("argv", ()),
                  logs=ctx.get("logs", {}), detail=detail)

    def expect(self, patterns: list[bytes] | bytes, timeout: float, what: str) -> int:
        """Wait for one of *patterns* (regex bytes); fail naming *what*."""
        pats = patterns if isinstance(patterns, list) else [patterns]
        try:
            idx = self._child.expect(pats + [pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        except OSError:  # ECONNRESET: QEMU died with bytes we had not read
            idx = len(pats)
        if idx == len(pats):
            self.fail(GuestDied, f"QEMU exited while waiting for {what}",
                       self._context(exited=True).get("exit", ""))
        if idx == len(pats) + 1:
            self.fail(GuestTimeout, f"timed out after {timeout:g}s waiting for {what}")
        return idx

    @property
    def match(self) -> re.Match:
        return self._child.match

    @property
    def before(self) -> bytes:
        return self._child.before

    # -- framed commands -----------------------------------------------------
    def sync(self, timeout: float) -> None:
        """Make the shell quiet (no echo, no prompt) and prove it answers."""
        token = framing.new_token()
        self.sendline("")
        self.sendline(f"stty -echo 2>/dev/null; PS1=''; PS2=''; echo S-{token}-$((6*7))")
        self.expect(rb"S-" + token.encode() + rb"-42", timeout, "the shell to answer after boot")

    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        """Run *cmd* in the guest shell; return (output, exit status).

        Output is stdout and stderr together, decoded as UTF-8 (invalid bytes
        replaced).  A wait longer than *timeout* raises GuestTimeout.
        """
        out, status = self.run_bytes(cmd, timeout)
        return out.decode(errors="replace"), status

    def run_bytes(self, cmd: str, timeout: float = 60.0) -> tuple[bytes, int]:
        started = time.monotonic()
        token = framing.new_token()
        via_script = len(cmd) > framing.INLINE_LIMIT or "\n" in cmd
        if via_script:
            ack = framing.new_token()
            for line in framing.upload_lines(cmd, token):
                self.sendline(f"{line}; echo U-{ack}-$((1+1))")
                self.expect(rb"U-" + ack.encode() + rb"-2", 30, "the guest to store a command chunk")
        self.sendline(framing.command_line(cmd, token, via_script))
        what = f"command {cmd[:120]!r} to finish"
        self.expect(framing.begin_pattern(token), timeout, what)
        status = int(self.match.group(1))
        output = self._read_dump(token, "E", timeout, what)
        if output is None:  # a printk split a base64 line: read the file again
            self.sendline(framing.dump_line(token, "R"))
            output = self._read_dump(token, "R", 30, "the re-read of a command's output")
            if output is None:
                self.fail(GuestProtocolError, f"output of {cmd[:120]!r} failed its MD5 twice")
                raise AssertionError("unreachable: fail() raises")
        self.transcript.append((cmd, status, time.monotonic() - started))
        return output, status

    def _read_dump(self, token: str, tag: str, timeout: float, what: str) -> bytes | None:
        self.expect(framing.end_pattern(token, tag), timeout, what)
        block, md5 = self.before, self.match.group(1).decode()
        framed = framing.decode_block(block, md5)
        return framed.output if framed.md5_ok else None

    def close(self) -> None:
        try:
            self._child.close()
        except (OSError, pexpect.ExceptionPexpect):
            pass
        try:
            self._sock.close()
        except OSError:
            pass
        self._log.close()
