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


#: the shell functions that run one framed command (defined once per shell by
#: :func:`define_line`): in a subshell, or (no fork) in the console shell itself
FUNCTION = "__sev"
QUICK_FUNCTION = "__sevq"
#: where a command's output goes (one at a time: a guest whose command did not
#: finish is never used again, so nothing else can be writing to it)
OUT_FILE = "/tmp/.sev-o"

#: what may change the console shell's own state (end it, move it, set options or
#: variables, define functions): such a command runs in a subshell.  Anything else
#: runs in the shell itself, which saves a fork (~20 ms under TCG) per command.
_SHELL_STATE = re.compile(
    r"\b(?:exit|exec|set|cd|pushd|popd|trap|ulimit|umask|export|unset|readonly|local|return|shift|"
    r"alias|unalias|source|eval|hash|getopts|wait|break|continue|for|while|until|read|function|"
    r"stty|shopt|enable|builtin|command|fg|bg|jobs|disown|kill|trap)\b"
    r"|(?:^|[;&|({]\s*)\.\s|[A-Za-z_][A-Za-z0-9_]*=|\(\s*\)|\$\(\(|[{}]|(?<!&)&(?!&)")


def needs_subshell(cmd: str) -> bool:
    """True unless *cmd* plainly cannot change the console shell's state."""
    return "\n" in cmd or bool(_SHELL_STATE.search(cmd))


def out_file(token: str = "") -> str:
    return OUT_FILE


def script_file(token: str) -> str:
    return f"/tmp/.sev-s-{token}"


def dump_line(token: str, tag: str = "E") -> str:
    """Shell that prints the framed dump of the output file."""
    f = OUT_FILE
    return f'base64 <{f}; echo "{tag}-{token}-$(md5sum <{f})"'


def define_line() -> str:
    """The line that defines the framing functions in the console's shell.

    ``__sev TOKEN CMD`` runs CMD in a subshell (so ``exit`` or ``set -e`` in
    it cannot end the console shell), ``__sevq TOKEN CMD`` in the shell
    itself (for commands :func:`needs_subshell` clears); both with stdin
    /dev/null (a command can never swallow the next typed line), no
    positional parameters, output to :data:`OUT_FILE`; then they print the
    begin marker with the exit status, the output base64-encoded and the end
    marker with the MD5, or, for no output at all, one ``Q-TOKEN-STATUS``
    line (no base64/md5sum fork, a few bytes on the wire).
    Typing only ``__sev TOKEN 'CMD'`` per command keeps the round trip short,
    and the markers, built by the shell from the token, never appear in what
    is typed.
    """
    f = OUT_FILE
    dump = (f'__sevd() {{ if [ -s {f} ]; then echo "B-$1-$2"; base64 <{f}; echo "E-$1-$(md5sum <{f})"; '
            f'else echo "Q-$1-$2"; fi; }}')
    sub = (f'{FUNCTION}() {{ __sev_t=$1; __sev_c=$2; ( set --; eval "$__sev_c" ) >{f} 2>&1 </dev/null; '
           f'__sevd "$__sev_t" $?; }}')
    quick = (f'{QUICK_FUNCTION}() {{ __sev_t=$1; __sev_c=$2; set --; eval "$__sev_c" >{f} 2>&1 </dev/null; '
             f'__sevd "$__sev_t" $?; }}')
    return f"{dump}; {sub}; {quick}"


def command_line(cmd: str, token: str, via_script: bool = False) -> str:
    """The single line typed at the prompt to run *cmd* framed by *token*
    (with the functions of :func:`define_line` defined in the shell)."""
    if via_script:
        return f"{FUNCTION} {token} {shlex.quote('. ' + script_file(token))}"
    fn = FUNCTION if needs_subshell(cmd) else QUICK_FUNCTION
    return f"{fn} {token} {shlex.quote(cmd)}"


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
    """``B-TOKEN-STATUS`` (output follows) or ``Q-TOKEN-STATUS`` (no output):
    group 1 is the letter, group 2 the exit status."""
    return rb"([BQ])-" + token.encode() + rb"-(\d+)\r?\n"


#: any command's begin marker, compiled once (a per-token regex costs a compile
#: per command): group 1 the letter, 2 the token, 3 the exit status
BEGIN_ANY = re.compile(rb"([BQ])-([0-9a-f]{12})-(\d+)\r?\n")


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
