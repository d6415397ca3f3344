"""Marker framing of guest commands on a shared serial console (pure).

The serial console carries the shell, the kernel's printk output, ANSI
escapes from line editing, and whatever the command prints, all interleaved.
A command's result must survive that, so the guest writes the command's
output to a file and prints it base64-encoded between two markers made of a
random token, followed by the exit status and an MD5 of the raw bytes:

    B-<token>-<exit status>
    <base64 lines>
    E-<token>-<md5 of the output>

Printk lines that land between the markers are not base64 and are dropped;
a printk that splits a base64 line is caught by the MD5 and the dump is
re-read.  The markers are built by the shell (``$?``, ``$(md5sum)``), so the
echo of the typed command line can never match them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import shlex
from dataclasses import dataclass

ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
B64_LINE = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")

#: Longest command typed inline; longer ones are uploaded in chunks first
#: (busybox line editing holds ~1 KiB, canonical tty input 4 KiB).
INLINE_LIMIT = 900
CHUNK = 600


def new_token() -> str:
    return secrets.token_hex(6)


def out_file(token: str) -> str:
    return f"/tmp/.sev-o-{token}"


def script_file(token: str) -> str:
    return f"/tmp/.sev-s-{token}"


def dump_line(token: str, tag: str = "E") -> str:
    """Shell that prints the framed dump of the output file."""
    f = out_file(token)
    return f'base64 <{f}; echo "{tag}-{token}-$(md5sum <{f})"'


def command_line(cmd: str, token: str, via_script: bool = False) -> str:
    """The single line typed at the prompt to run *cmd* framed by *token*.

    Earlier commands' scratch files are removed first; stdin is /dev/null so
    a command can never swallow the next typed line.
    """
    run = f". {script_file(token)}" if via_script else f"eval {shlex.quote(cmd)}"
    # a subshell, so ``exit`` or ``set -e`` in *cmd* cannot end the console shell
    return (f"rm -f /tmp/.sev-o-*; ( {run} ) >{out_file(token)} 2>&1 </dev/null; "
            f'echo "B-{token}-$?"; {dump_line(token)}')


def upload_lines(cmd: str, token: str) -> list[str]:
    """Lines that write *cmd* into the guest's script file, chunk by chunk."""
    data = base64.b64encode(cmd.encode()).decode()
    target = script_file(token)
    lines = [f"rm -f {target}.b64"]
    for i in range(0, len(data), CHUNK):
        lines.append(f"echo {data[i:i + CHUNK]} >>{target}.b64")
    lines.append(f"base64 -d {target}.b64 >{target}")
    return lines


def strip_ansi(data: bytes) -> bytes:
    return ANSI.sub(b"", data)


def begin_pattern(token: str) -> bytes:
    return rb"B-" + token.encode() + rb"-(\d+)\r?\n"


def end_pattern(token: str, tag: str = "E") -> bytes:
    return tag.encode() + rb"-" + token.encode() + rb"-([0-9a-f]{32})"


@dataclass(frozen=True)
class Framed:
    output: bytes
    md5_ok: bool
    dropped_lines: list[bytes]


def decode_block(block: bytes, md5_hex: str) -> Framed:
    """Decode the base64 block between the markers, dropping non-base64 lines."""
    kept: list[bytes] = []
    dropped: list[bytes] = []
    for raw in strip_ansi(block).replace(b"\r", b"").split(b"\n"):
        line = raw.strip()
        if not line:
            continue
        (kept if B64_LINE.match(line) else dropped).append(line)
    try:
        out = base64.b64decode(b"".join(kept), validate=True)
    except (ValueError, binascii.Error):
        return Framed(b"", False, dropped)
    return Framed(out, hashlib.md5(out).hexdigest() == md5_hex, dropped)
