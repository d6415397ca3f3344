"""Console framing on recorded console bytes: noise never corrupts a result."""

import base64
import hashlib
import re

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
    line = framing.command_line("exit 3", "t0")
    assert "( eval 'exit 3' )" in line and "</dev/null" in line


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
