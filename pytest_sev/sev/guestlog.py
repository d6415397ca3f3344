"""The guest kernel's own statement that memory encryption is active.

Why: AMD's README FAQ 2a tells a person to ``dmesg | grep SEV``. The line's
wording changed with almost every kernel era, and runners carry old and new
guest kernels side by side, so the harness must read all of them:

=========================  ====================================================================
era                        line
=========================  ====================================================================
``4.15-5.9``               ``AMD Secure Encrypted Virtualization (SEV) active``
``amd-sev-es-out-of-tree`` ``AMD Secure Encrypted Virtualization - Encrypted State (SEV-ES) active``
``5.10-5.18``              ``AMD Memory Encryption Features active: SEV SEV-ES``
``5.19+``                  ``Memory Encryption Features active: AMD SEV SEV-ES [SEV-SNP]``
``6.9+``                   ``SEV: Status: SEV SEV-ES ...`` (one token per SEV_STATUS bit)
``tdx``                    ``Memory Encryption Features active: Intel TDX`` (not SEV)
=========================  ====================================================================

Lines are matched only at the start of a kernel log record (after an
optional ``<N>`` level, syslog ``... kernel:`` prefix and ``[ time]``
stamp), so the echo of a typed ``dmesg | grep ...`` command is not evidence.
``\\r`` and ANSI escapes from the serial console are removed first.

AMD's out-of-tree SEV-ES line implies SEV (SEV-ES is an extension of SEV;
the README lists the two lines as alternatives). Every other era lists each
feature explicitly. Only the last boot in the text is judged (see
:func:`parse_guest_log`). When lines disagree (a Status line that
contradicts the features line) the result keeps the union
in ``features`` and lists the conflict in ``disagreements``: a caller must
treat a non-empty ``disagreements`` as "unknown".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_sev.sev.msr import KERNEL_STATUS_TOKENS

FEATURES = ("SEV", "SEV-ES", "SEV-SNP")

ERA_OLD = "4.15-5.9"
ERA_OUT_OF_TREE = "amd-sev-es-out-of-tree"
ERA_510 = "5.10-5.18"
ERA_519 = "5.19+"
ERA_STATUS = "6.9+"
ERA_TDX = "tdx"

BOUNCE_TEXT = "Memory encryption is active and system is using DMA bounce buffers"

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9]|[=>78cDEHM])")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# optional: <level>, syslog/journal "... kernel:" prefix, "[    0.123456]" or dmesg -T stamp.
_PREFIX = re.compile(r"^\s*(?:<\d+>)?\s*(?:\S[^\[]*?\skernel:\s*)?(?:\[[^\]]*\]\s*)?")

_RE_OLD = re.compile(r"AMD Secure Encrypted Virtualization \(SEV\) active\s*$")
_RE_OOT = re.compile(r"AMD Secure Encrypted Virtualization - Encrypted State \(SEV-ES\) active\s*$")
_RE_510 = re.compile(r"AMD Memory Encryption Features active:(?P<toks>(?:[ \t]+\S+)*)\s*$")
_RE_519 = re.compile(r"Memory Encryption Features active:[ \t]+AMD(?P<toks>(?:[ \t]+\S+)*)\s*$")
_RE_TDX = re.compile(r"Memory Encryption Features active:[ \t]+Intel TDX\b")
_RE_STATUS = re.compile(r"SEV: Status:(?P<toks>(?:[ \t]+\S+)*)\s*$")
_RE_BOOT = re.compile(r"Linux version \d")


@dataclass(frozen=True)
class Evidence:
    """One recognised log line."""

    era: str
    line: str
    lineno: int  # 1-based, in the cleaned text
    features: frozenset[str]


@dataclass(frozen=True)
class GuestLogResult:
    """What the guest kernel log says about memory encryption."""

    features: frozenset[str]
    evidence: tuple[Evidence, ...]
    eras: tuple[str, ...]
    bounce_line: str | None
    tdx: bool
    status_tokens: tuple[str, ...]
    boots: int  # 'Linux version' lines seen (only the last boot is judged by default)
    disagreements: tuple[str, ...]

    @property
    def sev(self) -> bool:
        return "SEV" in self.features

    @property
    def sev_es(self) -> bool:
        return "SEV-ES" in self.features

    @property
    def snp(self) -> bool:
        return "SEV-SNP" in self.features

    @property
    def found(self) -> bool:
        """True when some line about memory encryption (SEV or TDX) was seen."""
        return bool(self.evidence)

    def describe(self) -> str:
        if not self.evidence:
            return "no memory-encryption line in the guest kernel log"
        feats = " ".join(f for f in FEATURES if f in self.features) or "none"
        lines = "; ".join(repr(e.line) for e in self.evidence)
        extra = f" DISAGREE: {'; '.join(self.disagreements)}" if self.disagreements else ""
        return f"guest log ({', '.join(self.eras)}): {feats} from {lines}{extra}"


def clean_log(text: str) -> list[str]:
    """Lines of ``text`` without ANSI escapes, ``\\r`` or control characters."""
    text = _ANSI.sub("", text)
    out = []
    for line in text.split("\n"):
        line = line.replace("\r", "")
        out.append(_CTRL.sub("", line).rstrip())
    return out


def _tokens(s: str) -> list[str]:
    return s.split()


def _match_line(body: str) -> tuple[str, frozenset[str], list[str]] | None:
    """(era, features, raw tokens) when ``body`` is an encryption line."""
    if _RE_OOT.match(body):
        return ERA_OUT_OF_TREE, frozenset({"SEV", "SEV-ES"}), []
    if _RE_OLD.match(body):
        return ERA_OLD, frozenset({"SEV"}), []
    m = _RE_510.match(body)
    if m:
        toks = _tokens(m.group("toks"))
        return ERA_510, frozenset(t for t in toks if t in FEATURES), toks
    if _RE_TDX.match(body):
        return ERA_TDX, frozenset(), ["Intel", "TDX"]
    m = _RE_519.match(body)
    if m:
        toks = _tokens(m.group("toks"))
        return ERA_519, frozenset(t for t in toks if t in FEATURES), toks
    m = _RE_STATUS.match(body)
    if m:
        toks = _tokens(m.group("toks"))
        return ERA_STATUS, frozenset(t for t in toks if t in FEATURES), toks
    return None


def parse_guest_log(text: str, last_boot_only: bool = True) -> GuestLogResult:
    """Recognise every era's memory-encryption line in a guest kernel log.

    With ``last_boot_only`` (default) and a log holding several ``Linux
    version`` lines (a console log with two boots, or a console log followed
    by a ``dmesg`` replay of the same boot) only the part from the last such
    line on is judged: that is the kernel running now. ``boots`` counts them.
    """
    lines = clean_log(text)
    bodies = [line[m.end():] if (m := _PREFIX.match(line)) else line for line in lines]
    starts = [i for i, b in enumerate(bodies) if _RE_BOOT.match(b)]
    first = starts[-1] if (last_boot_only and starts) else 0
    evidence: list[Evidence] = []
    eras: list[str] = []
    bounce: str | None = None
    status_tokens: list[str] = []
    disagreements: list[str] = []
    boots = len(starts)
    for i in range(first, len(lines)):
        line, body = lines[i], bodies[i]
        if bounce is None and BOUNCE_TEXT in body:
            bounce = line.strip()
        hit = _match_line(body)
        if hit is None:
            continue
        era, feats, toks = hit
        evidence.append(Evidence(era=era, line=line.strip(), lineno=i + 1, features=feats))
        if era not in eras:
            eras.append(era)
        if era == ERA_STATUS:
            status_tokens.extend(t for t in toks if t not in status_tokens)
            unknown = [t for t in toks if t not in KERNEL_STATUS_TOKENS]
            if unknown:
                # newer kernels add names; keep them visible, they do not change SEV/ES.
                status_tokens.extend(f"?{t}" for t in unknown if f"?{t}" not in status_tokens)
    tdx = ERA_TDX in eras
    features = frozenset().union(*(e.features for e in evidence)) if evidence else frozenset()
    sev_sets = {e.features for e in evidence if e.era != ERA_TDX}
    if len(sev_sets) > 1:
        disagreements.append(
            "lines name different features: "
            + " vs ".join(sorted("{" + " ".join(sorted(s)) + "}" for s in sev_sets))
        )
    if tdx and features:
        disagreements.append("log names both Intel TDX and AMD SEV")
    return GuestLogResult(
        features=features,
        evidence=tuple(evidence),
        eras=tuple(eras),
        bounce_line=bounce,
        tdx=tdx,
        status_tokens=tuple(t for t in status_tokens if not t.startswith("?"))
        + tuple(t for t in status_tokens if t.startswith("?")),
        boots=boots,
        disagreements=tuple(disagreements),
    )
