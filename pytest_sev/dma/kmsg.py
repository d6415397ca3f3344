"""Guest kernel messages that matter for SWIOTLB DMA, from dmesg or console text.

Why: the outcome of a DMA run is decided from evidence, and most of the
evidence is kernel log lines whose wording changed across kernel eras
(sev-reference.md section 7). This module knows every era's wording so the
suite can run 4.x, 5.x and 6.x guests side by side. It takes raw text --
``dmesg`` output, or a serial-console log with shell prompts, OVMF chatter and
interleaved half lines -- and never assumes a line starts with a timestamp.

Everything is matched with ``re.search`` on single lines, so noise before a
message (a prompt, ``<4>``, ``kern  :warn  :``) does not hide it.

Note: ``swiotlb buffer is full`` is rate limited in the kernel (10 per 5 s
burst, then ``swiotlb_tbl_map_single: N callbacks suppressed``); the count here
is of printed lines, and :attr:`KernelReport.full_suppressed` adds the
suppressed ones when the kernel said how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A leading "[   12.345678] " (optionally "<4>" before it); stripped to find
# the device prefix of a dev_warn() line.
_TS = re.compile(r"^\s*(?:<\d+>)?\s*\[\s*\d+\.\d+\]\s?")

# 4.15+:  software IO TLB: mapped [mem 0x00000000bbfd6000-0x00000000bffd6000] (64MB)
# <=4.14: software IO TLB [mem 0xbbfd0000-0xbffd0000] (64MB) mapped at [ffff...-ffff...]
_MAPPED = re.compile(
    r"software IO TLB:? (?:mapped )?\[mem (?P<start>0x[0-9a-fA-F]+)-(?P<end>0x[0-9a-fA-F]+)\]"
    r" \((?P<mb>\d+)MB\)"
)
# 5.11+ SEV guests without swiotlb=: pool sized from memory.
_ADJUSTED = re.compile(r"SWIOTLB bounce buffer size adjusted to (?P<mb>\d+)\s*MB")
# 6.0+: pool rounded up so that every per-CPU area is whole.
_ROUNDUP = re.compile(r"SWIOTLB bounce buffer size roundup to (?P<mb>\d+)\s*MB")
# 6.0+: software IO TLB: area num 2.
_AREAS = re.compile(r"software IO TLB: area num (?P<n>\d+)")
_BOUNCE_ACTIVE = re.compile(r"Memory encryption is active and system is using DMA bounce buffers")

#: what the kernel prints when a mapping does not fit in the SWIOTLB pool (kernel/dma/swiotlb.c);
#: the DMA load's progress line counts it too (:func:`.load.progress_command`)
POOL_FULL_TEXT = "swiotlb buffer is full"

# 5.2+: "... swiotlb buffer is full (sz: 262144 bytes), total 1024 (slots), used 671 (slots)"
# older: "... swiotlb buffer is full (sz: 4096 bytes)"
_FULL = re.compile(
    re.escape(POOL_FULL_TEXT) + r" \(sz: (?P<sz>\d+) bytes\)"
    r"(?:, total (?P<total>\d+) \(slots\), used (?P<used>\d+) \(slots\))?"
)
_SUPPRESSED = re.compile(r"swiotlb_(?:tbl_map_single|map\w*): (?P<n>\d+) callbacks suppressed")
# 4.x: "DMA: Out of SW-IOMMU space for 4096 bytes at device 0000:00:05.0"
_OUT_OF_SPACE = re.compile(r"Out of SW-IOMMU space for (?P<sz>\d+) bytes")
# README FAQ 5: a panic up to ~5.15, a rate-limited warning afterwards.
_EARLY_ALLOC = re.compile(
    r"Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer"
)
_ALLOC_FAILED = re.compile(
    r"(?:software IO TLB|swiotlb)\S*:? .*(?:[Ff]ailed to allocate|Cannot allocate|Can't allocate)"
)
_PANIC = re.compile(r"Kernel panic - not syncing:?\s*(?P<msg>.*?)\s*$")
# 4.x swiotlb_full(): panics when a large mapping fails with do_panic set.
_DMA_PANIC = re.compile(r"DMA: Random memory could be DMA (?:accessed|written|read)")
_HUNG = re.compile(
    r"INFO: task (?P<task>.+?):(?P<pid>\d+) blocked for more than (?P<secs>\d+) seconds"
)
# 4.13+ blk_print_req_error / print_req_error / blk_update_request:
#   "I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2"
#   "blk_update_request: I/O error, dev vda, sector 2048"
# also other blk_status strings: "critical medium error, dev sda, sector 8" etc.
_BLK_ERR = re.compile(
    r"(?P<kind>I/O|critical target|critical medium|critical space allocation|"
    r"critical nexus|timeout|recoverable transport|protection|operation not supported|"
    r"target|nexus|space allocation)"
    r" error,? dev (?P<dev>[\w.-]+),? sector (?P<sector>\d+)"
)
_BUFFER_ERR = re.compile(r"Buffer I/O error on dev(?:ice)? (?P<dev>[\w.-]+), logical block (?P<block>\d+)")
_SCSI_FAILED = re.compile(r"\[(?P<dev>sd[a-z]+)\] (?:tag#\d+ )?FAILED Result:")


@dataclass(frozen=True)
class FullEvent:
    """One printed ``swiotlb buffer is full`` line."""

    size: int  # bytes the mapping wanted
    total: int | None  # pool slots (5.2+)
    used: int | None  # slots in use at the time (5.2+)
    device: str | None  # e.g. "virtio-pci 0000:00:04.0"


@dataclass(frozen=True)
class HungTask:
    task: str
    pid: int
    seconds: int


@dataclass(frozen=True)
class IoError:
    dev: str
    sector: int | None
    line: str


@dataclass
class KernelReport:
    """What the guest kernel said about SWIOTLB and the disk."""

    pool_bytes: int | None = None  # from the "mapped [mem a-b]" range: exact
    pool_mb: int | None = None  # the "(64MB)" figure (0 for pools < 1 MiB)
    adjusted_mb: int | None = None  # SEV auto-sizing (5.11+)
    roundup_mb: int | None = None  # 6.0+ area roundup
    areas: int | None = None  # 6.0+
    bounce_active: bool = False  # SEV guest's first bounce
    full: list[FullEvent] = field(default_factory=list)
    full_suppressed: int = 0  # "N callbacks suppressed" after full lines
    out_of_space: list[int] = field(default_factory=list)  # 4.x sizes
    early_alloc_failure: bool = False  # FAQ 5 text (panic or warning)
    alloc_failures: list[str] = field(default_factory=list)
    panics: list[str] = field(default_factory=list)  # panic messages
    hung_tasks: list[HungTask] = field(default_factory=list)
    io_errors: list[IoError] = field(default_factory=list)

    @property
    def full_count(self) -> int:
        """Printed "buffer is full" lines (4.x "Out of SW-IOMMU space" if none)."""
        return len(self.full) or len(self.out_of_space)

    @property
    def exhausted(self) -> bool:
        return bool(self.full or self.out_of_space or self.full_suppressed)

    @property
    def reported_pool_bytes(self) -> int | None:
        """Best figure for the pool the kernel really has."""
        if self.pool_bytes is not None:
            return self.pool_bytes
        for mb in (self.roundup_mb, self.adjusted_mb, self.pool_mb):
            if mb is not None:
                return mb << 20
        totals = [e.total for e in self.full if e.total]
        return totals[-1] * 2048 if totals else None

    @property
    def panicked(self) -> bool:
        return bool(self.panics)


def _strip_ts(line: str) -> str:
    return _TS.sub("", line, count=1)


def parse_kmsg(text: str) -> KernelReport:
    """Parse dmesg or console text into a :class:`KernelReport`.

    Later boot lines win over earlier ones (a console log may hold two boots;
    the suite should pass one boot's text, but the last one is the live one).
    """
    r = KernelReport()
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if "IO TLB" in line or "SWIOTLB" in line:
            if m := _MAPPED.search(line):
                r.pool_bytes = int(m["end"], 16) - int(m["start"], 16)
                r.pool_mb = int(m["mb"])
            if m := _ADJUSTED.search(line):
                r.adjusted_mb = int(m["mb"])
            if m := _ROUNDUP.search(line):
                r.roundup_mb = int(m["mb"])
            if m := _AREAS.search(line):
                r.areas = int(m["n"])
        if _BOUNCE_ACTIVE.search(line):
            r.bounce_active = True
        if m := _FULL.search(line):
            prefix = _strip_ts(line[: m.start()]).strip().rstrip(":").strip()
            r.full.append(
                FullEvent(
                    size=int(m["sz"]),
                    total=int(m["total"]) if m["total"] else None,
                    used=int(m["used"]) if m["used"] else None,
                    device=prefix or None,
                )
            )
        if m := _SUPPRESSED.search(line):
            r.full_suppressed += int(m["n"])
        if m := _OUT_OF_SPACE.search(line):
            r.out_of_space.append(int(m["sz"]))
        if _EARLY_ALLOC.search(line):
            r.early_alloc_failure = True
        elif _ALLOC_FAILED.search(line):
            r.alloc_failures.append(_strip_ts(line).strip())
        if m := _PANIC.search(line):
            r.panics.append(m["msg"] or "Kernel panic - not syncing")
        elif m := _DMA_PANIC.search(line):
            r.panics.append(m.group(0))
        if m := _HUNG.search(line):
            r.hung_tasks.append(HungTask(m["task"], int(m["pid"]), int(m["secs"])))
        if m := _BLK_ERR.search(line):
            r.io_errors.append(IoError(m["dev"], int(m["sector"]), _strip_ts(line).strip()))
        elif (m := _BUFFER_ERR.search(line)) or (m := _SCSI_FAILED.search(line)):
            r.io_errors.append(IoError(m["dev"], None, _strip_ts(line).strip()))
    return r


def io_errors_for(report: KernelReport, dev: str) -> list[IoError]:
    """I/O errors of one disk (``vda`` or ``/dev/vda``), ignoring other devices."""
    name = dev.rsplit("/", 1)[-1]
    return [e for e in report.io_errors if e.dev == name or e.dev.startswith(name)]
