"""A runner's own DMA baseline: record SEV/SEV-ES/SEV-SNP outcomes, compare later runs.

Why: the SEV, SEV-ES and SEV-SNP rows default to the outcomes measured on the forced
plain control, which is the best guess until an EPYC runner has run them.
``--dma-record-baseline FILE`` writes what this run saw (one entry per kind,
bus and pool size, with the runner and the time); a later run given
``--dma-baseline FILE`` expects exactly those outcomes, and a difference fails
with both values. Only outcomes that are acceptable anywhere are recorded:
corruption, panic, hung and unproven are failures, never a baseline (and a
guest whose QEMU died raises ``GuestDied`` before anything is recorded).

File (JSON), one entry per ``kind/bus/size``, the kind one of
:data:`~pytest_sev.dma.expectations.SEV_ROW_KINDS` (``sev``, ``sev-es``,
``sev-snp``; the plain control is never recorded)::

    {"schema": 1, "rows": {"sev-es/virtio-blk/1M": {"outcome": "stall",
      "runner": "epyc-milan-01", "recorded": "2026-12-01T05:00:00Z", "reason": "..."},
      "sev-snp/virtio-blk/1M": {"outcome": "stall", ...}}}

A key naming another kind, bus or size is refused when the file loads (a
baseline that can never match a row would silently leave the rows on their
defaults), and recording one is refused likewise.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pytest_sev.dma.expectations import BUSES, NEVER, SEV_ROW_KINDS, Row
from pytest_sev.dma.sizes import parse_size

SCHEMA = 1


def key(mode: str, bus: str, size_label: str) -> str:
    return f"{mode}/{bus}/{size_label}"


def key_problem(mode: str, bus: str, size_label: str) -> str:
    """Why ``mode/bus/size`` cannot be a baseline entry ("" when it can)."""
    if mode not in SEV_ROW_KINDS:
        return f"kind {mode!r} is not one of {', '.join(SEV_ROW_KINDS)}"
    if bus not in BUSES:
        return f"bus {bus!r} is not one of {', '.join(BUSES)}"
    try:
        label = parse_size(size_label).label
    except ValueError as exc:
        return str(exc)
    if label != size_label:
        return f"write the size as {label!r}"
    return ""


def parse_baseline(data: dict) -> dict[tuple[str, str, str], Row]:
    """Rows of a baseline document (ValueError naming a bad entry)."""
    if not isinstance(data, dict):
        raise ValueError(f"dma baseline: a JSON {type(data).__name__}, not an object with schema and rows")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"dma baseline: unsupported schema {data.get('schema')!r} (want {SCHEMA})")
    rows: dict[tuple[str, str, str], Row] = {}
    entries = data.get("rows") if data.get("rows") is not None else {}
    if not isinstance(entries, dict):
        raise ValueError("dma baseline: rows is not an object of mode/bus/size entries")
    for k, entry in entries.items():
        try:
            mode, bus, label = k.split("/")
        except ValueError:
            raise ValueError(f"dma baseline: bad key {k!r} (want kind/bus/size)") from None
        problem = key_problem(mode, bus, label)
        if problem:
            raise ValueError(f"dma baseline: {k}: {problem}")
        if not isinstance(entry, dict):
            raise ValueError(f"dma baseline: {k}: not an object with an outcome")
        outcome = entry.get("outcome")
        if outcome in NEVER or not isinstance(outcome, str):
            raise ValueError(f"dma baseline: {k}: {outcome!r} cannot be a baseline")
        note = f"baseline recorded {entry.get('recorded', '?')} on {entry.get('runner', '?')}"
        rows[(mode, bus, label)] = Row(mode, bus, parse_size(label), outcome, "measured", (), note)
    return rows


def load_baseline(path: str | Path) -> dict[tuple[str, str, str], Row]:
    """The rows of a baseline file; ValueError with one line for a file that
    cannot be read or is not a baseline (so ``--dma-baseline`` refuses it at
    start-up, not after the whole DMA load)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"dma baseline: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ValueError("dma baseline: not text (not a JSON baseline)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"dma baseline: not JSON ({exc})") from None
    return parse_baseline(data)


def add_entry(data: dict | None, mode: str, bus: str, size_label: str, outcome: str, *,
              runner: str, reason: str = "", now: float | None = None) -> dict:
    """The document with one entry set (recording never stores a failure,
    nor an entry the file could not load again: ValueError naming it)."""
    problem = key_problem(mode, bus, size_label)
    if problem:
        raise ValueError(f"dma baseline: {key(mode, bus, size_label)}: {problem}")
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
