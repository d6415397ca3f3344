"""Decide one pool size's outcome from the evidence, with a one-line reason.

Why a fixed precedence: one run can show several symptoms (a stall that ends
in I/O errors, a panic after a storm of "buffer is full"); the suite and the
nightly history need exactly one outcome per run, and the worst symptom is the
one a person must see first:

    panic > corruption > io-error > stall > unproven > pressure > clean

- panic: a ``Kernel panic - not syncing`` line (incl. the README FAQ-5 text).
- corruption: fio verify failures or dd checksum mismatches.
- io-error: block-layer I/O error lines for the disk, fio/dd errors, a load
  that ended without a verifiable result, or FAQ 5's "Can not allocate
  SWIOTLB buffer earlier" printed as a warning (6.x) instead of a panic.
- stall: the stall detector fired, the load never finished, or the kernel
  reported a hung task.
- unproven: it would be clean or pressure, but nothing proves the DMA went
  through the pool at the requested size (:mod:`.bounce`): a failure in
  every mode, never an expected outcome.
- pressure: completed and verified, but "swiotlb buffer is full" was seen.
- clean: completed, verified, no "buffer is full".

The kernel's SWIOTLB allocation failures (``alloc_failures``: "swiotlb:
failed to allocate ...", a dynamic pool that could not grow) are an
io-error: the pool under test is not what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_sev.dma.bounce import BounceEvidence
from pytest_sev.dma.kmsg import KernelReport, io_errors_for
from pytest_sev.dma.load import LoadResult

OUTCOMES = ("clean", "pressure", "unproven", "stall", "io-error", "corruption", "panic")  # mild -> severe


def severity(outcome: str) -> int:
    return OUTCOMES.index(outcome)


@dataclass(frozen=True)
class Classification:
    outcome: str
    reason: str

    def __str__(self) -> str:
        return f"{self.outcome}: {self.reason}"


def _speed(result: LoadResult | None) -> str:
    if result is None or result.mib_s is None:
        return ""
    return f" at {result.mib_s:.1f} MiB/s"


def _full_detail(k: KernelReport) -> str:
    n = k.full_count
    s = f"{n} 'swiotlb buffer is full' message{'s' if n != 1 else ''}"
    if k.full_suppressed:
        s += f" (+{k.full_suppressed} suppressed)"
    if k.full:
        biggest = max(e.size for e in k.full)
        s += f", largest mapping {biggest} B"
        with_used = [e for e in k.full if e.used is not None and e.total]
        if with_used:
            top = max(with_used, key=lambda e: e.used or 0)
            s += f", used up to {top.used}/{top.total} slots"
    elif k.out_of_space:
        s += f", largest mapping {max(k.out_of_space)} B"
    return s


def classify(
    kernel: KernelReport,
    result: LoadResult | None,
    *,
    stalled: bool = False,
    stall_reason: str = "",
    dev: str | None = None,
    bounce: BounceEvidence | None = None,
) -> Classification:
    """Classify one run.

    ``kernel``: parsed console log and/or dmesg of this boot. ``result``: the
    parsed result files, or None if they could not be read (guest dead or
    shell hung). ``stalled``/``stall_reason``: from the stall detector.
    ``dev``: the disk under test, to ignore I/O errors of other disks.
    ``bounce``: the proof that the pool was used; a clean or pressure run
    without it is ``unproven`` (None: not judged, for callers that only
    parse).
    """
    c = _classify(kernel, result, stalled=stalled, stall_reason=stall_reason, dev=dev)
    if bounce is not None and c.outcome in ("clean", "pressure") and not bounce.proven:
        return Classification("unproven", f"would be {c.outcome} ({c.reason}), but bouncing is not proven: "
                              + "; ".join(bounce.problems))
    return c


def _classify(kernel: KernelReport, result: LoadResult | None, *, stalled: bool, stall_reason: str,
              dev: str | None) -> Classification:
    if kernel.panics:
        msg = kernel.panics[0]
        faq5 = " (README FAQ 5: set an explicit swiotlb=)" if kernel.early_alloc_failure else ""
        return Classification("panic", f"kernel panic: {msg}{faq5}")

    if result is not None and result.verify_failures:
        if result.dd is not None and result.dd.mismatches:
            p = result.dd.mismatches[0]
            return Classification(
                "corruption",
                f"{len(result.dd.mismatches)} dd pass(es) read back wrong data "
                f"(worker {p.worker} pass {p.pass_no} bs {p.read_bs_k}K: md5 {p.got} != {p.expected})",
            )
        first = (result.error_lines or ["no detail"])[0]
        return Classification("corruption", f"fio verify failed {result.verify_failures} time(s): {first}")

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
    if result is not None and result.finished:
        if result.rc:
            return Classification("io-error", f"{result.tool} exited with status {result.rc}")
        why = result.unverified()
        if why is not None:
            return Classification("io-error", f"load finished but left no verifiable result ({why})")

    if stalled:
        return Classification("stall", stall_reason or "stall detector fired: no I/O progress")
    if result is None or not result.finished:
        return Classification("stall", "load did not finish and its results could not be read"
                              if result is None else "load did not finish")
    if kernel.hung_tasks:
        h = kernel.hung_tasks[0]
        return Classification("stall", f"load finished but task {h.task}:{h.pid} was blocked for more than {h.seconds}s")

    if kernel.exhausted:
        return Classification("pressure", f"completed{_speed(result)}, verified; {_full_detail(kernel)}")
    return Classification("clean", f"completed{_speed(result)}, verified, no 'swiotlb buffer is full'")
