"""A runner's own DMA baseline: record SEV/SEV-ES outcomes, compare later runs.

Why: the SEV and SEV-ES rows default to the outcomes measured on the forced
plain control, which is the best guess until an EPYC runner has run them.
``--dma-record-baseline FILE`` writes what this run saw (one entry per kind,
bus and pool size, with the runner and the time); a later run given
``--dma-baseline FILE`` expects exactly those outcomes, and a difference fails
with both values. Only outcomes that are acceptable anywhere are recorded:
corruption, panic, hung and unproven are failures, never a baseline (and a
guest whose QEMU died raises ``GuestDied`` before anything is recorded).

File (JSON)::

    {"schema": 1, "rows": {"sev-es/virtio-blk/1M": {"outcome": "stall",
      "runner": "epyc-milan-01", "recorded": "2026-12-01T05:00:00Z", "reason": "..."}}}
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pytest_sev.dma.expectations import NEVER, Row
from pytest_sev.dma.sizes import parse_size

SCHEMA = 1


def key(mode: str, bus: str, size_label: str) -> str:
    return f"{mode}/{bus}/{size_label}"


def parse_baseline(data: dict) -> dict[tuple[str, str, str], Row]:
    """Rows of a baseline document (ValueError naming a bad entry)."""
    if data.get("schema") != SCHEMA:
        raise ValueError(f"dma baseline: unsupported schema {data.get('schema')!r} (want {SCHEMA})")
    rows: dict[tuple[str, str, str], Row] = {}
    for k, entry in (data.get("rows") or {}).items():
        try:
            mode, bus, label = k.split("/")
        except ValueError:
            raise ValueError(f"dma baseline: bad key {k!r} (want mode/bus/size)") from None
        outcome = entry.get("outcome")
        if outcome in NEVER or not isinstance(outcome, str):
            raise ValueError(f"dma baseline: {k}: {outcome!r} cannot be a baseline")
        note = f"baseline recorded {entry.get('recorded', '?')} on {entry.get('runner', '?')}"
        rows[(mode, bus, label)] = Row(mode, bus, parse_size(label), outcome, "measured", (), note)
    return rows


def load_baseline(path: str | Path) -> dict[tuple[str, str, str], Row]:
    return parse_baseline(json.loads(Path(path).read_text()))


def add_entry(data: dict | None, mode: str, bus: str, size_label: str, outcome: str, *,
              runner: str, reason: str = "", now: float | None = None) -> dict:
    """The document with one entry set (recording never stores a failure)."""
    doc = dict(data or {"schema": SCHEMA, "rows": {}})
    doc.setdefault("schema", SCHEMA)
    rows = dict(doc.get("rows") or {})
    if outcome in NEVER:
        return doc | {"rows": rows}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    rows[key(mode, bus, size_label)] = {"outcome": outcome, "runner": runner, "recorded": stamp,
                                        "reason": reason[:300]}
    return doc | {"rows": rows}


def record(path: str | Path, mode: str, bus: str, size_label: str, outcome: str, *,
           runner: str, reason: str = "") -> None:
    """Add one entry to the file (the caller holds a lock when workers share it)."""
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() and p.stat().st_size else None
    doc = add_entry(data, mode, bus, size_label, outcome, runner=runner, reason=reason)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(p)
