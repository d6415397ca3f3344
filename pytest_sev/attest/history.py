"""Launch-digest history: what each run expected and what the firmware said.

Why: measurement changes arrive silently (a host kernel that turns on
debug_swap, QEMU's KVM_SEV_INIT2 VMSA layout, a new OVMF build) and users
learn of them in production.  Every run appends one entry per launch kind
with its inputs; a digest that differs from the last entry of the same runner
and kind is flagged with the inputs that changed, so the report says *why*.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DigestEntry:
    runner: str
    kind: str                      #: sev | sev-es (what was launched or expected)
    expected: Mapping[str, str]    #: candidate label -> digest hex
    inputs: Mapping[str, str]      #: ovmf sha256, vcpus, vcpu type, host kernel, qemu, ...
    reported: str = ""             #: the matched candidate label, "no-match", or "" (not launched here)
    time: float = field(default_factory=time.time)


def load(path: Path) -> list[DigestEntry]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            d = json.loads(line)
            out.append(DigestEntry(**d))
    return out


def previous(entries: list[DigestEntry], runner: str, kind: str) -> DigestEntry | None:
    same = [e for e in entries if e.runner == runner and e.kind == kind]
    return same[-1] if same else None


def changes(before: DigestEntry | None, now: DigestEntry) -> list[str]:
    """What differs from the last entry: digests first, then the inputs that explain them."""
    if before is None:
        return []
    out = []
    for label in sorted(set(before.expected) | set(now.expected)):
        a, b = before.expected.get(label), now.expected.get(label)
        if a != b:
            out.append(f"expected {label} digest changed: {a or 'none'} -> {b or 'none'}")
    if before.reported and now.reported and before.reported != now.reported:
        out.append(f"firmware's measurement matched {before.reported!r} before, now {now.reported!r}")
    if out:
        for key in sorted(set(before.inputs) | set(now.inputs)):
            a, b = before.inputs.get(key), now.inputs.get(key)
            if a != b:
                out.append(f"input {key}: {a} -> {b}")
    return out


def record(path: Path, entry: DigestEntry) -> list[str]:
    """Append *entry*; return what changed against this runner's last one of its kind."""
    before = previous(load(path), entry.runner, entry.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
    return changes(before, entry)
