"""Tri-state evidence and the cross-check of witnesses (pure).

Why: a witness that could not look is not a witness that saw "no". An empty,
failed or permission-denied ``dmesg`` says nothing about encryption; a QMP
``CommandNotFound``, a lost monitor socket or a timeout says nothing about
the guest. Only a decisive answer (yes / no) counts toward a verdict, and
"unknown" always carries the reason, so a failed cross-check can list which
witnesses could not answer and why.

The cross-check (:func:`cross_check`) wants, for an SEV, SEV-ES or SEV-SNP
guest, at least :data:`MIN_DECISIVE_SEV` decisive witnesses that all agree with the
requested kind, among them the SEV_STATUS MSR on every vCPU and at least one
host-side witness (QEMU or the host's view of guest memory); for the plain
control at least :data:`MIN_DECISIVE_PLAIN`. On a KVM host reading SEV_STATUS
in a plain guest may fault (EIO): the MSR is then "unknown" and the plain
control decides with the kernel log, ``query-sev``, the launch measurement
and the host memory view.  An SEV-SNP guest is counted as an SEV-ES one, and
each witness that can tell SNP (the kernel log, the MSR's bit 2, query-sev's
sev-type and snp-policy) must say SNP; QEMU has no launch measurement for SNP
guests, so that row is unknown for them, never a "no".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

YES, NO, UNKNOWN = "yes", "no", "unknown"

MIN_DECISIVE_SEV = 4
MIN_DECISIVE_PLAIN = 3

#: witness names (the activation suite's table rows)
KERNEL_LOG = "guest kernel log"
MSR = "MSR 0xC0010131"
QUERY_SEV = "QMP query-sev"
MEMORY = "host memory view"
MEASUREMENT = "launch measurement"
HOST_SIDE = frozenset({QUERY_SEV, MEMORY, MEASUREMENT})


def answer_of(value: bool | None) -> str:
    return UNKNOWN if value is None else (YES if value else NO)


# --------------------------------------------------------------------------
# a dmesg read, judged


@dataclass(frozen=True)
class LogRead:
    """A guest kernel log read: its text, or ``None`` with the reason."""

    text: str | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.text is not None


_DENIED = re.compile(r"Operation not permitted|Permission denied|klogctl", re.IGNORECASE)
_NOT_FOUND = re.compile(r"not found|No such file", re.IGNORECASE)


def judge_dmesg(output: str | None, status: int | None) -> LogRead:
    """``dmesg``'s output and exit status -> the text, or unknown with a reason.

    A non-zero status (dmesg_restrict: ``dmesg: klogctl: Operation not
    permitted``; no dmesg at all), no output, or output without one kernel
    record is never a log that "has no SEV line".
    """
    out = output or ""
    if status is None:
        return LogRead(None, "dmesg did not return (timeout or lost shell)")
    if status != 0:
        first = next((ln.strip() for ln in out.splitlines() if ln.strip()), "")
        if _DENIED.search(out):
            why = "permission denied"
        elif _NOT_FOUND.search(out):
            why = "dmesg not found"
        else:
            why = f"exit status {status}"
        return LogRead(None, f"dmesg failed ({why}): {first[:160]!r}")
    if not out.strip():
        return LogRead(None, "dmesg printed nothing (empty ring buffer or restricted)")
    if not re.search(r"^\s*(?:<\d+>)?\s*\[\s*\d+\.\d+\]", out, re.MULTILINE) \
            and "Linux version" not in out:
        return LogRead(None, f"dmesg output holds no kernel record: {out.strip()[:160]!r}")
    return LogRead(out)


# --------------------------------------------------------------------------
# a QMP error, classified by its text


@dataclass(frozen=True)
class QmpFailure:
    """A QMP command that did not return: is that an answer?"""

    answer: str  # NO when QEMU itself says SEV is not there, else UNKNOWN
    reason: str


#: QEMU's own words that the guest has no SEV (a real "no")
_SEV_ABSENT = (
    "SEV launch measurement is not available",  # sev_get_launch_measurement on a non-SEV guest
    "SEV is not enabled",                        # qmp_query_sev (<= 9.0 wording on some paths)
    "SEV feature is not available",              # QEMU 2.12-5.0
    "SEV is not available in this QEMU",         # built without SEV: this guest cannot be SEV
)


def classify_qmp_failure(exc: BaseException | Any) -> QmpFailure:
    """What a failed QMP command says: ``no`` only when QEMU states SEV is off.

    ``CommandNotFound`` (an old or non-x86 QEMU), a lost socket
    (``ConnectionError``/``EOFError``/``OSError``), a timeout or any other
    text is unknown: the host side could not be asked.
    """
    cls = getattr(exc, "error_class", None)
    err = getattr(exc, "error", None)
    desc = getattr(err, "desc", None)  # None when there is no error object
    if isinstance(exc, dict) and isinstance(exc.get("error"), dict):
        cls, desc = exc["error"].get("class"), exc["error"].get("desc")
    text = desc or str(exc)
    kind = type(exc).__name__
    if cls == "CommandNotFound":
        return QmpFailure(UNKNOWN, f"QEMU does not know the command (CommandNotFound: {text})")
    if isinstance(exc, TimeoutError) or "timed out" in text.lower() or "timeout" in kind.lower():
        return QmpFailure(UNKNOWN, f"QMP timed out ({kind}: {text})")
    if isinstance(exc, (ConnectionError, EOFError, BrokenPipeError)) or \
            re.search(r"disconnect|connection|socket|broken pipe|eof", f"{kind} {text}".lower()):
        return QmpFailure(UNKNOWN, f"QMP socket lost ({kind}: {text})")
    for needle in _SEV_ABSENT:
        if needle in text:
            return QmpFailure(NO, f"QEMU says SEV is not active: {text}")
    return QmpFailure(UNKNOWN, f"unclassified QMP error ({cls or kind}: {text})")


# --------------------------------------------------------------------------
# the cross-check


@dataclass(frozen=True)
class Row:
    name: str
    encrypted: bool | None
    es: bool | None
    evidence: str
    #: SEV-SNP per this witness (None: it cannot tell, or could not look)
    snp: bool | None = None


@dataclass(frozen=True)
class CrossCheck:
    kind: str
    ok: bool
    table: str
    decisive: tuple[str, ...]
    unknown: tuple[str, ...]
    disagree: tuple[str, ...]
    problems: tuple[str, ...]

    def message(self) -> str:
        return "; ".join(self.problems) + "\n" + self.table


#: what each kind must look like: (memory encrypted, SEV-ES)
EXPECTED: dict[str, tuple[bool, bool]] = {"plain": (False, False), "sev": (True, False), "sev-es": (True, True),
                                          "sev-snp": (True, True)}
#: whether each kind is an SEV-SNP guest: a witness that can tell must agree
EXPECTED_SNP: dict[str, bool] = {"plain": False, "sev": False, "sev-es": False, "sev-snp": True}


def agrees(row: Row, kind: str) -> bool:
    """A decisive row agrees with *kind* on encryption, and on SEV-ES and SNP where it can tell."""
    want_enc, want_es = EXPECTED[kind]
    return (row.encrypted == want_enc and (row.es is None or row.es == want_es)
            and (row.snp is None or row.snp == EXPECTED_SNP[kind]))


def cross_check(kind: str, rows: list[Row] | tuple[Row, ...]) -> CrossCheck:
    """Count only decisive answers; demand enough, the right ones, all agreeing."""
    if kind not in EXPECTED:
        raise ValueError(f"kind must be one of {', '.join(EXPECTED)}, not {kind!r}")
    want_enc, want_es = EXPECTED[kind]
    lines = [f"{kind}: expected encrypted={want_enc} es={want_es} snp={EXPECTED_SNP[kind]}"]
    decisive, unknown, bad = [], [], []
    for r in sorted(rows, key=lambda r: r.name):
        if r.encrypted is None:
            verdict = "UNKNOWN"
            unknown.append(r.name)
        else:
            decisive.append(r.name)
            ok = agrees(r, kind)
            verdict = "ok" if ok else "DISAGREES"
            if not ok:
                bad.append(r.name)
        lines.append(f"{r.name:<22} {answer_of(r.encrypted):<7} es={answer_of(r.es):<7} "
                     f"snp={answer_of(r.snp):<7} {verdict:<9} {r.evidence[:140]}")
    table = "\n".join(lines)
    problems: list[str] = []
    why_unknown = ", ".join(f"{r.name} ({r.evidence[:120]})" for r in rows if r.encrypted is None)
    need = MIN_DECISIVE_PLAIN if kind == "plain" else MIN_DECISIVE_SEV
    if bad:
        problems.append("witnesses disagree with the requested kind: " + ", ".join(bad))
    if len(decisive) < need:
        problems.append(f"only {len(decisive)} decisive witness(es), {need} needed for {kind}; "
                        f"could not answer: {why_unknown or 'none'}")
    if kind != "plain":
        if MSR not in decisive:
            problems.append(f"the SEV_STATUS MSR on every vCPU is required for {kind} and did not answer")
        if not HOST_SIDE.intersection(decisive):
            problems.append(f"no host-side witness ({', '.join(sorted(HOST_SIDE))}) answered for {kind}")
    if kind == "sev-snp" and not any(r.snp is not None for r in rows if r.encrypted is not None):
        problems.append("no decisive witness could tell SEV-SNP from SEV-ES (the MSR's bit 2, the kernel log, "
                        "query-sev's sev-type)")
    return CrossCheck(kind, not problems, table, tuple(decisive), tuple(unknown), tuple(bad), tuple(problems))
