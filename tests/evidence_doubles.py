"""A guest double that replays recorded witness answers and injects faults.

Inputs are the recorded fixtures under fixtures/recorded/guest (plain ones
captured on the development machine, SEV/SEV-ES ones reconstructed: see that
directory's README.md and provenance.json); the memory dump is synthesised
(plaintext pages with the guest's marker, or random bytes for ciphertext),
since 512 MiB dumps are not kept.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from pytest_sev.errors import GuestTimeout

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "guest"


class FakeExecuteError(Exception):
    """Shaped like qemu.qmp's ExecuteError: ``error_class`` and ``error.desc``."""

    def __init__(self, cls: str, desc: str) -> None:
        super().__init__(desc)
        self.error_class = cls
        self.error = SimpleNamespace(class_=cls, desc=desc)


def recorded(path: str) -> str:
    return (REC / path).read_text()


def qmp_reply(path: str):
    """A recorded wire reply: the return dict, or a FakeExecuteError to raise."""
    data = json.loads(recorded(path))
    if "error" in data:
        return FakeExecuteError(data["error"]["class"], data["error"]["desc"])
    return data["return"]


def edited(reply: dict, **change) -> dict:
    """A copy of a QMP return dict with fields changed (``None``: dropped); ``api_major`` names ``api-major``."""
    ret = dict(reply)
    for key, value in change.items():
        key = key.replace("_", "-")
        if value is None:
            ret.pop(key, None)
        else:
            ret[key] = value
    return ret


def plaintext_page(i: int) -> bytes:
    text = (f"line {i} of some kernel text; struct page at ffff8880{i:08x}\n" * 200).encode()
    return text[:4096].ljust(4096, b"\0")


@dataclass
class FakeQmp:
    replies: dict
    memory: str = "plain"  # plain | encrypted
    guest: ReplayGuest | None = None
    calls: list = field(default_factory=list)

    def execute(self, cmd: str, **args):
        self.calls.append(cmd)
        reply = self.replies.get(cmd)
        if isinstance(reply, BaseException):
            raise reply
        if cmd == "pmemsave":
            self._dump(args["val"], args["size"], args["filename"])
            return {}
        return reply

    def _dump(self, start: int, size: int, filename: str) -> None:
        mem = (self.guest.spec.memory_mib << 20) if self.guest else 64 << 20
        marker = (self.guest.marker or "").encode() if self.guest else b""
        with open(filename, "wb") as fh:
            for off in range(start, start + size, 4096):
                if off >= mem:
                    fh.write(b"\0" * 4096)  # past the end of RAM: nothing
                elif self.memory == "encrypted":
                    fh.write(os.urandom(4096))
                elif off == (16 << 20) and marker:
                    fh.write((marker + b"\n") * (4096 // (len(marker) + 1))
                             + b"\0" * (4096 % (len(marker) + 1)))
                else:
                    fh.write(plaintext_page(off // 4096))


class ReplayGuest:
    """Answers ``dmesg``, the SEVMSR read and the marker command from recordings."""

    def __init__(self, *, dmesg=("", 0), msr="", qmp=None, memory="plain", vcpus=2, memory_mib=64,
                 marker_ok=True, name="replay"):
        self.spec = SimpleNamespace(name=name, vcpus=vcpus, memory_mib=memory_mib)
        self.dmesg = dmesg  # (text, status) or an exception
        self.msr = msr
        self.qmp = FakeQmp(qmp or {}, memory, self)
        self.marker_ok = marker_ok
        self.marker: str | None = None
        self.commands: list[str] = []
        self.console = None
        self.alive = True

    def run(self, cmd: str, timeout: float = 60.0):
        self.commands.append(cmd)
        if cmd == "dmesg":
            if isinstance(self.dmesg, BaseException):
                raise self.dmesg
            return self.dmesg
        if "SEVMSR" in cmd:
            return self.msr, 0
        if "SEVMARK" in cmd:
            m = re.search(r'm=([0-9a-f]+)""([0-9a-f]+)', cmd)
            if self.marker_ok and m:
                self.marker = m.group(1) + m.group(2)
                return "SEVMARK ok bytes=33792\n", 0
            return "SEVMARK err=marker not written to tmpfs /run/sevmark\n", 0
        return "", 0

    def kernel_log(self) -> str:
        return self.dmesg[0] if isinstance(self.dmesg, tuple) else ""


def plain_guest(**over) -> ReplayGuest:
    """The captured plain 6.1 TCG guest (dmesg part of its serial log, its SEVMSR, its QMP)."""
    log = recorded("plain-6.1-tcg-serial.log")
    kw = dict(dmesg=(log, 0), msr=recorded("msr/guest-read-plain-tcg-2cpu.txt"),
              qmp={"query-sev": qmp_reply("qmp/plain-qemu7.2-tcg-query-sev.json"),
                   "query-sev-launch-measure": qmp_reply("qmp/plain-qemu7.2-tcg-query-sev-launch-measure.json")})
    kw.update(over)
    return ReplayGuest(**kw)


def sev_guest(kind: str, **over) -> ReplayGuest:
    """Reconstructed SEV (policy 0x1) / SEV-ES (0x5) guest answers."""
    if kind == "sev":
        kw = dict(dmesg=(recorded("sev-4.19-guest.log"), 0), msr=recorded("msr/guest-read-sev-2cpu.txt"),
                  qmp={"query-sev": qmp_reply("qmp/sev-qemu7.2-query-sev-running.json"),
                       "query-sev-launch-measure": qmp_reply("qmp/sev-es-qemu7.2-query-sev-launch-measure.json")})
    else:
        kw = dict(dmesg=(recorded("sev-es-6.1-guest.log"), 0), msr=recorded("msr/guest-read-sev-es-2cpu.txt"),
                  qmp={"query-sev": qmp_reply("qmp/sev-es-qemu7.2-query-sev-running.json"),
                       "query-sev-launch-measure": qmp_reply("qmp/sev-es-qemu7.2-query-sev-launch-measure.json")})
    kw["memory"] = "encrypted"
    kw.update(over)
    return ReplayGuest(**kw)


def timeout_error() -> GuestTimeout:
    return GuestTimeout("timed out after 60s waiting for command 'dmesg' to finish")
