"""Console framing on recorded console bytes: noise never corrupts a result."""

import base64
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
