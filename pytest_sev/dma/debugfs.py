"""SWIOTLB counters from debugfs (``/sys/kernel/debug/swiotlb/``).

Why: the kernel log only says when the pool ran dry; debugfs says how full it
got. ``io_tlb_used`` (5.1+) sampled during the load gives a peak we measure
ourselves on every kernel; ``io_tlb_used_hiwater`` (6.4+) is the kernel's own
peak and is exact. ``io_tlb_nslabs`` confirms the pool size the guest really
has, ``io_tlb_transient_nslabs`` (6.9+) shows dynamic pools growing.

Input is the text of :func:`dump_command` (``grep -H . FILES`` prints
``path:value`` lines); bare ``name:value`` and ``name value`` are accepted too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEBUGFS = "/sys/kernel/debug"
SWIOTLB_DIR = f"{DEBUGFS}/swiotlb"

_LINE = re.compile(r"(?:^|[\s/])(?P<name>io_tlb_\w+)\s*[:\s]\s*(?P<value>-?\d+)\s*$")


@dataclass(frozen=True)
class SwiotlbCounters:
    nslabs: int | None = None
    used: int | None = None
    used_hiwater: int | None = None  # 6.4+
    transient_nslabs: int | None = None  # 6.9+
    raw: dict[str, int] = field(default_factory=dict)

    @property
    def pool_bytes(self) -> int | None:
        return None if self.nslabs is None else self.nslabs * 2048


def dump_command() -> str:
    """Guest command: mount debugfs if needed, print every counter as ``path:value``."""
    return (
        f"grep -q ' {DEBUGFS} debugfs' /proc/mounts || mount -t debugfs none {DEBUGFS} 2>/dev/null; "
        f"grep -H . {SWIOTLB_DIR}/* 2>/dev/null"
    )


def parse_debugfs(text: str) -> SwiotlbCounters:
    """Parse ``grep -H . /sys/kernel/debug/swiotlb/*`` output.

    Unknown ``io_tlb_*`` names are kept in ``raw``; lines that are not
    counters (prompts, kernel chatter) are ignored. Only the top-level
    directory counts: restricted-DMA pools in subdirectories are skipped.
    """
    raw: dict[str, int] = {}
    for line in text.splitlines():
        line = line.strip()
        m = _LINE.search(line)
        if not m:
            continue
        path = line[: m.start("name")]
        if "swiotlb/" in path and not path.rstrip("/").endswith("swiotlb"):
            # e.g. /sys/kernel/debug/swiotlb/restricted-pool/io_tlb_used
            continue
        raw[m["name"]] = int(m["value"])
    return SwiotlbCounters(
        nslabs=raw.get("io_tlb_nslabs"),
        used=raw.get("io_tlb_used"),
        used_hiwater=raw.get("io_tlb_used_hiwater"),
        transient_nslabs=raw.get("io_tlb_transient_nslabs"),
        raw=raw,
    )
