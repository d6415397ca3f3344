"""What each pool size should do, and the verdict on what it did.

Why a table plus rules: the small-pool behaviour depends on the bus, the
kernel and the load, so it is data (``fixtures/dma_expectations.toml``) that
is updated as runs are measured; but some things must hold everywhere and are
code, not data: never corruption or panic, and pools >= 64 MiB (and ``auto``)
clean. A table row that contradicts a rule is rejected when the file loads.

Rows are ``measured`` (a difference fails) or ``unmeasured`` (a difference is
reported with both values, and the test does not fail); the suite calls
:meth:`Expectations.check` and fails only when ``verdict.fails``.

SEV, SEV-ES and SEV-SNP rows are always enforced. Their expected outcome is,
in order: the runner's recorded baseline (``--dma-baseline FILE``, written by
an earlier run with ``--dma-record-baseline FILE``, see :mod:`.baseline`), an
explicit ``[sev.*]``/``[sev-es.*]``/``[sev-snp.*]`` row of the table, else the
plain-forced row (same pool, same bouncing). An SEV-SNP guest bounces its
virtio DMA exactly as an SEV-ES guest does: its memory is private (encrypted,
and RMP-validated), so every streaming DMA is copied through the SWIOTLB pool
in shared memory, the pool is sized by the same rule (6% of memory clamped to
64 MiB..1 GiB without ``swiotlb=``), and virtio needs ``iommu_platform=on``
(sev-reference.md 7 and 9); nothing in the DMA path is SNP's own, so its rows
follow the same defaults. ``unproven`` (no proof that the pool was used,
:mod:`.bounce`, or that the data was verified) and ``hung`` (a load that did
not finish without SWIOTLB evidence, or a guest that stopped answering,
:mod:`.classify`) are never acceptable, like corruption and panic. A guest
whose QEMU died has no outcome at all: the run raises ``GuestDied``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.dma.classify import OUTCOMES
from pytest_sev.dma.sizes import PoolSize, parse_size

#: the kinds of guest a DMA row is measured on (not run modes: see pytest_sev.modes)
ROW_KINDS = ("plain-forced", "sev", "sev-es", "sev-snp")
BUSES = ("virtio-blk", "virtio-scsi")
STATUSES = ("measured", "unmeasured")
#: failures in every mode: no table row, accept list or baseline can expect them
NEVER = ("unproven", "hung", "corruption", "panic")
#: the confidential kinds: always enforced, defaulting to the plain-forced row
SEV_ROW_KINDS = ("sev", "sev-es", "sev-snp")
CLEAN_FROM_BYTES = 64 << 20

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "fixtures" / "dma_expectations.toml"


@dataclass(frozen=True)
class Row:
    mode: str
    bus: str
    size: PoolSize
    outcome: str
    status: str
    accept: tuple[str, ...] = ()
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.status == "measured"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    enforced: bool  # a not-ok verdict fails the test only when enforced
    expected: str | None
    got: str
    message: str

    @property
    def fails(self) -> bool:
        return not self.ok and self.enforced


def must_be_clean(size: PoolSize) -> bool:
    """The rule: ``auto`` and pools of 64 MiB or more must be clean."""
    return size.is_auto or (size.bytes or 0) >= CLEAN_FROM_BYTES


class Expectations:
    def __init__(self, rows: list[Row], baseline: dict[tuple[str, str, str], Row] | None = None):
        self.rows = {(r.mode, r.bus, r.size.label): r for r in rows}
        self.baseline = dict(baseline or {})

    def with_baseline(self, baseline: dict[tuple[str, str, str], Row]) -> Expectations:
        return Expectations(list(self.rows.values()), baseline)

    def row(self, mode: str, bus: str, size: PoolSize) -> Row | None:
        key = (mode, bus, size.label)
        if mode in SEV_ROW_KINDS:
            if key in self.baseline:
                return self.baseline[key]
            if key in self.rows:
                return self.rows[key]
            src = self.rows.get(("plain-forced", bus, size.label))
            if src is None:
                return None
            return Row(mode, bus, size, src.outcome, src.status, src.accept,
                       f"as plain-forced ({src.status} there): {src.note}")
        return self.rows.get(key)

    @staticmethod
    def enforced(mode: str, row: Row) -> bool:
        return mode in SEV_ROW_KINDS or row.measured

    def check(self, mode: str, bus: str, size: PoolSize, outcome: str) -> Verdict:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        where = f"pool {size.label} on {bus} ({mode})"
        row = self.row(mode, bus, size)
        expected = row.outcome if row else None
        if outcome in NEVER:
            return Verdict(False, True, expected, outcome, f"{where}: {outcome} is never acceptable (expected {expected or 'clean'})")
        if must_be_clean(size) and outcome != "clean":
            return Verdict(False, True, "clean", outcome, f"{where}: expected clean (pools >= 64M and auto must be clean), got {outcome}")
        if row is None:
            return Verdict(False, False, None, outcome, f"{where}: no expectation in the table, got {outcome}")
        enforced = self.enforced(mode, row)
        source = row.status if mode not in SEV_ROW_KINDS else row.note.split(":")[0] or row.status
        if outcome == row.outcome or outcome in row.accept:
            return Verdict(True, enforced, row.outcome, outcome, f"{where}: {outcome} as expected ({source})")
        return Verdict(
            False, enforced, row.outcome, outcome,
            f"{where}: expected {row.outcome}, got {outcome} ({source} row"
            + ("" if enforced else ", reported only") + ")",
        )


def parse_expectations(data: dict) -> Expectations:
    """Validate a parsed TOML document; ValueError naming the bad entry."""
    if data.get("schema") != 1:
        raise ValueError(f"dma expectations: unsupported schema {data.get('schema')!r} (want 1)")
    rows: list[Row] = []
    for mode, buses in data.items():
        if mode == "schema":
            continue
        if mode not in ROW_KINDS:
            raise ValueError(f"dma expectations: unknown mode {mode!r} (known: {', '.join(ROW_KINDS)})")
        for bus, sizes in buses.items():
            if bus not in BUSES:
                raise ValueError(f"dma expectations: unknown bus {mode}.{bus} (known: {', '.join(BUSES)})")
            for key, spec in sizes.items():
                where = f"{mode}.{bus}.{key!r}"
                size = parse_size(key)
                if size.label != key:
                    raise ValueError(f"dma expectations: {where}: write the size as {size.label!r}")
                outcome = spec.get("outcome")
                status = spec.get("status")
                accept = tuple(spec.get("accept", ()))
                for o in (outcome, *accept):
                    if o not in OUTCOMES:
                        raise ValueError(f"dma expectations: {where}: unknown outcome {o!r}")
                    if o in NEVER:
                        raise ValueError(f"dma expectations: {where}: {o} can never be expected")
                if status not in STATUSES:
                    raise ValueError(f"dma expectations: {where}: status must be one of {STATUSES}, got {status!r}")
                if must_be_clean(size) and (outcome != "clean" or accept):
                    raise ValueError(f"dma expectations: {where}: pools >= 64M and auto must be clean")
                rows.append(Row(mode, bus, size, outcome, status, accept, spec.get("note", "")))
    return Expectations(rows)


def load_expectations(path: str | Path = DEFAULT_PATH) -> Expectations:
    with open(path, "rb") as f:
        return parse_expectations(tomllib.load(f))
