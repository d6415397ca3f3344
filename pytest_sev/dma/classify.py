"""Decide one pool size's outcome from the evidence, with a one-line reason.

Why a fixed precedence: one run can show several symptoms (a stall that ends
in I/O errors, a panic after a storm of "buffer is full"); the suite and the
nightly history need exactly one outcome per run, and the worst symptom is the
one a person must see first:

    panic > corruption > io-error > hung > stall > unproven > pressure > clean

Before any outcome: a guest whose QEMU is gone has no outcome at all. The run
raises :class:`~pytest_sev.errors.GuestDied` (``GuestPanicked`` when the
console shows the panic), so the test fails in every mode whatever the
expectation table says, and nothing is recorded into a baseline.

- panic: a ``Kernel panic - not syncing`` line (incl. the README FAQ-5 text).
- corruption: fio verify failures or dd checksum mismatches.
- io-error: block-layer I/O error lines for the disk, fio/dd errors, a load
  that exited non-zero, or FAQ 5's "Can not allocate SWIOTLB buffer earlier"
  printed as a warning (6.x) instead of a panic, or a failed SWIOTLB
  allocation (``alloc_failures``: the pool under test is not what was asked).
- hung: the load did not finish and nothing shows the pool ran dry, or the
  guest stopped answering (its shell, QMP, or QEMU is not running the VM), or
  the kernel reported a task blocked although the load finished. A failure in
  every mode, never an expected outcome.
- stall: only with all of: QEMU alive and running the VM, QMP answering, the
  guest's shell answering, the load not finished (the stall detector fired or
  the deadline passed), and SWIOTLB evidence that the pool is exhausted
  ("swiotlb buffer is full" lines, or ``io_tlb_used`` within one largest
  mapping of the pool's size). Why the shell must answer: the load's disk is a
  scratch disk, so a SWIOTLB stall leaves the shell free (measured: every 1M
  stall here kept answering); a silent shell is a different failure.
- unproven: it would be clean or pressure, but nothing proves the DMA went
  through the pool at the requested size (:mod:`.bounce`), or nothing proves
  the written data was read back and checked (fio's verify pass, every dd
  pass): a failure in every mode, never an expected outcome.
- pressure: completed and verified, but "swiotlb buffer is full" was seen.
- clean: completed, verified, no "buffer is full".
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_sev.dma.bounce import BounceEvidence
from pytest_sev.dma.debugfs import SwiotlbCounters
from pytest_sev.dma.kmsg import KernelReport, io_errors_for
from pytest_sev.dma.load import LoadResult
from pytest_sev.dma.sizes import SLAB_BYTES
from pytest_sev.dma.stall import FINISHED
from pytest_sev.errors import GuestDied, GuestPanicked

OUTCOMES = ("clean", "pressure", "unproven", "stall", "hung", "io-error", "corruption", "panic")  # mild -> severe
#: what QMP's query-status says of a VM that executes
RUNNING_STATUS = "running"
#: IO_TLB_SEGSIZE: slots of the largest single mapping; a pool with fewer free is at its limit
SEGMENT_SLOTS = 128


def severity(outcome: str) -> int:
    return OUTCOMES.index(outcome)


@dataclass(frozen=True)
class Classification:
    outcome: str
    reason: str

    def __str__(self) -> str:
        return f"{self.outcome}: {self.reason}"


@dataclass(frozen=True)
class Observed:
    """How the guest and the load ended, as the runner saw them.

    Plain values, so the stall rule is decided here (and tested without a
    guest) while the runner only gathers. The defaults describe a guest that
    is alive, answering and whose load finished (a caller that only parses).
    """

    detector: str = FINISHED  # the stall detector's end state (running / finished / stalled)
    ended: str = ""  # why the sampling stopped without a finish (detector reason, deadline)
    qemu_alive: bool = True
    qmp_status: str | None = RUNNING_STATUS  # query-status "status"; None: QMP did not answer
    qmp_problem: str = ""  # why QMP gave no status
    shell_problem: str = ""  # why the guest's shell stopped answering ("" while it answers)
    peak_used: int | None = None  # highest io_tlb_used sampled during the load
    counters: SwiotlbCounters | None = None  # debugfs read after the load


def _speed(result: LoadResult) -> str:
    if result.mib_s is None:
        return ""
    return f" at {result.mib_s:.1f} MiB/s"  # pragma: no mutate, message text only


def _full_detail(k: KernelReport) -> str:
    n = k.full_count
    s = f"{n} 'swiotlb buffer is full' message{'s' if n != 1 else ''}"  # pragma: no mutate, message text only
    if k.full_suppressed:
        s += f" (+{k.full_suppressed} suppressed)"  # pragma: no mutate, message text only
    if k.full:
        biggest = max(e.size for e in k.full)  # pragma: no mutate, message text only
        s += f", largest mapping {biggest} B"  # pragma: no mutate, message text only
        with_used = [e for e in k.full if e.used is not None and e.total]  # pragma: no mutate, message text only
        if with_used:
            top = max(with_used, key=lambda e: e.used or 0)  # pragma: no mutate, message text only
            s += f", used up to {top.used}/{top.total} slots"  # pragma: no mutate, message text only
    elif k.out_of_space:
        s += f", largest mapping {max(k.out_of_space)} B"  # pragma: no mutate, message text only
    return s


def pool_slots(kernel: KernelReport, counters: SwiotlbCounters | None) -> int | None:
    """The pool's size in slots as the kernel reports it (debugfs first: exact); None when unknown."""
    if counters is not None and counters.nslabs:
        return counters.nslabs
    reported = kernel.reported_pool_bytes
    return None if reported is None else reported // SLAB_BYTES


def used_peak(seen: Observed) -> int | None:
    """The highest pool use seen: sampled during the load, the kernel's hiwater, the last read."""
    c = seen.counters
    hiwater, last = (c.used_hiwater, c.used) if c is not None else (None, None)
    values = [v for v in (seen.peak_used, hiwater, last) if v is not None]
    return max(values) if values else None


def exhaustion(kernel: KernelReport, seen: Observed) -> str | None:
    """Why the pool counts as exhausted, or None when nothing shows it."""
    if kernel.exhausted:
        return _full_detail(kernel)
    used, slots = used_peak(seen), pool_slots(kernel, seen.counters)
    if used and slots and used + SEGMENT_SLOTS >= slots:
        return f"io_tlb_used reached {used} of {slots} slots (less than one largest mapping free)"
    return None


def not_alive(seen: Observed) -> str:
    """Why the guest cannot be the subject of a stall ("" when it is alive and answering)."""
    if seen.qmp_status is None:
        return f"QEMU's monitor does not answer ({seen.qmp_problem or 'no reply'}): the VM is frozen"
    if seen.qmp_status != RUNNING_STATUS:
        return f"QEMU does not run the VM (query-status: {seen.qmp_status})"
    if seen.shell_problem:
        return f"the guest's shell stopped answering ({seen.shell_problem})"
    return ""


def died(kernel: KernelReport, dev: str | None) -> GuestDied:
    """The error of a run whose QEMU is gone: named by the panic when the console shows one."""
    where = f"the DMA load on {dev or 'the disk'}"  # pragma: no mutate, message text only
    if kernel.panics:
        return GuestPanicked(f"guest kernel panicked during {where}: {kernel.panics[0]}")
    return GuestDied(f"QEMU exited while waiting for {where} to finish: a dead guest is no stall")


def classify(
    kernel: KernelReport,
    result: LoadResult | None,
    *,
    observed: Observed | None = None,
    dev: str | None = None,
    bounce: BounceEvidence | None = None,
) -> Classification:
    """Classify one run.

    ``kernel``: parsed dmesg of this boot (or the console's panics when dmesg
    could not be read). ``result``: the parsed result files, or None if they
    were not read. ``observed``: how the guest and the load ended (default: a
    live guest whose load finished). ``dev``: the disk under test, to ignore
    I/O errors of other disks. ``bounce``: the proof that the pool was used; a
    clean or pressure run without it is ``unproven`` (None: not judged, for
    callers that only parse). Raises ``GuestDied`` when QEMU is gone.
    """
    seen = observed or Observed()
    if not seen.qemu_alive:
        raise died(kernel, dev)
    c = _classify(kernel, result, seen, dev)
    if bounce is not None and c.outcome in ("clean", "pressure") and not bounce.proven:
        return Classification("unproven", f"would be {c.outcome} ({c.reason}), but bouncing is not proven: "
                              + "; ".join(bounce.problems))
    return c


def _classify(kernel: KernelReport, result: LoadResult | None, seen: Observed,
              dev: str | None) -> Classification:
    if kernel.panics:
        msg = kernel.panics[0]
        faq5 = " (README FAQ 5: set an explicit swiotlb=)" if kernel.early_alloc_failure else ""
        return Classification("panic", f"kernel panic: {msg}{faq5}")
    if result is not None and result.verify_failures:
        return _corruption(result)
    error = _io_error(kernel, result, dev)
    if error is not None:
        return error
    if seen.detector == FINISHED or (result is not None and result.finished):
        return _finished(kernel, result, seen)
    return _unfinished(kernel, seen)


def _corruption(result: LoadResult) -> Classification:
    if result.dd is not None and result.dd.mismatches:
        p = result.dd.mismatches[0]
        return Classification(
            "corruption",
            f"{len(result.dd.mismatches)} dd pass(es) read back wrong data "
            f"(worker {p.worker} pass {p.pass_no} bs {p.read_bs_k}K: md5 {p.got} != {p.expected})",
        )
    first = (result.error_lines or ["no detail"])[0]
    return Classification("corruption", f"fio verify failed {result.verify_failures} time(s): {first}")


def _io_error(kernel: KernelReport, result: LoadResult | None, dev: str | None) -> Classification | None:
    ioerrs = io_errors_for(kernel, dev) if dev else kernel.io_errors
    if ioerrs:
        return Classification("io-error", f"{len(ioerrs)} kernel I/O error line(s), first: {ioerrs[0].line}")
    if kernel.early_alloc_failure:
        return Classification(
            "io-error", "kernel has no SWIOTLB pool ('Can not allocate SWIOTLB buffer earlier', README FAQ 5)"
        )
    if kernel.alloc_failures:
        return Classification("io-error", f"the kernel failed a SWIOTLB allocation: {kernel.alloc_failures[0]}")
    if result is not None and result.io_errors:
        first = (result.error_lines or ["no detail"])[0]
        return Classification("io-error", f"{result.tool} reported {result.io_errors} I/O error(s): {first}")
    if result is not None and result.rc:
        return Classification("io-error", f"{result.tool} exited with status {result.rc}")
    return None


def _finished(kernel: KernelReport, result: LoadResult | None, seen: Observed) -> Classification:
    """The load finished: verified and how hard the pool was pressed, or why that is not known."""
    if result is None:
        if seen.shell_problem:
            return Classification("hung", f"the load finished, then the guest's shell stopped answering "
                                  f"before its results were read ({seen.shell_problem})")
        return Classification("unproven", "the load finished but its results were not read")
    if not result.finished:
        return Classification("unproven", "the load finished but its result files hold no exit status")
    if kernel.hung_tasks:
        h = kernel.hung_tasks[0]
        return Classification("hung", f"load finished but task {h.task}:{h.pid} was blocked for more than "
                              f"{h.seconds}s (the kernel's hung-task report)")
    why = result.unverified()
    if why is not None:
        return Classification("unproven", f"load finished but its data check is not proven ({why})")
    if kernel.exhausted:
        return Classification("pressure", f"completed{_speed(result)}, verified; {_full_detail(kernel)}")
    return Classification("clean", f"completed{_speed(result)}, verified, no 'swiotlb buffer is full'")


def _unfinished(kernel: KernelReport, seen: Observed) -> Classification:
    """The load did not finish: a stall only for a live guest with a pool shown exhausted."""
    gone = not_alive(seen)
    ended = seen.ended or "the load did not finish"  # pragma: no mutate, message text only
    if gone:
        return Classification("hung", f"{ended}; {gone}")
    evidence = exhaustion(kernel, seen)
    if evidence is None:
        used, slots = used_peak(seen), pool_slots(kernel, seen.counters)
        return Classification("hung", f"{ended}; no SWIOTLB evidence that the pool ran dry (no 'swiotlb "
                              f"buffer is full', io_tlb_used peak {used} of {slots} slots)")
    return Classification("stall", f"{ended}; {evidence}")
