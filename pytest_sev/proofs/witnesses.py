"""Gather the SEV activation witnesses from a running guest.

Each function asks one independent party whether the guest's memory is
encrypted and returns a :class:`Witness`: ``encrypted``/``es`` (and ``snp``
where the witness can tell) are True (yes), False (no) or None (unknown),
and an unknown answer always says why
in ``evidence``. A read that failed, came back empty, was denied or could
not reach its party is unknown, never "not encrypted" (see
:mod:`pytest_sev.sev.evidence`). The parsing lives in :mod:`pytest_sev.sev`;
this module only does the I/O.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.errors import GuestError
from pytest_sev.model.protocol import GuestLike as Guest
from pytest_sev.sev import evidence, guestlog, memview, msr, qmp_sev, signatures
from pytest_sev.sev.evidence import Row

log = logging.getLogger(__name__)

#: errors that mean "the party could not be asked" (QMP socket lost, timeout, ...)
_ASK_ERRORS = (Exception,)


@dataclass
class Witness:
    name: str
    encrypted: bool | None  # memory encryption active per this witness (None: unknown)
    es: bool | None  # SEV-ES (encrypted register state) per this witness
    evidence: str  # for an unknown answer: why it could not tell
    details: dict = field(default_factory=dict)
    host_side: bool = False
    snp: bool | None = None  # SEV-SNP per this witness (None: it cannot tell, or could not look)

    @property
    def answer(self) -> str:
        return evidence.answer_of(self.encrypted)

    @property
    def decisive(self) -> bool:
        return self.encrypted is not None

    def row(self) -> Row:
        return Row(self.name, self.encrypted, self.es, self.evidence, self.snp)


def _told(guest: Guest, witness: Witness) -> Witness:
    said = f"{witness.answer} es={evidence.answer_of(witness.es)} ({witness.evidence[:200]})"  # pragma: no mutate, log text only
    log.info("%s: witness %s: %s", guest.spec.name, witness.name, said)  # pragma: no mutate, log text only
    return witness


def read_dmesg(guest: Guest, timeout: float = 60) -> evidence.LogRead:
    """``dmesg`` through the guest shell with its exit status checked.

    (``guest.kernel_log()`` returns dmesg's text whatever its status; this
    one turns a failed, empty or denied read into a reason.)
    """
    try:
        out, status = guest.run("dmesg", timeout=timeout)
    except GuestError as exc:
        return evidence.LogRead(None, f"dmesg could not run: {type(exc).__name__}: {str(exc)[:160]}")
    return evidence.judge_dmesg(out, status)


def judge_kernel_log(read: evidence.LogRead) -> tuple[bool | None, bool | None, str, dict]:
    """(encrypted, es, evidence, details) from a dmesg read (pure)."""
    if read.text is None:
        return None, None, f"unknown: {read.reason}", {}
    result = guestlog.parse_guest_log(read.text)
    details = {"features": sorted(result.features), "eras": sorted(result.eras), "boots": result.boots}
    if result.disagreements:
        return None, None, "unknown: " + result.describe(), details
    if result.tdx:
        return None, None, "unknown: the guest log names Intel TDX, not SEV", details
    if not result.found and not result.boots:
        # the ring buffer no longer holds the boot: absence of the line proves nothing
        return None, None, "unknown: no SEV line, but the log does not reach back to 'Linux version'", details
    return result.sev, result.sev_es if result.sev else False, result.describe(), details


def log_says_snp(encrypted: bool | None, details: dict) -> bool | None:
    """SEV-SNP per a judged kernel log: decided exactly when encryption was
    (every era's line lists SEV-SNP when it is active; the pre-5.19 lines
    predate SNP guests), else unknown."""
    if encrypted is None:
        return None
    return "SEV-SNP" in details.get("features", ())


def kernel_log(guest: Guest) -> Witness:
    enc, es, ev, details = judge_kernel_log(read_dmesg(guest))
    return _told(guest, Witness(evidence.KERNEL_LOG, enc, es, ev, details, snp=log_says_snp(enc, details)))


def judge_msr_read(out: str, vcpus: int) -> Witness:
    """The in-guest SEV_STATUS read of every vCPU, judged (pure): bit 0 SEV,
    bit 1 SEV-ES, bit 2 SNP, the other bits named in the evidence."""
    w = msr.parse_guest_read_output(out, expected_cpus=vcpus)
    return Witness(evidence.MSR, w.sev, w.sev_es, w.describe(),
                   {"per_cpu": {str(k): v for k, v in w.per_cpu.items()}, "raw": out,
                    "flags": list(w.status.flags) if w.status else []}, snp=w.snp)


def sev_status_msr(guest: Guest) -> Witness:
    try:
        out, _ = guest.run(msr.guest_read_command(load_module=True), timeout=60)
    except GuestError as exc:
        return _told(guest, Witness(evidence.MSR, None, None,
                                    f"SEV_STATUS unknown: the read did not return ({type(exc).__name__})"))
    return _told(guest, judge_msr_read(out, guest.spec.vcpus))


def judge_query_sev(reply: object, kind: str, host_api: str | None, snp_policy: int | None = None) -> Witness:
    """``query-sev``'s reply, or the exception it raised, judged (pure).

    Decisive only where QEMU's words decide (:func:`qmp_sev.answer_query_sev`):
    a reply without a policy, or with a listed problem, is unknown naming it.
    ``snp_policy``: the launched policy of an ``sev-snp`` guest.
    """
    if isinstance(reply, BaseException):
        f = evidence.classify_qmp_failure(reply)
        if f.answer == evidence.NO:
            return Witness(evidence.QUERY_SEV, False, False, f.reason, {"reply": str(reply), "problems": []},
                           host_side=True, snp=False)
        return Witness(evidence.QUERY_SEV, None, None, f"unknown: {f.reason}",
                       {"reply": str(reply), "problems": [f.reason]}, host_side=True)
    v = qmp_sev.evaluate_query_sev(reply, expect=kind, host_api=host_api, snp_policy=snp_policy)
    a = qmp_sev.answer_query_sev(v)
    return Witness(evidence.QUERY_SEV, a.encrypted, a.es, a.reason,
                   {"reply": reply, "problems": list(v.problems)}, host_side=True, snp=a.snp)


def launched_snp_policy(guest: Guest) -> int | None:
    """The SNP policy a guest was launched with (None: not an SNP launch)."""
    snp = getattr(guest.spec, "snp", None)
    return snp.policy if snp is not None else None


def query_sev(guest: Guest, expect: str, host_api: str | None) -> Witness:
    try:
        reply: object = guest.qmp.execute("query-sev")
    except _ASK_ERRORS as exc:
        reply = exc
    return _told(guest, judge_query_sev(reply, expect, host_api, launched_snp_policy(guest)))


def judge_launch_measure(reply: object) -> Witness:
    """``query-sev-launch-measure``'s reply or exception, judged (pure)."""
    name = evidence.MEASUREMENT
    if isinstance(reply, BaseException):
        f = evidence.classify_qmp_failure(reply)
        enc = False if f.answer == evidence.NO else None
        ev = f.reason if enc is False else f"unknown: {f.reason}"
        return Witness(name, enc, None, ev, {"present": False, "length": None}, host_side=True)
    m = qmp_sev.evaluate_launch_measure(reply)
    if m.present:  # exactly 48 bytes: the 32-byte MAC and the 16-byte nonce
        return Witness(name, True, None, f"present={m.present} length={m.length}",
                       {"present": True, "length": m.length}, host_side=True)
    if m.not_available:
        return Witness(name, False, None, f"QEMU says SEV is not active: {m.problem}",
                       {"present": False, "length": None}, host_side=True)
    return Witness(name, None, None, f"unknown: {m.problem}", {"present": False, "length": m.length},
                   host_side=True)


#: why an SNP guest's launch measurement row is unknown (not asked: QEMU's answer, "SEV launch
#: measurement is not available", would read as a "no" that an SNP guest does not deserve)
SNP_NO_LAUNCH_MEASURE = ("unknown: query-sev-launch-measure is SEV/SEV-ES only: QEMU keeps no launch "
                         "measurement for SEV-SNP guests (the guest's attestation report carries it)")


def snp_launch_measure() -> Witness:
    """The launch measurement row of an SNP guest: unknown, saying why (pure)."""
    return Witness(evidence.MEASUREMENT, None, None, SNP_NO_LAUNCH_MEASURE, {"present": False, "length": None},
                   host_side=True)


def launch_measurement(guest: Guest) -> Witness:
    if launched_snp_policy(guest) is not None:
        return _told(guest, snp_launch_measure())
    try:
        reply: object = guest.qmp.execute("query-sev-launch-measure")
    except _ASK_ERRORS as exc:
        reply = exc
    return _told(guest, judge_launch_measure(reply))


def judge_dump(dump: Path, expected_size: int, marker: str, written: bool) -> memview.MemViewWitness:
    """The dump file judged: a dump of the wrong size is unknown (pure but for reading it)."""
    got = dump.stat().st_size if dump.exists() else 0
    if got != expected_size:
        return memview.MemViewWitness(0, None, 0.0, None,
                                      f"unknown: dump holds {got} bytes, {expected_size} asked for "
                                      "(wrong range or pmemsave failed)")
    return memview.evaluate_dump(dump, memview.marker_bytes(marker), marker_written=written)


def host_memory_view(guest: Guest, *, start: int = 0, size: int | None = None,
                     decoy: bool = False) -> Witness:
    """Write a random marker in guest RAM, dump guest memory from the host.

    ``start``/``size`` default to all of guest RAM (a test may pass a wrong
    range to show the witness then cannot tell). ``decoy``: search the dump
    for a fresh marker the guest never wrote, as if it had been written (the
    discrimination self-test: plaintext memory must then be unknown). A
    cleanup failure is logged,
    never raised over the witness's own answer or error.
    """
    return _memory_views(guest, start, size, (decoy,))[0]


def host_memory_view_and_decoy(guest: Guest) -> tuple[Witness, Witness]:
    """The memory view and its decoy from one dump: the marker the guest wrote,
    then a fresh one it never wrote, searched in the same file.

    What ``host_memory_view(guest)`` and ``host_memory_view(guest, decoy=True)``
    answer, for one marker, one ``pmemsave`` and one cleanup instead of two
    (a dump of 512 MiB and its search cost ~1.3 s under TCG here)."""
    real, decoy = _memory_views(guest, 0, None, (False, True))
    return real, decoy


def _memory_views(guest: Guest, start: int, size: int | None, decoys: tuple[bool, ...]) -> tuple[Witness, ...]:
    """One marker, one dump, judged once per entry of ``decoys`` (True: for a fresh marker)."""
    marker = memview.new_marker()
    name = evidence.MEMORY
    try:
        out, _ = guest.run(memview.guest_marker_command(marker), timeout=120)
    except GuestError as exc:
        unknown = Witness(name, None, None, f"unknown: marker command did not return ({exc})",
                          {"marker_written": False, "found": 0}, host_side=True)
        return tuple(_told(guest, unknown) for _ in decoys)
    written = memview.parse_marker_ack(out) is not None
    scratch = Path(tempfile.mkdtemp(prefix="sev-memdump-"))  # 0700
    dump = scratch / "guest-memory.bin"
    size = (guest.spec.memory_mib << 20) if size is None else size
    try:
        try:
            guest.qmp.execute("pmemsave", val=start, size=size, filename=str(dump))
        except _ASK_ERRORS as exc:
            f = evidence.classify_qmp_failure(exc)
            failed = memview.MemViewWitness(0, None, 0.0, None, f"unknown: pmemsave failed: {f.reason}")
            views = [(failed, decoy) for decoy in decoys]
        else:
            views = [(judge_dump(dump, size, memview.new_marker() if decoy else marker, written), decoy)
                     for decoy in decoys]
    finally:
        if dump.exists():
            os.unlink(dump)
        scratch.rmdir()
        try:
            guest.run(memview.guest_marker_cleanup_command(), timeout=60)
        except Exception as exc:  # noqa: BLE001 - the witness's answer matters more
            log.warning("%s: marker cleanup failed: %s", guest.spec.name, exc)  # pragma: no mutate, log text only
    return tuple(
        _told(guest, Witness(name, w.encrypted, None, w.evidence,
                             {"found": w.found, "entropy_at_marker": w.entropy_at_marker,
                              "sampled_entropy": w.sampled_entropy, "samples": w.samples,
                              "marker_written": written, "range": [start, size], "decoy": decoy}, host_side=True))
        for w, decoy in views)


def all_witnesses(guest: Guest, kind: str, host_api: str | None) -> list[Witness]:
    return [kernel_log(guest), sev_status_msr(guest), query_sev(guest, kind, host_api),
            host_memory_view(guest), launch_measurement(guest)]


def diagnose(guest: Guest, answers: dict[str, Witness] | None = None) -> str:
    """Known failure signatures in this guest's QEMU stderr, console and dmesg,
    and between its witnesses ('' when none): for a failure message."""
    texts: dict[str, str] = {}
    for label in ("qemu stderr", "console log"):
        path = guest.logs.get(label) if hasattr(guest, "logs") else None
        if path is not None and Path(path).exists():
            texts[label] = Path(path).read_text(errors="replace")[-200_000:]
    if guest.alive:  # a dead guest has no shell to ask
        read = read_dmesg(guest)
        if read.text:
            texts["guest dmesg"] = read.text
    answers = answers or {}
    msr_w, log_w = answers.get(evidence.MSR), answers.get(evidence.KERNEL_LOG)
    return signatures.explain(texts, msr_es=msr_w.es if msr_w else None, guest_log_es=log_w.es if log_w else None)


def diagnose_error(exc: BaseException) -> str:
    """Known failure signatures in a guest error (its detail, console tail and
    QEMU stderr log): '' when none. For a guest that failed to start or died."""
    said = (("error", getattr(exc, "detail", None)), ("console", getattr(exc, "console_tail", None)))
    texts = {label: str(text) for label, text in said if text}
    for label, path in (getattr(exc, "logs", None) or {}).items():
        try:
            texts[label] = Path(path).read_text(errors="replace")[-200_000:]
        except OSError:
            continue
    return signatures.explain(texts)
