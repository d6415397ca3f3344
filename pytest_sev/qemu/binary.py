"""Facts about a QEMU binary the argv depends on (its version)."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

from pytest_sev.errors import QemuNotFound


def resolve_qemu(name: str = "qemu-system-x86_64") -> str:
    path = shutil.which(name)
    if not path:
        raise QemuNotFound(f"QEMU binary {name!r} not found (install qemu-system-x86, or pass --qemu)")
    return path


def parse_version(text: str) -> tuple[int, int, int]:
    """``QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)`` -> (7, 2, 19)."""
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        raise ValueError(f"no QEMU version in {text[:80]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@functools.lru_cache(maxsize=8)
def qemu_version(binary: str) -> tuple[int, int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    return parse_version(out)
