"""The guest's serial console: pexpect on our end of a socketpair.

Every byte the guest prints is appended to the console log file (a log
that cannot be written any more is reported once and the console goes on:
the last 64 KiB stay in memory for error messages).  Waits are always
bounded; when one expires the caller gets a :class:`GuestTimeout` naming
what was awaited with the console tail attached.  Commands run with the
framing of :mod:`pytest_sev.console.framing`; while a command runs, the
console also watches for

* a kernel panic: :class:`GuestPanicked` with the panic line and the oops
  head (RIP, Call Trace), at once, not after the command's timeout;
* a fresh shell prompt instead of the end marker (the shell died and init
  started another): :class:`ShellDied`, at once.

Given ``frozen`` (a guest passes :meth:`QemuProcess.frozen`), every wait is
cut into slices of :data:`WATCH_EVERY` seconds and QEMU's process state is
looked at between them: a QEMU stopped under a wait (SIGSTOP, a debugger) is
:class:`GuestFrozen` naming the state within about a second, not a
:class:`GuestTimeout` at the end of the wait.  The slices are the read's
own timeout (no timer, no sleep): a command that answers within a second
never looks.
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
from pytest_sev.console.panic import PANIC, panic_line, trace_head
from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestDied, GuestFrozen, GuestPanicked, GuestProtocolError, GuestTimeout, ShellDied
from pytest_sev.sidelog import SideLog

TAIL_BYTES = 3000
#: bytes read at once from the console, and how far back a pattern may start:
#: a match may be up to SEARCH_WINDOW - READ_SIZE bytes long (a GRUB screen is ~2 KiB)
READ_SIZE = 4096
SEARCH_WINDOW = 16384
#: how far before the bytes just read a framed command's patterns are searched:
#: longer than any match they make (a marker, a prompt, the head of a panic line).
#: QEMU writes the console a byte at a time, so bulk output arrives in reads of
#: ~50 bytes; searching the whole window after each of them was most of the CPU a
#: 256 KiB output cost (~6800 reads x 3 patterns x 16 KiB)
FRAMED_LOOKBACK = 256
#: the guest tty's speed after sync: QEMU's 16550 raises the receive interrupt for
#: a partly filled FIFO only after four character times (4.2 ms at the kernel's
#: default 9600 baud, 0.35 ms at 115200), and the tail of every typed line waited for it
FAST_BAUD = 115200
#: the receive FIFO trigger level Linux gives a 16550A (UART_FCR_R_TRIG_10): a
#: typed line padded with spaces to a multiple of it never ends in a partly
#: filled FIFO, so it never waits for the receive timeout at all
RX_TRIGGER = 8
#: seconds between two looks at QEMU's process state during a wait
WATCH_EVERY = 1.0

log = logging.getLogger(__name__)


class _ConsoleLog:
    """Where console bytes go: the console log file, and DEBUG log lines.

    The file gets every byte as it arrives; the logger gets them only when
    DEBUG is on (decoding costs time on bulk output otherwise).  A file that
    cannot be written costs the log, never the guest (:class:`SideLog`)."""

    RING = 65536

    def __init__(self, path: Path, name: str) -> None:
        self._name = name
        self.ring = bytearray()
        self._file = SideLog(path, "console log", name, binary=True)

    @property
    def broken(self) -> str | None:
        return self._file.broken

    def write(self, data: bytes) -> None:
        ring = self.ring
        ring += data
        if len(ring) > 2 * self.RING:
            del ring[:-self.RING]
        self._file.write(data)
        if log.isEnabledFor(logging.DEBUG):
            text = framing.strip_ansi(data).replace(b"\r", b"").decode(errors="replace")
            for line in text.splitlines():
                if line.strip():
                    log.debug("%s: console: %s", self._name, line)

    def flush(self) -> None:
        pass  # unbuffered

    def close(self) -> None:
        self._file.close()


class _FreshSearcher(pexpect.expect.searcher_re):
    """pexpect's regex searcher, looking only at the bytes just read and the
    *lookback* bytes before them (pexpect's own searches its whole window
    after every read).  A match cannot be missed as long as it is shorter
    than *lookback*: it is searched for again after every read that could
    complete it.  The first search of a wait sees everything unsearched."""

    def __init__(self, patterns: list[Any], lookback: int) -> None:
        super().__init__(patterns)
        self.lookback = lookback

    def search(self, buffer: bytes, freshlen: int, searchwindowsize: int | None = None) -> int:
        start = max(0, len(buffer) - freshlen - self.lookback)
        if searchwindowsize is not None:
            start = max(start, len(buffer) - searchwindowsize)
        first, best, found = -1, -1, None
        for index, pattern in self._searches:
            match = pattern.search(buffer, start)
            if match is not None and (found is None or match.start() < first):
                first, best, found = match.start(), index, match
        if found is None:
            return -1
        self.start, self.match, self.end = first, found, found.end()
        return best


class Console:
    """The serial console on our end of a socketpair (implements ``ConsoleLike``)."""

    def __init__(self, sock: socket.socket, log_path: Path,
                 context: Callable[..., dict[str, Any]], name: str = "guest",
                 dead_shell: list[bytes] | tuple[bytes, ...] = (),
                 frozen: Callable[[], str | None] | None = None) -> None:
        """``context(exited=False)`` returns the argv, log paths (and, once
        QEMU is gone, its exit status) that errors should carry.
        ``dead_shell``: regexes of what a *fresh* shell prints (its prompt, a
        login prompt): seen while a command runs, the shell it ran in died.
        ``frozen()``: why QEMU cannot answer (stopped), or None."""
        self._sock = sock
        self.log_path = log_path
        self._log = _ConsoleLog(log_path, name)
        # Search only the last SEARCH_WINDOW bytes: each read (<= READ_SIZE) is searched
        # with enough lookback for any console pattern, and bulk output costs O(n), not
        # the O(n^2) of re-searching the whole buffer on every read (``before`` keeps it all).
        self._child = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=30, maxread=READ_SIZE,
                                                searchwindowsize=SEARCH_WINDOW)
        self._child.delayafterread = None  # no sleep after each read: a round trip is a few ms
        self._child.logfile_read = self._log
        self._context = context
        self.name = name
        self.dead_shell = list(dead_shell)
        self.frozen = frozen
        self.transcript: list[tuple[str, int, float]] = []  # (command, exit status, seconds)

    # -- raw I/O -------------------------------------------------------------
    def send(self, data: str | bytes) -> None:
        self._child.send(data.encode() if isinstance(data, str) else data)

    def sendline(self, line: str) -> None:
        self.send(line + "\n")

    def send_command_line(self, line: str) -> None:
        """Type one shell command line, padded with spaces so that it fills
        whole receive FIFO triggers (:data:`RX_TRIGGER`): the shell sees it
        at once, not a receive timeout later (~0.4 ms of a ~1.3 ms round
        trip).  Only for lines whose trailing blanks the shell ignores."""
        data = line.encode()
        self.send(data + b" " * (-(len(data) + 1) % RX_TRIGGER) + b"\n")

    @property
    def log_broken(self) -> str | None:
        """Why the console log file stopped being written (None while it is)."""
        return self._log.broken

    def tail(self, nbytes: int = TAIL_BYTES) -> str:
        """Last bytes the console printed, escapes removed, for error messages."""
        data = bytes(self._log.ring[-nbytes:])
        return framing.strip_ansi(data).replace(b"\r", b"").decode(errors="replace")

    def fail(self, cls: type, what: str, detail: str = "") -> None:
        """Raise *cls* (a GuestError) with the console tail, argv and log paths."""
        ctx = self._context(exited=issubclass(cls, GuestDied))
        raise cls(what, console_tail=self.tail(), argv=ctx.get("argv", ()),
                  logs=ctx.get("logs", {}), detail=detail)

    def expect(self, patterns: list[bytes] | bytes, timeout: float, what: str,
               lookback: int | None = None) -> int:
        """Wait for one of *patterns* (regex bytes); fail naming *what*.
        ``lookback``: search only the bytes just read and this many before
        them (every match shorter than it), not the whole window."""
        pats = patterns if isinstance(patterns, list) else [patterns]
        idx = self._expect_watched(pats + [pexpect.EOF, pexpect.TIMEOUT], timeout, what, lookback)
        if idx == len(pats):
            exit_ = self._context(exited=True).get("exit", "")
            if panic_line(self.tail(20000)):  # it panicked, then -no-reboot ended QEMU
                self._fail_panic(what, exit_)
            self.fail(GuestDied, f"QEMU exited while waiting for {what}", exit_)
        if idx == len(pats) + 1:
            self.fail(GuestTimeout, f"timed out after {timeout:g}s waiting for {what}")
        return idx

    def _expect_watched(self, pats: list[Any], timeout: float, what: str,
                        lookback: int | None = None) -> int:
        """pexpect's expect (the last pattern is TIMEOUT, the one before it
        EOF), its wait cut into WATCH_EVERY slices with a look at QEMU's state
        after each slice that saw no match (never before the first)."""
        eof, expired = len(pats) - 2, len(pats) - 1
        deadline = Deadline(timeout) if self.frozen is not None else None
        compiled = self._child.compile_pattern_list(pats)
        while True:
            wait = timeout if deadline is None else min(WATCH_EVERY, deadline.remaining())
            searcher = (pexpect.expect.searcher_re(compiled) if lookback is None
                        else _FreshSearcher(compiled, lookback))
            try:
                idx = pexpect.expect.Expecter(self._child, searcher, SEARCH_WINDOW).expect_loop(wait)
            except OSError:  # ECONNRESET: QEMU died with bytes we had not read
                return eof
            if idx != expired or deadline is None or self.frozen is None:
                return idx
            why = self.frozen()
            if why:
                self.fail(GuestFrozen, f"{why}: gave up waiting for {what}",
                          f"after {deadline.elapsed:.1f}s of a {timeout:g}s wait")
            if deadline.expired:
                return idx

    def _fail_panic(self, what: str, extra: str = "") -> None:
        """GuestPanicked: the panic line first, then the oops head."""
        try:  # the trace after a panic() call: read on until it ends (bounded)
            self._child.expect([rb"---\[ end Kernel panic[^\n]*", pexpect.EOF, pexpect.TIMEOUT],
                               timeout=3)
        except OSError:
            pass
        text = self.tail(20000)
        line = panic_line(text) or "Kernel panic"
        head = trace_head(text)
        detail = "\n".join(p for p in (("--- oops head ---\n" + head) if head else "", extra) if p)
        self.fail(GuestPanicked, f"guest kernel panicked while waiting for {what}: {line}", detail)

    def _expect_guarded(self, pattern: bytes | re.Pattern[bytes], timeout: float, what: str,
                        cmd: str) -> None:
        """Wait for *pattern* of a running command; a panic or a fresh shell
        prompt ends the wait at once with a named failure."""
        pats: list[Any] = [pattern, PANIC, *self.dead_shell]
        idx = self.expect(pats, timeout, what, lookback=FRAMED_LOOKBACK)
        if idx == 1:
            self._fail_panic(what)
        if idx >= 2:
            seen = self.match.group(0).decode(errors="replace").strip()
            self.fail(ShellDied, f"the guest shell died while waiting for {what}: a fresh shell "
                      f"answered ({seen!r}) instead of the command's end marker",
                      f"command: {cmd[:400]}")

    @property
    def match(self) -> re.Match:
        return self._child.match

    @property
    def before(self) -> bytes:
        return self._child.before

    # -- framed commands -----------------------------------------------------
    def sync(self, timeout: float, quiet_kernel: bool = False) -> None:
        """Make the shell quiet (no echo, no prompt), its tty fast, define the
        framing functions and prove it answers; *quiet_kernel*: also keep
        kernel messages off the console (console log level 1, as
        ``dmesg -n 1``; written to /proc without a fork when it can be).

        Two short steps instead of one long line typed at boot: first a
        short ``stty`` line (after an empty one, so that whatever was typed
        before cannot join it), then, once the shell has answered it, the
        long rest.  A long line typed while the tty still echoes is echoed by
        the kernel a byte at a time, at 9600 baud's receive timeouts, and
        redrawn by busybox's line editor; measured, it held the shell's first
        prompt back by ~40 ms.  After ``stty -echo`` the shell reads lines
        plainly and :data:`FAST_BAUD` lets them in without the timeouts."""
        deadline = Deadline(timeout)
        token = framing.new_token()
        self.send_command_line(f"\nstty -echo {FAST_BAUD}||stty -echo;echo T-{token}-$((1+1))")
        self.expect(rb"T-" + token.encode() + rb"-2", deadline.remaining(floor=1.0),
                    "the shell to answer after boot")
        quiet = "{ echo 1 >/proc/sys/kernel/printk; } 2>/dev/null || dmesg -n 1 2>/dev/null; " if quiet_kernel else ""
        self.send_command_line(f"PS1=''; PS2=''; {quiet}{framing.define_line()}; echo S-{token}-$((6*7))")
        self.expect(rb"S-" + token.encode() + rb"-42", deadline.remaining(floor=1.0),
                    "the shell to define the framing after boot")

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
                self.send_command_line(f"{line}; echo U-{ack}-$((1+1))")
                self.expect(rb"U-" + ack.encode() + rb"-2", 30, "the guest to store a command chunk")
        self.send_command_line(framing.command_line(cmd, token, via_script))
        what = f"command {cmd[:120]!r} to finish"
        deadline = Deadline(timeout)
        self._expect_guarded(framing.BEGIN_ANY, timeout, what, cmd)
        while self.match.group(2) != token.encode():  # an earlier command's marker: not ours
            if deadline.expired:
                self.fail(GuestTimeout, f"timed out after {timeout:g}s waiting for {what}")
            self._expect_guarded(framing.BEGIN_ANY, deadline.remaining(), what, cmd)
        status = int(self.match.group(3))
        if self.match.group(1) == b"Q":  # no output at all
            self.transcript.append((cmd, status, time.monotonic() - started))
            return b"", status
        output = self._read_dump(token, "E", timeout, what, cmd)
        if output is None:  # a printk split a base64 line: read the file again
            self.send_command_line(framing.dump_line(token, "R"))
            output = self._read_dump(token, "R", 30, "the re-read of a command's output", cmd)
            if output is None:
                self.fail(GuestProtocolError, f"output of {cmd[:120]!r} failed its MD5 twice")
                raise AssertionError("unreachable: fail() raises")
        self.transcript.append((cmd, status, time.monotonic() - started))
        return output, status

    def _read_dump(self, token: str, tag: str, timeout: float, what: str, cmd: str) -> bytes | None:
        self._expect_guarded(framing.end_pattern(token, tag), timeout, what, cmd)
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
