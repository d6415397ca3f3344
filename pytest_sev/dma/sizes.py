"""SWIOTLB pool sizes: parse what a user types, produce the ``swiotlb=`` argument.

Why a module of its own: the size is the one knob of the DMA matrix, it appears
in test ids, expectation-table keys, the kernel command line and the summary,
and all of those must agree on one spelling. A user can give either the
kernel's own unit (slabs, as the AMD README's ``swiotlb=262144``) or bytes
(``512M``); both normalise to a :class:`PoolSize` whose :attr:`label` is the
canonical spelling (``512M``) used everywhere else.

Facts (sev-reference.md section 7): a slab is 2 KiB (IO_TLB_SHIFT 11); the
kernel rounds the slab count up to a multiple of IO_TLB_SEGSIZE (128 slabs,
256 KiB) "to avoid a tail segment"; the default pool is 64 MiB; SEV guests
without ``swiotlb=`` size the pool themselves (6% of memory, clamped to
64 MiB..1 GiB) -- that is what ``auto`` means: no ``swiotlb=`` at all.

Invalid input raises :class:`ValueError` with a one-line message; the plugin
turns it into ``pytest.UsageError`` at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SLAB_SHIFT = 11
SLAB_BYTES = 1 << SLAB_SHIFT  # IO_TLB_SIZE, 2 KiB
SEGMENT_SLABS = 128  # IO_TLB_SEGSIZE: one mapping is at most 256 KiB
DEFAULT_POOL_BYTES = 64 << 20  # IO_TLB_DEFAULT_SIZE
# The kernel's own ceiling for a pool it sizes itself (SEV: clamp to 1 GiB),
# and more than a test guest can give away; callers may pass their own cap.
MAX_POOL_BYTES = 1 << 30

DEFAULT_MATRIX = "1M, 8M, 64M, 512M, auto"

_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE_RE = re.compile(r"^(?P<num>[0-9]+)(?:(?P<unit>[KMG])(?:I?B)?)?$", re.IGNORECASE)


@dataclass(frozen=True)
class PoolSize:
    """One pool size of the matrix. ``slabs is None`` means ``auto``.

    Sort with :func:`sort_key` (smallest first, ``auto`` last).
    """

    slabs: int | None

    @property
    def is_auto(self) -> bool:
        return self.slabs is None

    @property
    def bytes(self) -> int | None:
        """Pool size in bytes as asked for (None for auto)."""
        return None if self.slabs is None else self.slabs * SLAB_BYTES

    @property
    def kernel_slabs(self) -> int | None:
        """Slabs the kernel really allocates: rounded up to a multiple of 128.

        (6.0-6.2 kernels additionally round a non-power-of-two count up to a
        power of two when they split the pool into per-CPU areas; the boot
        line parsed by :mod:`.kmsg` is the ground truth.)
        """
        if self.slabs is None:
            return None
        return -(-self.slabs // SEGMENT_SLABS) * SEGMENT_SLABS

    @property
    def label(self) -> str:
        """Canonical spelling: ``auto``, or the largest whole unit (``512M``)."""
        if self.slabs is None:
            return "auto"
        return format_bytes(self.slabs * SLAB_BYTES)

    def cmdline(self, force: bool) -> str:
        """The guest kernel argument: ``swiotlb=N`` / ``swiotlb=N,force``.

        ``force`` is for the plain control (bounce every streaming DMA without
        SEV). SEV guests bounce anyway and get no ``force``. ``auto`` keeps
        the kernel's own size: ``swiotlb=force`` for the plain control (the
        default 64 MiB pool, every streaming DMA bounced through it), nothing
        for SEV guests (the kernel sizes the pool itself).
        """
        if self.slabs is None:
            return "swiotlb=force" if force else ""
        return f"swiotlb={self.slabs}" + (",force" if force else "")

    def __str__(self) -> str:
        return self.label


AUTO = PoolSize(None)


def format_bytes(n: int) -> str:
    """``1048576`` -> ``1M``: the largest unit that divides ``n`` exactly."""
    for unit in ("G", "M", "K"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}B"


def sort_key(size: PoolSize) -> tuple[int, int]:
    """Smallest pool first, ``auto`` last (it is 64 MiB or more in every mode)."""
    return (1, 0) if size.slabs is None else (0, size.slabs)


def parse_size(text: str, *, max_bytes: int = MAX_POOL_BYTES) -> PoolSize:
    """Parse one size: ``262144`` (slabs), ``256K``/``1M``/``1G`` (bytes) or ``auto``.

    Raises ValueError (one line) for anything that is not a positive whole
    number of 2 KiB slabs no larger than ``max_bytes``.
    """
    raw = text.strip()
    if raw.lower() == "auto":
        return AUTO
    m = _SIZE_RE.match(raw)
    if not m:
        raise ValueError(
            f"invalid SWIOTLB pool size {text!r}: give slabs (e.g. 262144), "
            f"bytes with K/M/G (e.g. 64M) or 'auto'"
        )
    num = int(m.group("num"))
    unit = m.group("unit")
    if num <= 0:
        raise ValueError(f"invalid SWIOTLB pool size {text!r}: must be greater than 0")
    if unit is None:
        slabs = num
    else:
        nbytes = num * _UNITS[unit.upper()]
        if nbytes % SLAB_BYTES:
            raise ValueError(
                f"invalid SWIOTLB pool size {text!r}: {nbytes} bytes is not a whole "
                f"number of {SLAB_BYTES // 1024} KiB slabs"
            )
        slabs = nbytes // SLAB_BYTES
    if slabs * SLAB_BYTES > max_bytes:
        raise ValueError(
            f"invalid SWIOTLB pool size {text!r}: {format_bytes(slabs * SLAB_BYTES)} "
            f"exceeds the cap of {format_bytes(max_bytes)}"
        )
    return PoolSize(slabs)


def parse_sizes(text: str, *, max_bytes: int = MAX_POOL_BYTES) -> list[PoolSize]:
    """Parse a comma and/or space separated list, keeping the user's order.

    Duplicates (``1M`` and ``512``, the same pool) are an error: they would
    give two tests the same id.
    """
    items = [t for t in re.split(r"[,\s]+", text) if t]
    if not items:
        raise ValueError("no SWIOTLB pool sizes given (e.g. '1M, 8M, 64M, auto')")
    sizes: list[PoolSize] = []
    for item in items:
        size = parse_size(item, max_bytes=max_bytes)
        if size in sizes:
            raise ValueError(f"SWIOTLB pool size {item!r} repeats {size.label}")
        sizes.append(size)
    return sizes


def default_matrix() -> list[PoolSize]:
    return parse_sizes(DEFAULT_MATRIX)
