"""Run the DMA load on one guest and classify what happened (the I/O half).

The guest-side commands and every parser come from the pure modules of this
package, and the verdict from :func:`.classify.classify`; this module only
gathers: pick the tool, start the load in the background, sample progress
until the load finishes, the stall detector fires, the shell stops answering
or an overall deadline passes; then gather the kernel messages, the SWIOTLB
counters, the virtio feature bits and the load's own result, see whether the
guest is still there (QEMU alive; for a load that did not finish, QMP's
``query-status``), judge whether the DMA provably went through the pool
(:mod:`.bounce`), and hand it all over as plain values
(:class:`.classify.Observed`). Every wait is bounded, so a guest
whose I/O is wedged costs the stall time, never the test timeout.

A QEMU that died is never an outcome: the run raises ``GuestDied`` (with the
console tail, argv and logs), so no expectation and no baseline can take it
for a stall.

Kernel messages come from ``dmesg`` with its exit status checked. The serial
console is never read for them: the load ran ``dmesg -n 1``, which hid the
warnings there. Only when dmesg could not be read is the console tail
searched, for a panic (a panic raises the console level).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from pytest_sev.deadline import Deadline
from pytest_sev.dma import bounce, debugfs, kmsg, load
from pytest_sev.dma.classify import RUNNING_STATUS, Observed, classify
from pytest_sev.dma.sizes import PoolSize
from pytest_sev.dma.stall import FINISHED, RUNNING, StallDetector
from pytest_sev.errors import GuestDied, GuestError
from pytest_sev.model.protocol import GuestLike as Guest
from pytest_sev.qemu.qmp import ExecuteError
from pytest_sev.sev.evidence import judge_dmesg

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 30.0  # is fio there?
START_TIMEOUT = 60.0  # the start command returns at once: the load runs in the background
PROGRESS_TIMEOUT = 10.0  # one progress sample; a shell that cannot answer in this is silent
QMP_TIMEOUT = 5.0  # query-status after the load; a monitor that cannot answer in this is frozen
EVIDENCE_TIMEOUT = 30.0  # dmesg, debugfs, features
RESULT_TIMEOUT = 60.0
CONSOLE_TAIL_BYTES = 200_000  # searched for a panic when dmesg could not be read


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
    guest_wedged: bool = False  # the guest's shell stopped answering
    bounce: bounce.BounceEvidence | None = None
    kernel_log_reason: str = ""  # why dmesg gave no log ("" when it did)
    kernel_text: str = ""  # dmesg as read (for failure signatures)
    observed: Observed | None = None  # how the guest and the load ended


@dataclass
class _Sampling:
    """What the progress samples showed."""

    detector: StallDetector
    peak: int | None = None
    samples: list[str] = field(default_factory=list)
    shell_problem: str = ""


@dataclass
class _Evidence:
    """What the guest said after the load (all None when its shell could not be asked)."""

    kernel_text: str | None = None
    kernel_reason: str = "the guest's shell does not answer: dmesg not run"  # "" once dmesg was read
    counters: debugfs.SwiotlbCounters | None = None
    features: dict[str, tuple[int, str]] | None = None
    result: load.LoadResult | None = None


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _sample(guest: Guest, dev: str, spec: load.LoadSpec, deadline: Deadline, stall_seconds: float,
            sample_every: float, conclusive_seconds: float | None = None) -> _Sampling:
    """Sample progress until finished, stalled, the deadline, or a shell that does not answer.

    A GuestDied (QEMU gone, a panic) propagates: it is the run's result. Any
    other guest error ends the sampling: the guest is unusable, a later
    sample would not be answered either.
    """
    s = _Sampling(StallDetector(stall_seconds, conclusive_seconds))
    while s.detector.state == RUNNING and not deadline.expired:
        try:
            # the pool-full count is read only while no I/O completes: the detector uses it for nothing else
            count = s.detector.idle_seconds() > 0
            out, _ = guest.run(load.progress_command(dev, spec.workdir, count_pool_full=count),
                               timeout=PROGRESS_TIMEOUT)
        except GuestDied:
            raise
        except GuestError as exc:
            s.shell_problem = _first_line(exc)
            return s
        try:
            progress = load.parse_progress(out)
        except ValueError:  # the shell answered, but no progress line: nothing seen to move
            s.detector.observe_silence(time.monotonic())
        else:
            s.samples.append(out.strip().splitlines()[-1])
            if progress.swiotlb_used is not None:
                s.peak = max(s.peak or 0, progress.swiotlb_used)
            s.detector.observe(progress.sample(time.monotonic()))
        if s.detector.state == RUNNING:
            time.sleep(sample_every)
    return s


def _gather(guest: Guest, spec: load.LoadSpec, tool: str, finished: bool) -> tuple[_Evidence, str]:
    """Ask the guest for the evidence: (what it said, why its shell stopped answering or "")."""
    ev = _Evidence()
    try:
        out, status = guest.run("dmesg", timeout=EVIDENCE_TIMEOUT)
        read = judge_dmesg(out, status)
        ev.kernel_text, ev.kernel_reason = read.text, read.reason
        ev.counters = debugfs.parse_debugfs(guest.run(debugfs.dump_command(), timeout=EVIDENCE_TIMEOUT)[0])
        ev.features = bounce.parse_features(guest.run(bounce.features_command(), timeout=EVIDENCE_TIMEOUT)[0])
        if finished:
            ev.result = load.parse_result(guest.run(load.result_command(spec.workdir), timeout=RESULT_TIMEOUT)[0])
            if tool == "dd":
                ev.result.expected_dd_passes = spec.dd.workers * spec.dd.passes
    except GuestDied:
        raise
    except GuestError as exc:
        return ev, _first_line(exc)
    return ev, ""


def _qmp_status(guest: Guest) -> tuple[str | None, str]:
    """QMP's ``query-status`` status, or (None, why QMP did not answer)."""
    qmp = guest.qmp
    if qmp is None:
        return None, "no QMP connection"
    try:
        try:
            reply = qmp.execute("query-status", timeout=QMP_TIMEOUT)
        except ExecuteError:  # it answered, refusing the argument (libvirt's passthrough takes no timeout)
            reply = qmp.execute("query-status")
    except Exception as exc:  # noqa: BLE001 - QMPLost, a broken connection: no answer either way
        return None, _first_line(exc)
    return str(reply.get("status")), ""


def _kernel_report(guest: Guest, text: str | None) -> kmsg.KernelReport:
    """dmesg parsed; without it, only the panics the console shows (all else is unknown)."""
    if text is not None:
        return kmsg.parse_kmsg(text)
    report = kmsg.KernelReport()
    if guest.console is not None:
        report.panics = kmsg.parse_kmsg(guest.console.tail(CONSOLE_TAIL_BYTES)).panics
    return report


def _ended(detector: StallDetector, deadline: Deadline) -> str:
    """Why the sampling stopped without a finish ("" when the load finished or the shell went silent)."""
    if detector.state != RUNNING:
        return detector.reason
    if deadline.expired:
        return f"load still running after the {deadline.seconds:g}s deadline"
    return ""


def run_dma_load(guest: Guest, dev: str, *, stall_seconds: float = 20.0,
                 conclusive_seconds: float | None = None,
                 deadline_seconds: float = 300.0, sample_every: float = 2.0,
                 spec: load.LoadSpec | None = None, size: PoolSize | None = None,
                 kind: str = "plain-forced", bus: str = "virtio-blk") -> DmaRun:
    """Run the load on ``dev``; with ``size`` the outcome must also prove bouncing
    (``kind``: plain-forced | sev | sev-es | sev-snp, ``bus``: the device under test).
    ``conclusive_seconds``: decide a stall after this many idle seconds when
    the kernel says the pool is full (:class:`~pytest_sev.dma.stall.StallDetector`).
    Raises GuestDied when QEMU is gone (never an outcome)."""
    deadline = Deadline(deadline_seconds)
    tool = load.parse_probe(guest.run(load.probe_command(), timeout=PROBE_TIMEOUT)[0])
    spec = replace(spec or load.LoadSpec(), tool=tool)  # type: ignore[arg-type]  # parse_probe says fio|dd  # the tool the guest has
    guest.check(load.start_command(dev, spec), timeout=START_TIMEOUT)
    sampled = _sample(guest, dev, spec, deadline, stall_seconds, sample_every, conclusive_seconds)
    finished = sampled.detector.state == FINISHED
    shell_problem = sampled.shell_problem
    ev = _Evidence()
    if guest.alive and not shell_problem:
        ev, shell_problem = _gather(guest, spec, tool, finished)
    alive = guest.alive
    # QMP decides only whether an unfinished load can be a stall
    status, qmp_problem = (RUNNING_STATUS, "") if finished else _qmp_status(guest)
    report = _kernel_report(guest, ev.kernel_text)
    proof = None
    if size is not None:
        proof = bounce.judge(size, kind, bus, kernel=report if ev.kernel_text is not None else None,
                             kernel_log_reason=ev.kernel_reason, counters=ev.counters, peak_used=sampled.peak,
                             features=ev.features)
    seen = Observed(detector=sampled.detector.state, ended=_ended(sampled.detector, deadline), qemu_alive=alive,
                    qmp_status=status, qmp_problem=qmp_problem, shell_problem=shell_problem,
                    peak_used=sampled.peak, counters=ev.counters)
    try:
        verdict = classify(report, ev.result, observed=seen, dev=dev, bounce=proof)
    except GuestDied as exc:  # the rule's error, with what a person needs to see why
        tail = guest.console.tail() if guest.console is not None else ""
        raise type(exc)(exc.what, console_tail=tail, argv=guest.argv, logs=guest.logs,
                        detail=f"guest {guest.spec.name}: {len(sampled.samples)} progress sample(s), "
                        f"last: {(sampled.samples or ['none'])[-1]}") from None
    log.info("%s: DMA load on %s: %s after %.1f s", guest.spec.name, dev, verdict, deadline.elapsed)  # pragma: no mutate, log only
    return DmaRun(tool=tool, outcome=verdict.outcome, reason=verdict.reason, result=ev.result,
                  kernel=report, counters=ev.counters, peak_used_slots=sampled.peak,
                  seconds=deadline.elapsed, samples=sampled.samples, guest_wedged=bool(shell_problem),
                  bounce=proof, kernel_log_reason=ev.kernel_reason,
                  kernel_text=ev.kernel_text or "", observed=seen)
