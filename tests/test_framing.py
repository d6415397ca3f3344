"""Console framing on recorded console bytes: noise never corrupts a result."""

import base64
import contextlib
import hashlib
import re

import pytest

from pytest_sev.console import framing


def _framed(payload: bytes, token: str, noise_after_line: dict[int, bytes] | None = None) -> bytes:
    lines = base64.encodebytes(payload).splitlines()
    noise_after_line = noise_after_line or {}
    body = b""
    for i, line in enumerate(lines):
        body += line + b"\r\n" + noise_after_line.get(i, b"")
    return body


def test_command_line_markers_cannot_match_their_own_echo():
    token = "0123456789ab"
    line = framing.command_line("echo hi", token).encode()
    assert not re.search(framing.begin_pattern(token), line + b"\n")
    assert not re.search(framing.end_pattern(token), line)


def test_command_runs_in_subshell_with_stdin_closed():
    assert framing.command_line("exit 3", "t0") == "__sev t0 'exit 3'"
    define = framing.define_line()
    assert '__sev() { __sev_t=$1; __sev_c=$2; ( set --; eval "$__sev_c" ) >/tmp/.sev-o 2>&1 </dev/null;' in define
    assert 'eval "$__sev_c" >/tmp/.sev-o 2>&1 </dev/null' in define.split("__sevq()")[1]


def test_define_line_markers_cannot_match_their_own_echo():
    line = framing.define_line().encode()
    assert not re.search(rb"B-[0-9a-f]{12}-\d", line) and not re.search(rb"E-[0-9a-f]{12}-[0-9a-f]{32}", line)


@pytest.mark.parametrize("cmd,subshell", [
    ("true", False), ("cat /proc/cpuinfo", False), ("dmesg | grep -i sev", False), ("uname -r", False),
    ("exit 3", True), ("set -e; false", True), ("cd /tmp", True), ("X=1", True), ("f() { :; }", True),
    ("for i in 1 2; do echo $i; done", True), ("sleep 100 &", True), ("kill -9 $$", True),
    ("echo a\necho b", True), (". /tmp/x", True), ("dd if=/dev/zero of=/dev/null", True),
    ("true && echo ok", False), ("echo $((6*7))", True), ("exec sh", True), ("read x", True),
])
def test_only_commands_that_cannot_touch_the_shell_skip_the_subshell(cmd, subshell):
    assert framing.needs_subshell(cmd) is subshell
    fn = "__sev" if subshell else "__sevq"
    assert framing.command_line(cmd, "t1").startswith(fn + " t1 ")


def test_decode_drops_interleaved_kernel_lines():
    payload = b"line1\nline2\n" * 40
    block = _framed(payload, "t", {1: b"[   12.345678] virtio_blk virtio1: [vda] 2048 512-byte\r\n"})
    out = framing.decode_block(block, hashlib.md5(payload).hexdigest())
    assert out.md5_ok and out.output == payload
    assert out.dropped_lines == [b"[   12.345678] virtio_blk virtio1: [vda] 2048 512-byte"]


def test_decode_strips_ansi_escapes():
    payload = b"hello"
    block = b"\x1b[6n" + base64.b64encode(payload) + b"\x1b[0m\r\n"
    out = framing.decode_block(block, hashlib.md5(payload).hexdigest())
    assert out.md5_ok and out.output == payload


def test_kernel_message_splitting_a_base64_line_is_detected():
    payload = bytes(range(256)) * 4
    lines = base64.encodebytes(payload).splitlines()
    lines[2] = lines[2][:30] + b"[  1.0] oops" + b"\r\n" + lines[2][30:]
    block = b"\r\n".join(lines) + b"\r\n"
    out = framing.decode_block(block, hashlib.md5(payload).hexdigest())
    assert not out.md5_ok


def test_upload_lines_reassemble_long_commands():
    cmd = "echo " + "x" * 5000 + "\nexit 0"
    lines = framing.upload_lines(cmd, "tok")
    assert all(len(line) < 1000 for line in lines)
    chunks = [line.split()[1] for line in lines if line.startswith("echo ")]
    assert base64.b64decode("".join(chunks)).decode() == cmd


# -- the console's side of the wire (a socketpair, no QEMU) --------------------------

import socket  # noqa: E402
import threading  # noqa: E402

from pytest_sev.console import serial  # noqa: E402
from pytest_sev.console.serial import Console  # noqa: E402

COMMAND = re.compile(rb"^(__sevq?) ([0-9a-f]{12}) ")


class FakeShell:
    """The guest's end: records every byte typed, answers framed commands
    with *payload*, written *chunk* bytes at a time (QEMU writes the serial
    console a byte at a time), with a kernel line in the middle."""

    def __init__(self, sock: socket.socket, payload: bytes = b"", chunk: int = 1) -> None:
        self.sock, self.payload, self.chunk = sock, payload, chunk
        self.typed = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, token: bytes) -> bytes:
        if not self.payload:
            return b"Q-" + token + b"-0\r\n"
        lines = base64.encodebytes(self.payload).splitlines()
        noisy = lines[:1] + [b"[   12.345678] virtio_blk virtio1: [vda] 2048 512-byte"] + lines[1:]
        return (b"B-" + token + b"-3\r\n" + b"\r\n".join(noisy) + b"\r\nE-" + token + b"-"
                + hashlib.md5(self.payload).hexdigest().encode() + b"\r\n")

    def _serve(self) -> None:
        try:
            self._serve_lines()
        except (ConnectionResetError, BrokenPipeError):  # the console end closed mid-answer: the test is over
            return

    def _serve_lines(self) -> None:
        pending = b""
        while True:
            data = self.sock.recv(4096)
            if not data:
                return
            self.typed += data
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                m = COMMAND.match(line)
                answer = self._answer(m.group(2)) if m else b""
                for letter, value in ((b"T", b"2"), (b"S", b"42")):  # the two steps of sync
                    sync = re.search(rb"echo " + letter + rb"-([0-9a-f]{12})-", line)
                    if sync:
                        answer = letter + b"-" + sync.group(1) + b"-" + value + b"\r\n"
                for i in range(0, len(answer), self.chunk):
                    self.sock.sendall(answer[i:i + self.chunk])


@pytest.fixture
def wire(tmp_path):
    made = []

    def make(**kwargs):
        ours, theirs = socket.socketpair()
        con = Console(ours, tmp_path / "console.log", lambda exited=False: {"argv": [], "logs": {}},
                      dead_shell=[rb"(?m)^sev-guest# "], frozen=lambda: None)
        shell = FakeShell(theirs, **kwargs)
        made.append((con, shell))
        return con, shell

    yield make
    for con, shell in made:
        con.close()
        # wake the stand-in's recv (it then sees the end) before its socket is closed under it:
        # closing first made recv fail with EBADF in the thread (seen once in CI)
        with contextlib.suppress(OSError):
            shell.sock.shutdown(socket.SHUT_RDWR)
        shell.thread.join(5)
        shell.sock.close()


def _typed_lines(shell: FakeShell) -> list[bytes]:
    return [line + b"\n" for line in bytes(shell.typed).split(b"\n")[:-1]]


@pytest.mark.parametrize("cmd", ["true", "uname -r", "echo 1234567", "cat /proc/cpuinfo | head -3", "ö" * 7])
def test_typed_command_lines_fill_whole_receive_fifo_triggers(wire, cmd):
    """QEMU's 16550 interrupts on a partly filled FIFO only after a receive
    timeout: every typed command line is padded to whole triggers."""
    con, shell = wire()
    assert con.run(cmd, timeout=10) == ("", 0)
    (line,) = _typed_lines(shell)
    assert len(line) % serial.RX_TRIGGER == 0
    assert line.rstrip(b" \n").decode() == framing.command_line(cmd, line.split()[1].decode())


def test_sync_types_a_short_stty_line_first_and_the_long_rest_after_its_answer(wire):
    """The long line is typed only once the shell has turned echo off and
    the tty fast (the kernel echoes nothing of it, the line editor never
    sees it); every line fills whole receive FIFO triggers."""
    con, shell = wire()
    con.sync(10, quiet_kernel=True)
    lines = _typed_lines(shell)
    writes = [lines[0] + lines[1], lines[2]]  # the empty line goes with the stty line
    assert len(lines) == 3 and all(len(w) % serial.RX_TRIGGER == 0 for w in writes)
    assert lines[0] == b"\n"
    stty, rest = (line.rstrip(b" \n").decode() for line in lines[1:])
    assert stty.startswith(f"stty -echo {serial.FAST_BAUD}||stty -echo;echo T-")
    assert rest.startswith("PS1=''; PS2=''; { echo 1 >/proc/sys/kernel/printk; } 2>/dev/null || dmesg -n 1")
    assert framing.define_line() in rest and rest.endswith("-$((6*7))")
    con2, shell2 = wire()
    con2.sync(10)
    assert b"printk" not in shell2.typed and b"dmesg" not in shell2.typed


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_output_arriving_a_byte_at_a_time_is_framed_whole(wire, chunk):
    """Framed waits search only the fresh bytes and a short lookback: markers
    split over many tiny reads are still found, and the output is intact."""
    payload = bytes(range(256)) * 40
    con, shell = wire(payload=payload, chunk=chunk)
    out, status = con.run_bytes("cat /some/file", timeout=30)
    assert (out, status) == (payload, 3)


def test_fresh_searcher_finds_a_match_completed_by_the_last_read_only():
    compiled = [re.compile(rb"E-[0-9a-f]{4}-done")]
    searcher = serial._FreshSearcher(compiled, lookback=16)
    old = b"x" * 5000 + b"E-00aa-done" + b"y" * 5000  # searched before (not fresh): not found again
    assert searcher.search(old + b"zz", freshlen=2) == -1
    assert searcher.search(old + b"E-0", freshlen=3) == -1
    assert searcher.search(old + b"E-0" + b"0bb-done", freshlen=8) == 0
    assert searcher.match.group(0) == b"E-00bb-done"
    assert searcher.search(old, freshlen=len(old)) == 0  # a wait's first search sees everything
