"""Proof that a DMA run went through SWIOTLB at the requested size (pure).

Why: "clean" means nothing if nothing was bounced. A virtio device that did
not negotiate ``VIRTIO_F_ACCESS_PLATFORM`` (bit 33: QEMU's
``iommu_platform=on``) does DMA on guest-physical addresses and never touches
the pool; ``swiotlb=N`` without ``force`` on a plain guest with < 4 GiB RAM
allocates nothing; a kernel may ignore or resize ``swiotlb=``. So a run is
"clean" or "pressure" only with all of:

- the kernel's own pool size (boot line ``software IO TLB: mapped [mem ...]``,
  or ``io_tlb_nslabs``) equals the request within the kernel's rounding
  (slabs up to a multiple of 128, 6.0-6.2 up to a power of two); ``auto`` is
  64 MiB for the forced control and 64 MiB..1 GiB for SEV guests;
- the pool was used: ``io_tlb_used`` above 0 in a sample taken during the
  load, or ``io_tlb_used_hiwater`` above 0, or a "buffer is full" line;
- for virtio: bit 33 set in ``/sys/bus/virtio/devices/*/features`` of the
  device on the bus under test;
- the kernel log itself was readable (dmesg's exit status checked).

Anything missing makes the outcome ``unproven``, a failure in every mode.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from pytest_sev.dma.debugfs import SwiotlbCounters
from pytest_sev.dma.kmsg import KernelReport
from pytest_sev.dma.sizes import DEFAULT_POOL_BYTES, MAX_POOL_BYTES, SLAB_BYTES, PoolSize

ACCESS_PLATFORM_BIT = 33  # VIRTIO_F_ACCESS_PLATFORM (was VIRTIO_F_IOMMU_PLATFORM)
VIRTIO_IDS = {"virtio-blk": 2, "virtio-scsi": 8}


def features_command() -> str:
    """One guest line: ``VIRTIOFEAT <dev> <device id> <feature bits>`` per virtio device."""
    return ('for d in /sys/bus/virtio/devices/*; do [ -e "$d/features" ] && '
            'echo "VIRTIOFEAT ${d##*/} $(cat $d/device) $(cat $d/features)"; done; echo VIRTIOFEAT-END')


_FEAT = re.compile(r"^VIRTIOFEAT (?P<dev>virtio\d+) (?P<id>0x[0-9a-fA-F]+|\d+) (?P<bits>[01]+)\s*$")


def parse_features(text: str) -> dict[str, tuple[int, str]] | None:
    """{virtioN: (device id, bit string)}; None when the listing did not finish.

    The sysfs ``features`` file is one character per feature bit, bit 0 first.
    """
    lines = [line.strip() for line in text.splitlines()]
    if "VIRTIOFEAT-END" not in lines:
        return None
    devices: dict[str, tuple[int, str]] = {}
    for m in filter(None, map(_FEAT.match, lines)):
        devices[m["dev"]] = (int(m["id"], 0), m["bits"])
    return devices


def access_platform(devices: dict[str, tuple[int, str]] | None, bus: str) -> bool | None:
    """Bit 33 negotiated on the device of ``bus``; None when it cannot be told."""
    if devices is None:
        return None
    want = VIRTIO_IDS.get(bus)
    bits = [b for (dev_id, b) in devices.values() if dev_id == want]
    if not bits:
        return None
    return all(len(b) > ACCESS_PLATFORM_BIT and b[ACCESS_PLATFORM_BIT] == "1" for b in bits)


def expected_pool(size: PoolSize, kind: str) -> tuple[int, int]:
    """(smallest, largest) pool in bytes the kernel may report for ``size``."""
    slabs = size.kernel_slabs  # a multiple of 128, or None for auto
    if slabs is None:
        if kind == "plain-forced":
            return DEFAULT_POOL_BYTES, DEFAULT_POOL_BYTES
        return DEFAULT_POOL_BYTES, MAX_POOL_BYTES
    pow2 = 1 << (slabs - 1).bit_length()  # the smallest power of two >= slabs
    return slabs * SLAB_BYTES, pow2 * SLAB_BYTES


@dataclass(frozen=True)
class BounceEvidence:
    requested: str
    expected_pool: tuple[int, int]
    reported_pool_bytes: int | None
    pool_source: str
    peak_used_slots: int | None
    hiwater_slots: int | None
    full_messages: int
    access_platform: bool | None
    kernel_log: str  # "read" or why not
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def proven(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        pool = "?" if self.reported_pool_bytes is None else f"{self.reported_pool_bytes >> 10} KiB"
        s = (f"pool {pool} ({self.pool_source}) for {self.requested}, peak io_tlb_used {self.peak_used_slots}, "
             f"hiwater {self.hiwater_slots}, full lines {self.full_messages}, "
             f"ACCESS_PLATFORM {self.access_platform}")
        return s if self.proven else s + "; NOT PROVEN: " + "; ".join(self.problems)

    def to_json(self) -> dict:
        d = asdict(self)
        d["proven"] = self.proven
        d["problems"] = list(self.problems)
        d["expected_pool"] = list(self.expected_pool)
        return d


def judge(size: PoolSize, kind: str, bus: str, *, kernel: KernelReport | None, kernel_log_reason: str = "",
          counters: SwiotlbCounters | None = None, peak_used: int | None = None,
          features: dict[str, tuple[int, str]] | None = None) -> BounceEvidence:
    """Collect the evidence and list what is missing (see module docstring)."""
    problems: list[str] = []
    lo, hi = expected_pool(size, kind)
    reported, source = None, "none"
    if kernel is not None and kernel.reported_pool_bytes is not None:
        reported, source = kernel.reported_pool_bytes, "kernel log"
    elif counters is not None and counters.pool_bytes is not None:
        reported, source = counters.pool_bytes, "io_tlb_nslabs"
    if kernel is None:
        problems.append(f"kernel log unreadable: {kernel_log_reason or 'no dmesg'}")
    if reported is None:
        problems.append("the kernel reported no SWIOTLB pool (no 'software IO TLB: mapped' line, no io_tlb_nslabs)")
    elif not lo <= reported <= hi:
        want = f"{lo >> 10} KiB" if lo == hi else f"{lo >> 10}-{hi >> 10} KiB"
        problems.append(f"the kernel's pool is {reported >> 10} KiB, {size.label} asks for {want}")
    hiwater = counters.used_hiwater if counters is not None else None
    full = kernel.full_count if kernel is not None else 0
    if not ((peak_used or 0) > 0 or (hiwater or 0) > 0 or full > 0):
        problems.append(f"no sign the pool was used (peak io_tlb_used {peak_used}, hiwater {hiwater}, "
                        "no 'buffer is full')")
    ap = access_platform(features, bus)
    if ap is None:
        problems.append(f"VIRTIO_F_ACCESS_PLATFORM of the {bus} device could not be read")
    elif not ap:
        problems.append(f"the {bus} device did not negotiate VIRTIO_F_ACCESS_PLATFORM (bit 33): "
                        "it bypasses the DMA API (iommu_platform=on missing)")
    return BounceEvidence(size.label, (lo, hi), reported, source, peak_used, hiwater, full, ap,
                          "read" if kernel is not None else kernel_log_reason, tuple(problems))
