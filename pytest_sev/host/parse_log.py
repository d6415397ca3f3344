"""Pure parser for the host kernel log (``dmesg``): what kvm_amd and ccp said.

The wording changed around Linux 6.5 and runners carry both eras:

* up to ~6.4: ``SEV supported: 410 ASIDs`` / ``SEV-ES supported: 99 ASIDs``
  (the SEV-ES line is printed only when SEV-ES got enabled);
* from ~6.5: ``SEV enabled (ASIDs 100 - 509)`` / ``SEV-ES enabled (ASIDs 1 - 99)``,
  with ``disabled`` or ``unusable`` in place of ``enabled``.

Either may carry a ``kvm_amd: `` prefix and a timestamp. The ccp driver adds
``SEV API:1.55 build:21`` when the PSP firmware initialised, or
``SEV: failed to INIT error 0x13`` when it did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A lookbehind keeps "SEV-ES ..." and "SEV-SNP ..." from matching the SEV
# patterns, and "SEV ..." from matching inside other words.
_OLD = re.compile(r"(?<![\w-])(SEV|SEV-ES|SEV-SNP) supported: (\d+) ASIDs")
_NEW = re.compile(
    r"(?<![\w-])(SEV|SEV-ES|SEV-SNP) (enabled|disabled|unusable) \(ASIDs (\d+) - (\d+)\)"
)
_API = re.compile(r"(?<![\w-])SEV API:(\d+)\.(\d+) build:(\d+)")
_INIT_FAIL = re.compile(
    r"(?<![\w-])SEV: failed to INIT(?: rc -?\d+,)? error (0x[0-9a-fA-F]+|\d+)"
)

HWERROR_PLATFORM = 0x13


@dataclass(frozen=True)
class AsidLine:
    """One kvm_amd ASID announcement, normalised over both wordings."""

    feature: str  # "SEV", "SEV-ES" or "SEV-SNP"
    state: str  # "enabled", "disabled" or "unusable"
    count: int
    first: int | None  # ASID range, new wording only
    last: int | None
    line: str

    def describe(self) -> str:
        if self.first is None:
            return f"{self.count} ASIDs ({self.line.strip()!r})"
        return f"{self.state}, {self.count} ASIDs {self.first}-{self.last} ({self.line.strip()!r})"


@dataclass(frozen=True)
class KernelLog:
    asids: dict[str, AsidLine]  # by feature; the last line wins
    api: tuple[int, int, int] | None  # (major, minor, build)
    init_error: int | None  # error code of the last INIT failure after the last API line
    init_line: str
    wording: str  # "old", "new" or "" when no ASID line was seen


def _strip(line: str) -> str:
    """Drop a ``[ 1.234]`` timestamp so evidence lines read cleanly."""
    return re.sub(r"^\s*\[[^\]]*\]\s*", "", line)


def parse_kernel_log(text: str) -> KernelLog:
    asids: dict[str, AsidLine] = {}
    api: tuple[int, int, int] | None = None
    init_error: int | None = None
    init_line = ""
    wording = ""
    for raw in text.splitlines():
        line = _strip(raw)
        if m := _OLD.search(line):
            count = int(m.group(2))
            state = "enabled" if count > 0 else "unusable"
            asids[m.group(1)] = AsidLine(m.group(1), state, count, None, None, line)
            wording = wording or "old"
        elif m := _NEW.search(line):
            first, last = int(m.group(3)), int(m.group(4))
            state = m.group(2)
            count = last - first + 1 if state == "enabled" and last >= first else 0
            asids[m.group(1)] = AsidLine(m.group(1), state, count, first, last, line)
            wording = wording or "new"
        if m := _API.search(line):
            api = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
            init_error, init_line = None, ""  # a later success supersedes
        elif m := _INIT_FAIL.search(line):
            init_error = int(m.group(1), 0)
            init_line = line.strip()
    return KernelLog(asids, api, init_error, init_line, wording)
