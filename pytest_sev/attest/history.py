"""Launch-digest history: what each run expected and what the firmware said.

Why: measurement changes arrive silently (a host kernel that turns on
debug_swap, QEMU's KVM_SEV_INIT2 VMSA layout, a new OVMF build) and users
learn of them in production.  Every run appends one entry per launch kind
with its inputs; a digest that differs from the last entry of the same runner
and kind is flagged with the inputs that changed, so the report says *why*.

The history decides (:func:`judge`): a changed digest whose inputs changed
too is *explained* (the report names the inputs); a changed digest with the
same inputs is *unexplained* (the digest code, the measuring library or the
firmware's behaviour moved under the harness) and the run must fail.
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


@dataclass(frozen=True)
class DigestChange:
    """What differs from the last entry of the same runner and kind.

    ``digests``: one line per changed expected digest or changed firmware
    match; ``inputs``: one line per input that differs (only looked at when
    a digest changed)."""

    digests: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.digests)

    @property
    def unexplained(self) -> bool:
        """A digest changed while every recorded input stayed the same."""
        return self.changed and not self.inputs

    @property
    def lines(self) -> list[str]:
        """Digests first, then the inputs that explain them."""
        return [*self.digests, *self.inputs]

    def describe(self) -> str:
        if not self.changed:
            return "launch digests unchanged"
        if self.unexplained:
            return "launch digest changed with unchanged inputs: " + "; ".join(self.digests)
        return "launch digest changed with its inputs: " + "; ".join(self.lines)


def _changed(before: Mapping[str, str], now: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(key, before, now) for every key whose value differs, in key order."""
    keys = sorted(set(before) | set(now))
    return [(k, before.get(k), now.get(k)) for k in keys if before.get(k) != now.get(k)]


def _digest_lines(before: DigestEntry, now: DigestEntry) -> list[str]:
    out = [f"expected {label} digest changed: {a or 'none'} -> {b or 'none'}"
           for label, a, b in _changed(before.expected, now.expected)]
    if before.reported and now.reported and before.reported != now.reported:
        out.append(f"firmware's measurement matched {before.reported!r} before, now {now.reported!r}")
    return out


def _input_lines(before: DigestEntry, now: DigestEntry) -> list[str]:
    return [f"input {key}: {a} -> {b}" for key, a, b in _changed(before.inputs, now.inputs)]


def judge(before: DigestEntry | None, now: DigestEntry) -> DigestChange:
    """The change from ``before`` (``None``: the first entry) to ``now``."""
    if before is None:
        return DigestChange()
    digests = _digest_lines(before, now)
    if not digests:
        return DigestChange()
    return DigestChange(tuple(digests), tuple(_input_lines(before, now)))


def changes(before: DigestEntry | None, now: DigestEntry) -> list[str]:
    """What differs from the last entry: digests first, then the inputs that explain them."""
    return judge(before, now).lines


def record_and_judge(path: Path, entry: DigestEntry) -> DigestChange:
    """Append *entry*; judge it against this runner's last entry of its kind."""
    before = previous(load(path), entry.runner, entry.kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(asdict(entry), sort_keys=True) + "\n")
    return judge(before, entry)


def record(path: Path, entry: DigestEntry) -> list[str]:
    """Append *entry*; return what changed against this runner's last one of its kind."""
    return record_and_judge(path, entry).lines
