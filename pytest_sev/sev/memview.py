"""Host memory view witness: is a marker the guest wrote visible from the host?

Why: the other witnesses are statements (by the guest kernel, by the MSR,
by QEMU). This one tests the property SEV exists for: the host reading
guest memory (QMP ``pmemsave``) must see ciphertext. A plain guest is the
negative control: its marker must be found, otherwise the check itself is
broken.

Rule (evaluated by :func:`verdict`):

- marker found anywhere in the dump -> ``encrypted=False``;
- marker absent *and* the median Shannon entropy of sampled non-constant
  pages is high (>= :data:`HIGH_ENTROPY`, ciphertext is ~7.95 bits/byte
  over 4 KiB) -> ``encrypted=True``;
- anything else (marker absent but memory looks like plaintext, too few
  pages sampled, marker never confirmed written) -> ``None`` (unknown). An
  absent marker alone is never a pass.

The marker is ASCII hex text (``new_marker()``: 32 hex digits). The guest
command types it split in two halves (``m=abcd""ef01``) so the typed
command never contains it contiguously: every hit in the dump comes from
memory the guest itself wrote, not from console echo. It writes 2**k
copies into a file on a fresh tmpfs (RAM only: a disk write would pass
through SWIOTLB bounce buffers, which are shared and unencrypted even
under SEV, and would leak the marker for an unrelated reason).

Dumps are 512 MiB+: :func:`find_marker` streams in chunks and carries the
last ``len(marker) - 1`` bytes over so a marker straddling a chunk edge is
found exactly once.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

PAGE = 4096
HIGH_ENTROPY = 7.5
MIN_SAMPLES = 16
CHUNK = 8 << 20

MARKER_DIR = "/run/sevmark"


def new_marker(nbytes: int = 16) -> str:
    """A fresh random marker: ``2*nbytes`` lowercase hex digits."""
    return secrets.token_hex(nbytes)


def _check_marker_hex(marker_hex: str) -> None:
    if not re.fullmatch(r"[0-9a-fA-F]{16,256}", marker_hex or "") or len(marker_hex) % 2:
        raise ValueError(f"marker must be 16-256 hex digits, even length: {marker_hex!r}")


def guest_marker_command(marker_hex: str, doublings: int = 10, directory: str = MARKER_DIR) -> str:
    """busybox-ash command writing ``2**doublings`` lines of the marker into tmpfs.

    Prints ``SEVMARK ok bytes=N`` on success, ``SEVMARK err=...`` otherwise.
    The file stays (tmpfs pages stay resident: initramfs guests have no
    swap) until :func:`guest_marker_cleanup_command`.
    """
    _check_marker_hex(marker_hex)
    if not 0 <= doublings <= 16:
        raise ValueError("doublings must be 0..16")
    if not re.fullmatch(r"/[A-Za-z0-9_./-]+", directory):
        raise ValueError(f"unsafe directory {directory!r}")
    half = len(marker_hex) // 2
    a, b = marker_hex[:half], marker_hex[half:]
    f = f"{directory}/marker"
    return (
        f"mkdir -p {directory} && "
        f"{{ grep -qs ' {directory} tmpfs ' /proc/mounts || mount -t tmpfs -o size=8m,mode=0700 sevmark {directory}; }} && "
        f"grep -qs ' {directory} tmpfs ' /proc/mounts && "
        f"m={a}\"\"{b} && echo \"$m\" > {f} && i=0 && "
        f"while [ $i -lt {doublings} ]; do cat {f} {f} > {f}.t && mv {f}.t {f}; i=$((i+1)); done && "
        f"echo \"SEVMARK ok bytes=$(wc -c < {f})\" || echo \"SEVMARK err=marker not written to tmpfs {directory}\""
    )


def guest_marker_cleanup_command(directory: str = MARKER_DIR) -> str:
    """Remove the marker file and unmount the tmpfs."""
    if not re.fullmatch(r"/[A-Za-z0-9_./-]+", directory):
        raise ValueError(f"unsafe directory {directory!r}")
    return f"rm -f {directory}/marker; umount {directory} 2>/dev/null; rmdir {directory} 2>/dev/null; true"


def parse_marker_ack(text: str) -> int | None:
    """Bytes written according to ``SEVMARK ok bytes=N``, or ``None``."""
    m = re.search(r"SEVMARK ok bytes=\s*(\d+)", text)
    return int(m.group(1)) if m else None


def marker_bytes(marker_hex: str) -> bytes:
    """The bytes to search the dump for (the ASCII text the guest wrote)."""
    _check_marker_hex(marker_hex)
    return marker_hex.encode("ascii")


# --------------------------------------------------------------------------
# dump analysis (reads the dump file, nothing else)


def find_marker(dump_path: str | os.PathLike, marker: bytes, chunk: int = CHUNK,
                limit: int = 1_000_000) -> list[int]:
    """Absolute offsets of every occurrence of ``marker`` (overlaps included).

    Streams ``chunk`` bytes at a time; stops collecting after ``limit`` hits.
    """
    if not marker:
        raise ValueError("empty marker")
    if chunk < len(marker):
        raise ValueError("chunk smaller than the marker")
    offsets: list[int] = []
    keep = len(marker) - 1
    carry = b""
    base = 0  # absolute offset of carry[0]
    with open(dump_path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            buf = carry + block
            pos = buf.find(marker)
            while pos != -1:
                offsets.append(base + pos)
                if len(offsets) >= limit:
                    return offsets
                pos = buf.find(marker, pos + 1)
            cut = max(len(buf) - keep, 0)
            carry = buf[cut:]
            base += cut
    return offsets


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (0.0 for empty data)."""
    n = len(data)
    if not n:
        return 0.0
    h = 0.0
    for c in Counter(data).values():
        p = c / n
        h -= p * math.log2(p)
    return h


def page_entropy(dump_path: str | os.PathLike, offset: int, page: int = PAGE) -> float:
    """Entropy (bits/byte) of the page containing ``offset``."""
    start = offset - offset % page
    with open(dump_path, "rb", buffering=0) as fh:
        data = os.pread(fh.fileno(), page, start)
    return entropy(data)


def sample_page_entropies(dump_path: str | os.PathLike, samples: int = 256,
                          page: int = PAGE) -> list[float]:
    """Entropies of up to ``samples`` non-constant pages spread over the dump.

    Constant pages (all zero: never touched; all one byte value) say nothing
    about encryption and are skipped. Candidates are evenly spaced, four per
    wanted sample, so the walk is deterministic and cheap (a few MiB read).
    """
    size = os.path.getsize(dump_path)
    npages = size // page
    if npages == 0 or samples <= 0:
        return []
    cands = min(npages, samples * 4)
    out: list[float] = []
    with open(dump_path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        for k in range(cands):
            idx = k * npages // cands
            data = os.pread(fd, page, idx * page)
            if not data or data.count(data[0]) == len(data):
                continue
            out.append(entropy(data))
            if len(out) >= samples:
                break
    return out


@dataclass(frozen=True)
class MemViewWitness:
    """What the host sees of guest memory.

    ``found``: marker occurrences; ``entropy_at_marker``: entropy of the page
    of the first hit (``None`` when not found); ``sampled_entropy``: median
    of sampled non-constant pages (0.0 when none); ``encrypted``: see module
    rule, ``None`` = unknown.
    """

    found: int
    entropy_at_marker: float | None
    sampled_entropy: float
    encrypted: bool | None
    evidence: str
    samples: int = 0
    first_offset: int | None = None


def verdict(found_offsets: Iterable[int], entropy_at_marker: float | None,
            sampled_entropies: Iterable[float], marker_written: bool = True,
            high: float = HIGH_ENTROPY, min_samples: int = MIN_SAMPLES) -> MemViewWitness:
    """Apply the module's rule to the measurements."""
    offs = list(found_offsets)
    ents = list(sampled_entropies)
    med = statistics.median(ents) if ents else 0.0
    hi_frac = (sum(e >= high for e in ents) / len(ents)) if ents else 0.0
    stats = f"median entropy {med:.2f} bits/byte over {len(ents)} non-constant pages ({hi_frac:.0%} >= {high})"
    first = offs[0] if offs else None
    if offs:
        at = f", its page {entropy_at_marker:.2f} bits/byte" if entropy_at_marker is not None else ""
        ev = f"marker visible to the host: {len(offs)} hit(s), first at {first:#x}{at}; {stats}"
        return MemViewWitness(len(offs), entropy_at_marker, med, False, ev, len(ents), first)
    if not marker_written:
        ev = f"marker absent but the guest never confirmed writing it: unknown; {stats}"
        return MemViewWitness(0, None, med, None, ev, len(ents), None)
    if len(ents) < min_samples:
        ev = f"marker absent but only {len(ents)} non-constant pages sampled (< {min_samples}): unknown"
        return MemViewWitness(0, None, med, None, ev, len(ents), None)
    if med >= high:
        ev = f"marker absent and memory looks like ciphertext: {stats}"
        return MemViewWitness(0, None, med, True, ev, len(ents), None)
    ev = f"marker absent yet memory looks like plaintext (wrong dump, or marker not resident?): {stats}"
    return MemViewWitness(0, None, med, None, ev, len(ents), None)


def evaluate_dump(dump_path: str | os.PathLike, marker: bytes, marker_written: bool = True,
                  samples: int = 256, page: int = PAGE) -> MemViewWitness:
    """Search ``dump_path`` for ``marker`` and sample its entropy; then :func:`verdict`."""
    offs = find_marker(dump_path, marker)
    at = page_entropy(dump_path, offs[0], page) if offs else None
    ents = sample_page_entropies(dump_path, samples, page)
    return verdict(offs, at, ents, marker_written=marker_written)
