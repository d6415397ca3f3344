"""Run the DMA load on one guest and classify what happened (the I/O half).

The guest-side commands and every parser come from the pure modules of this
package; this module only drives them: pick the tool, start the load in the
background, sample progress until the load finishes or the stall detector
fires (or an overall deadline passes), then gather the kernel messages, the
SWIOTLB counters, the virtio feature bits and the load's own result, and
judge whether the DMA provably went through the pool (:mod:`.bounce`).
Every wait is bounded, so a guest whose I/O is wedged costs the stall time,
never the test timeout.

Kernel messages come from ``dmesg`` with its exit status checked. The serial
console is never read for them: the load ran ``dmesg -n 1``, which hid the
warnings there. Only a guest that died (a panic raises the console level) has
its console tail searched, for the panic.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from pytest_sev.deadline import Deadline
from pytest_sev.dma import bounce, debugfs, kmsg, load
from pytest_sev.dma.classify import classify
from pytest_sev.dma.sizes import PoolSize
from pytest_sev.dma.stall import FINISHED, RUNNING, STALLED, StallDetector
from pytest_sev.errors import GuestError
from pytest_sev.guest.protocol import GuestLike as Guest
from pytest_sev.sev.evidence import judge_dmesg

log = logging.getLogger(__name__)

PROGRESS_TIMEOUT = 10.0  # one progress sample; a shell that cannot answer is silence


@dataclass
class DmaRun:
    tool: str
    outcome: str
    reason: str
    result: load.LoadResult | None
    kernel: kmsg.KernelReport
    counters: debugfs.SwiotlbCounters | None
    peak_used_slots: int | None
    seconds: float
    samples: list[str] = field(default_factory=list)
    guest_wedged: bool = False
    bounce: bounce.BounceEvidence | None = None
    kernel_log_reason: str = ""  # why dmesg gave no log ("" when it did)
    kernel_text: str = ""  # dmesg as read (for failure signatures)


def run_dma_load(guest: Guest, dev: str, *, stall_seconds: float = 20.0,
                 deadline_seconds: float = 300.0, sample_every: float = 2.0,
                 spec: load.LoadSpec | None = None, size: PoolSize | None = None,
                 kind: str = "plain-forced", bus: str = "virtio-blk") -> DmaRun:
    """Run the load on ``dev``; with ``size`` the outcome must also prove bouncing
    (``kind``: plain-forced | sev | sev-es, ``bus``: the device under test)."""
    deadline = Deadline(deadline_seconds)
    tool = load.parse_probe(guest.run(load.probe_command(), timeout=30)[0])
    spec = replace(spec or load.LoadSpec(), tool=tool)  # type: ignore[arg-type]  # parse_probe says fio|dd  # the tool the guest has
    guest.check(load.start_command(dev, spec), timeout=60)
    detector = StallDetector(stall_seconds)
    peak: int | None = None
    samples: list[str] = []
    wedged = False
    while detector.state == RUNNING:
        if deadline.expired:
            break
        try:
            out, _ = guest.run(load.progress_command(dev, spec.workdir), timeout=PROGRESS_TIMEOUT)
            progress = load.parse_progress(out)
            samples.append(out.strip().splitlines()[-1] if out.strip() else "")
            if progress.swiotlb_used is not None:
                peak = max(peak or 0, progress.swiotlb_used)
            detector.observe(progress.sample(time.monotonic()))
        except (GuestError, ValueError) as exc:
            if not guest.alive:
                break
            wedged = wedged or isinstance(exc, GuestError)
            detector.observe_silence(time.monotonic())
        if detector.state == RUNNING:
            time.sleep(sample_every)
    stalled = detector.state == STALLED
    reason = detector.reason if stalled else ""
    if detector.state == RUNNING:  # still moving at the deadline: a very slow run
        stalled, reason = True, f"load still running after the {deadline_seconds:g}s deadline"
    kernel_text: str | None = None
    kernel_reason = "guest dead or its shell wedged: dmesg not run"
    counters, result, features = None, None, None
    if guest.alive and not wedged:
        try:
            out, status = guest.run("dmesg", timeout=30)
            read = judge_dmesg(out, status)
            kernel_text, kernel_reason = read.text, read.reason
            counters = debugfs.parse_debugfs(guest.run(debugfs.dump_command(), timeout=30)[0])
            features = bounce.parse_features(guest.run(bounce.features_command(), timeout=30)[0])
            if detector.state == FINISHED:
                result = load.parse_result(guest.run(load.result_command(spec.workdir), timeout=60)[0])
                if tool == "dd":
                    result.expected_dd_passes = spec.dd.workers * spec.dd.passes
        except GuestError:
            wedged = True
    if kernel_text is not None:
        report = kmsg.parse_kmsg(kernel_text)
    else:
        report = kmsg.KernelReport()
        if not guest.alive and guest.console:  # a dead guest: its panic reached the console
            report.panics = kmsg.parse_kmsg(guest.console.tail(200_000)).panics
    proof = None
    if size is not None:
        proof = bounce.judge(size, kind, bus, kernel=report if kernel_text is not None else None,
                             kernel_log_reason=kernel_reason, counters=counters, peak_used=peak,
                             features=features)
    verdict = classify(report, result, stalled=stalled, stall_reason=reason, dev=dev.rsplit("/", 1)[-1],
                       bounce=proof)
    log.info("%s: DMA load on %s: %s (%s) after %.1f s", guest.spec.name, dev, verdict.outcome,
             verdict.reason, deadline.elapsed)
    return DmaRun(tool=tool, outcome=verdict.outcome, reason=verdict.reason, result=result,
                  kernel=report, counters=counters, peak_used_slots=peak,
                  seconds=deadline.elapsed, samples=samples, guest_wedged=wedged, bounce=proof,
                  kernel_log_reason="" if kernel_text is not None else kernel_reason,
                  kernel_text=kernel_text or "")
