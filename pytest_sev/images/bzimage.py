"""Read the version string a Linux bzImage carries in its setup header.

The x86 boot protocol (Documentation/x86/boot.rst) stores at offset 0x20E a
pointer (minus 0x200) to a NUL-terminated string such as
``6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP ...``; its
first word is what ``uname -r`` prints inside the guest.  This lets the
smoke test check the kernel that booted against the file that was given.
"""

from __future__ import annotations

import struct
from pathlib import Path


def kernel_version_string(data: bytes) -> str:
    if len(data) < 0x210 or data[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS setup header)")
    (ptr,) = struct.unpack_from("<H", data, 0x20E)
    start = ptr + 0x200
    end = data.index(b"\0", start)
    return data[start:end].decode(errors="replace")


def kernel_release(path: Path) -> str:
    """``uname -r`` of the kernel in *path*."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    return kernel_version_string(head).split()[0]
