"""The DMA runner (pytest_sev.proofs.dma_run) driven by a guest double: no QEMU.

Injected faults of issue 21: a QEMU that dies after the load started raises
GuestDied in every mode (the sev-es / virtio-blk / 1M row included, where the
table expects ``stall``); a silent guest without SWIOTLB evidence is ``hung``;
a live guest whose pool is full and whose load does not move is ``stall``.
The double answers the runner's own command strings: progress lines in the
``DMAPROG`` format of :mod:`pytest_sev.dma.load`, the captured fio result
``loop-fio-write-verify`` and dd result ``loop-dd-clean`` (fixtures/recorded/dma,
README.md there), the 6.1 wording of "swiotlb buffer is full".
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from qemu.qmp import ExecuteError
from qemu.qmp.message import Message
from qemu.qmp.models import ErrorResponse

from pytest_sev.dma.ddload import DdSpec
from pytest_sev.dma.expectations import load_expectations
from pytest_sev.dma.load import LoadSpec
from pytest_sev.dma.sizes import parse_size
from pytest_sev.dma.stall import FINISHED, RUNNING, STALLED
from pytest_sev.errors import GuestDied, GuestError, GuestPanicked, GuestTimeout, GuestUnusable, QMPLost
from pytest_sev.proofs import dma_run as runner
from pytest_sev.proofs.dma_run import run_dma_load

DMA = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"
FULL = "[  30.1] virtio_blk virtio1: swiotlb buffer is full (sz: 262144 bytes), total 512 (slots), used 457 (slots)\n"
DMESG_1M = "[    0.5] software IO TLB: area num 2.\n" + FULL * 3
PANIC = "[  31.0] Kernel panic - not syncing: Fatal exception in interrupt\n"
IOERR_VDA = "[  30.2] I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2\n"
IOERR_VDB = "[  30.2] I/O error, dev vdb, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2\n"
AP_BITS = "".join("1" if i in (1, 2, 32, 33) else "0" for i in range(64))
FEATURES = f"VIRTIOFEAT virtio1 0x0002 {AP_BITS}\nVIRTIOFEAT-END\n"
FIO_RESULT = (DMA / "loop-fio-write-verify.result.txt").read_text()
DD_RESULT = (DMA / "loop-dd-clean.result.txt").read_text()
RUNNING_REPLY = {"status": "running", "running": True}


def prog(sectors: int, *, used: int | str = "", finished: bool = False, started: bool = True,
         full: int | None = None) -> str:
    """One progress answer, as progress_command prints it (the command echo first); ``full``:
    the "swiotlb buffer is full" lines since the load started (None: an older guest's line)."""
    stat = f"1 0 {sectors} 0 1 0 0 0 1 0 0 0 0 0 0 0 0"
    tail = "" if full is None else f"|{full}"
    return (f'awk \'...END{{s="DMAPROG";...print s"|END"}}\'\nDMAPROG|30.0 20.0|{stat}|{used}|'
            f"{'20.0 10.0' if started else ''}|{'0' if finished else ''}{tail}|END\n")


def die(guest: LoadGuest) -> None:
    """QEMU exits under the command, as Guest.run reports it."""
    guest.alive = False
    raise GuestDied("QEMU exited while waiting for command 'awk \\'...s=\"DMAPROG\"...' to finish")


def freeze(guest: LoadGuest) -> None:
    """The VM stops (SIGSTOP): the sample times out, QMP stops answering."""
    guest.qmp.reply = QMPLost("QMP lost: no answer to 'query-status' (TimeoutError)")
    raise GuestTimeout("timed out after 10s waiting for command 'awk \\'...s=\"DMAPROG\"...' to finish")


class FakeQmp:
    def __init__(self, reply):
        self.reply = reply  # a dict, or an exception to raise
        self.calls: list[tuple[str, dict]] = []

    def execute(self, cmd: str, **args):
        self.calls.append((cmd, args))
        if isinstance(self.reply, BaseException):
            raise self.reply
        return self.reply


class LibvirtLikeQmp(FakeQmp):
    """libvirt's monitor passthrough: no timeout parameter, QEMU refuses an unknown argument."""

    def execute(self, cmd: str, **args):
        if args:
            self.calls.append((cmd, args))
            sent = {"execute": cmd, "arguments": args}
            reply = {"error": {"class": "GenericError", "desc": "Parameter 'timeout' is unexpected"}}
            raise ExecuteError(ErrorResponse(reply), Message(sent), Message(reply))
        return super().execute(cmd)


class FakeConsole:
    def __init__(self, text: str = ""):
        self.text = text
        self.asked: list[int | None] = []

    def tail(self, nbytes: int | None = None) -> str:
        self.asked.append(nbytes)
        return self.text


class LoadGuest:
    """A GuestLike double for run_dma_load.

    ``progress``: one item per sample, the last repeats; an item is a progress
    answer, an exception to raise, or a function of the guest (a fault).
    ``faults``: {command kind: exception or function} for the other commands.
    """

    def __init__(self, progress, *, dmesg=(DMESG_1M, 0), nslabs=512, used=0, features=FEATURES,
                 result=FIO_RESULT, tool="fio", qmp=None, console="", faults=None):
        self.spec = SimpleNamespace(name="dma-double")
        self.argv = ["qemu-system-x86_64", "-name", "dma-double"]
        self.logs = {"console log": Path("/nonexistent/dma-double/console.log")}
        self.alive = True
        self.console = FakeConsole(console)
        self.qmp = qmp if qmp is not None else FakeQmp(dict(RUNNING_REPLY))
        self.progress = list(progress)
        self.answers = {
            "probe": (f"DMATOOL {tool}\n", 0),
            "dmesg": dmesg,
            "debugfs": (f"/sys/kernel/debug/swiotlb/io_tlb_nslabs:{nslabs}\n"
                        f"/sys/kernel/debug/swiotlb/io_tlb_used:{used}\n", 0),
            "features": (features, 0),
            "result": (result, 0),
        }
        self.faults = dict(faults or {})
        self.calls: list[tuple[str, float]] = []
        self.commands: list[str] = []
        self.samples_asked = 0

    @staticmethod
    def kind(cmd: str) -> str:
        for needle, kind in (("command -v fio", "probe"), ("DMAPROG", "progress"), ("swiotlb/*", "debugfs"),
                             ("VIRTIOFEAT", "features"), ("@@DMA", "result"), ("rm -rf $D", "start")):
            if needle in cmd:
                return kind
        return "dmesg" if cmd == "dmesg" else "other"

    def _do(self, item):
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            return item(self)
        return item

    def run(self, cmd: str, timeout: float = -1.0):  # -1: the runner gave no bound
        kind = self.kind(cmd)
        self.calls.append((kind, timeout))
        self.commands.append(cmd)
        if kind == "progress":
            item = self.progress[min(self.samples_asked, len(self.progress) - 1)]
            self.samples_asked += 1
            answer = self._do(item)
            if "full0" not in cmd:  # not asked for the pool-full count: the guest's line has no such field
                answer = re.sub(r"^(DMAPROG(?:\|[^|\n]*){5})\|-?\d*\|END$", r"\1|END", answer, flags=re.M)
            return answer, 0
        if kind in self.faults:
            return self._do(self.faults[kind])
        return self.answers.get(kind, ("", 0))

    def check(self, cmd: str, timeout: float = -1.0) -> str:
        return self.run(cmd, timeout)[0]


def go(guest, *, size="1M", kind="plain-forced", stall=0.15, deadline=30.0, spec=None, dev="/dev/vda",
       conclusive=None):
    return run_dma_load(guest, dev, stall_seconds=stall, conclusive_seconds=conclusive,
                        deadline_seconds=deadline, sample_every=0.01,
                        spec=spec or LoadSpec(tool="fio"), size=parse_size(size), kind=kind, bus="virtio-blk")


STUCK = [prog(0, used=3), prog(8, used=5), prog(8, used=4)]  # then stuck at 8 sectors
FINISHED_LOAD = [prog(100, used=7), prog(900, used=12, finished=True)]
KINDS = ("plain-forced", "sev", "sev-es")


# -- QEMU dies: GuestDied, never an outcome -----------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_qemu_dying_after_the_load_started_raises_guest_died_in_every_mode(kind):
    """The issue's fault: the sev-es / virtio-blk / 1M row expects stall; a dead guest must not be one."""
    assert load_expectations().row(kind, "virtio-blk", parse_size("1M")).outcome == "stall"
    guest = LoadGuest([prog(0, used=3), prog(8, used=5), die])
    with pytest.raises(GuestDied) as err:
        go(guest, kind=kind)
    assert "QEMU exited while waiting for command" in str(err.value)
    assert ("dmesg", runner.EVIDENCE_TIMEOUT) not in guest.calls  # nothing gathered from a dead guest


@pytest.mark.parametrize("kind", KINDS)
def test_qemu_gone_without_a_died_error_still_raises_guest_died(kind):
    """A launcher that reports the dead QEMU as another guest error (unusable): the rule decides."""
    def unusable_and_dead(g):
        g.alive = False
        raise GuestUnusable("guest dma-double is unusable: QEMU exited (signal 9)")

    guest = LoadGuest([prog(0, used=3), prog(8, used=5), unusable_and_dead], console="sev-guest# \n")
    with pytest.raises(GuestDied) as err:
        go(guest, kind=kind)
    e = err.value
    assert type(e) is GuestDied
    assert e.what == "QEMU exited while waiting for the DMA load on /dev/vda to finish: a dead guest is no stall"
    assert e.argv == guest.argv and e.logs == guest.logs and e.console_tail == "sev-guest# \n"
    assert e.detail == "guest dma-double: 2 progress sample(s), last: " + prog(8, used=5).strip().splitlines()[-1]
    assert guest.console.asked == [runner.CONSOLE_TAIL_BYTES, None]  # searched for a panic, then the tail shown


def test_qemu_dying_before_any_sample_names_no_sample():
    def dead(g):
        g.alive = False
        raise GuestError("the console closed")

    with pytest.raises(GuestDied) as err:
        go(LoadGuest([dead], console=""))
    assert err.value.detail == "guest dma-double: 0 progress sample(s), last: none"
    assert err.value.console_tail == ""


def test_qemu_dying_after_a_panic_raises_guest_panicked():
    def panicked(g):
        g.alive = False
        raise GuestError("the console closed")

    guest = LoadGuest([prog(0, used=3), panicked], console="sev-guest# \n" + PANIC)
    with pytest.raises(GuestPanicked) as err:
        go(guest, kind="sev-es")
    assert err.value.what == ("guest kernel panicked during the DMA load on /dev/vda: Fatal exception in interrupt")


def test_qemu_dying_after_the_stall_fired_raises_guest_died():
    """The stall detector fired with "buffer is full" in the guest, then QEMU went before dmesg."""
    guest = LoadGuest(STUCK, faults={"dmesg": die})
    with pytest.raises(GuestDied):
        go(guest, kind="sev-es")


def test_qemu_gone_between_sampling_and_gathering():
    guest = LoadGuest(STUCK)
    real_run = guest.run

    def run(cmd, timeout=60.0):
        out = real_run(cmd, timeout)
        if guest.kind(cmd) == "progress" and guest.samples_asked >= 4:
            guest.alive = False  # it exits right after answering (the double answers on)
        return out

    guest.run = run
    with pytest.raises(GuestDied):
        go(guest)
    assert "dmesg" not in [k for k, _ in guest.calls]


# -- silent guests: hung -------------------------------------------------------------------------

def test_silent_shell_without_evidence_is_hung():
    guest = LoadGuest([prog(0, used=0), GuestTimeout("timed out after 10s waiting for command 'x' to finish")],
                      dmesg=("[    0.5] software IO TLB: area num 2.\n", 0))
    run = go(guest)
    assert run.outcome == "hung", run.reason
    assert run.reason == ("the load did not finish; the guest's shell stopped answering "
                          "(timed out after 10s waiting for command 'x' to finish)")
    assert run.guest_wedged and run.observed.shell_problem.startswith("timed out after 10s")
    assert guest.samples_asked == 2  # the sampling ends at the first unanswered sample
    assert [k for k, _ in guest.calls].count("dmesg") == 0  # an unusable shell is not asked again
    assert run.kernel_log_reason == "the guest's shell does not answer: dmesg not run" and run.kernel_text == ""
    assert run.peak_used_slots == 0 and run.counters is None and run.result is None


def test_silent_shell_with_an_empty_message_is_named_by_its_class():
    run = go(LoadGuest([GuestTimeout("")]))
    assert run.outcome == "hung" and run.reason.endswith("shell stopped answering (GuestTimeout)")


def test_frozen_vm_is_hung_and_names_qmp():
    guest = LoadGuest([prog(0, used=300), freeze])
    run = go(guest)
    assert run.outcome == "hung", run.reason
    assert run.reason.endswith("QEMU's monitor does not answer (QMP lost: no answer to 'query-status' "
                               "(TimeoutError)): the VM is frozen")
    assert guest.qmp.calls == [("query-status", {"timeout": runner.QMP_TIMEOUT})]
    assert run.observed.qmp_status is None


def test_no_progress_without_swiotlb_evidence_is_hung():
    """The shell answers, nothing moves, the pool is far from full and nothing printed "buffer is full"."""
    guest = LoadGuest(STUCK, dmesg=("[    0.5] software IO TLB: area num 2.\n", 0), used=4)
    run = go(guest)
    assert run.outcome == "hung", run.reason
    assert run.reason.startswith("no I/O completed for ")
    assert run.reason.endswith("no SWIOTLB evidence that the pool ran dry (no 'swiotlb buffer is full', "
                               "io_tlb_used peak 5 of 512 slots)")
    assert run.observed.detector == STALLED and run.peak_used_slots == 5  # the highest sample, not the last


def test_paused_vm_is_hung():
    guest = LoadGuest(STUCK, qmp=FakeQmp({"status": "paused", "running": False}))
    run = go(guest)
    assert run.outcome == "hung" and run.reason.endswith("QEMU does not run the VM (query-status: paused)")


def test_no_qmp_connection_is_hung():
    guest = LoadGuest(STUCK)
    guest.qmp = None
    run = go(guest)
    assert run.outcome == "hung" and run.reason.endswith("QEMU's monitor does not answer (no QMP connection): "
                                                         "the VM is frozen")


def test_libvirt_monitor_answers_without_the_timeout_argument():
    qmp = LibvirtLikeQmp(dict(RUNNING_REPLY))
    run = go(LoadGuest(STUCK, qmp=qmp))
    assert run.outcome == "stall", run.reason
    assert qmp.calls == [("query-status", {"timeout": runner.QMP_TIMEOUT}), ("query-status", {})]


def test_libvirt_monitor_that_then_fails_is_silent():
    qmp = LibvirtLikeQmp(QMPLost("QMP lost: libvirt gone"))
    run = go(LoadGuest(STUCK, qmp=qmp))
    assert run.outcome == "hung" and "(QMP lost: libvirt gone)" in run.reason


def test_shell_lost_while_gathering_after_the_load_finished_is_hung():
    guest = LoadGuest(FINISHED_LOAD, faults={"result": GuestTimeout("timed out after 60s waiting for result")})
    run = go(guest)
    assert run.outcome == "hung", run.reason
    assert run.reason == ("the load finished, then the guest's shell stopped answering before its results were "
                          "read (timed out after 60s waiting for result)")
    assert run.guest_wedged and run.kernel_text.startswith("[    0.5] software IO TLB")


def test_panic_on_the_console_of_a_silent_guest_is_a_panic():
    """QEMU stays (no -no-reboot), the shell is gone: the console tail holds the panic."""
    guest = LoadGuest([prog(0, used=3), GuestTimeout("timed out")], console="sev-guest# \n" + PANIC)
    run = go(guest)
    assert run.outcome == "panic" and run.kernel.panics == ["Fatal exception in interrupt"]


# -- a live guest with a full pool: stall --------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_live_guest_with_a_full_pool_and_no_progress_is_a_stall(kind):
    guest = LoadGuest(STUCK)
    run = go(guest, kind=kind)
    assert run.outcome == "stall", run.reason
    assert run.reason.startswith("no I/O completed for ") and "stuck at 8 sectors" in run.reason
    assert "3 'swiotlb buffer is full' messages" in run.reason
    assert run.observed.qmp_status == "running" and run.observed.qemu_alive
    assert not run.guest_wedged and run.result is None  # an unfinished load's results are not read
    assert run.counters.nslabs == 512 and run.kernel.full_count == 3
    assert load_expectations().check(kind, "virtio-blk", parse_size("1M"), run.outcome).ok


def test_a_full_pool_without_progress_decides_at_the_conclusive_limit():
    """run_dma_load hands conclusive_seconds to the detector: with the kernel saying the pool
    is full during this load, the shorter limit decides; without it, the full one."""
    full = go(LoadGuest([prog(0, used=3, full=0), prog(8, used=5, full=2), prog(8, used=4, full=3)]),
              stall=0.4, conclusive=0.05)
    assert full.outcome == "stall" and "while the kernel says the SWIOTLB pool is full" in full.reason
    quiet = go(LoadGuest([prog(0, used=3, full=0), prog(8, used=5, full=0), prog(8, used=4, full=0)]),
               stall=0.4, conclusive=0.05)
    assert quiet.outcome == "stall" and "while the kernel says" not in quiet.reason


def test_pool_at_its_limit_by_the_counters_is_a_stall():
    guest = LoadGuest([prog(0, used=3), prog(8, used=450)], dmesg=("[    0.5] software IO TLB: area num 2.\n", 0))
    run = go(guest)
    assert run.outcome == "stall" and "io_tlb_used reached 450 of 512 slots" in run.reason


def test_garbled_progress_counts_as_no_progress():
    guest = LoadGuest([prog(0, used=3), "sev-guest# garbage\n"])
    run = go(guest)
    assert run.outcome == "stall" and "stuck at 0 sectors" in run.reason
    assert run.samples == [prog(0, used=3).strip().splitlines()[-1]]  # only the answered line is kept


def test_deadline_with_a_moving_load():
    moving = [prog(n) for n in range(0, 4000, 8)]
    with_full = go(LoadGuest(moving), deadline=0.3)
    assert with_full.outcome == "stall", with_full.reason
    assert with_full.reason.startswith("load still running after the 0.3s deadline; 3 ")
    assert with_full.observed.detector == RUNNING and with_full.peak_used_slots is None
    without = go(LoadGuest(moving, dmesg=("", 0)), deadline=0.3)
    assert without.outcome == "hung"
    assert without.reason.startswith("load still running after the 0.3s deadline; no SWIOTLB evidence")


def test_a_load_that_has_not_started_its_timed_part_does_not_stall():
    guest = LoadGuest([prog(0, started=False)] * 30 + [prog(8, finished=True)])
    run = go(guest, size="64M", stall=0.05)
    assert run.observed.detector == FINISHED and guest.samples_asked == 31


# -- finished loads ------------------------------------------------------------------------------

def test_finished_load_with_proof_is_pressure_and_records_everything():
    guest = LoadGuest(FINISHED_LOAD, nslabs=512)
    run = go(guest)
    assert run.outcome == "pressure", run.reason
    assert run.tool == "fio" and run.result.finished and run.result.fio.verify_problem() is None
    assert run.peak_used_slots == 12 and run.bounce.proven and run.kernel_log_reason == ""
    assert run.kernel_text == DMESG_1M and run.observed.detector == FINISHED and run.seconds > 0
    assert run.samples == [p.strip().splitlines()[-1] for p in FINISHED_LOAD]


def test_io_error_of_the_disk_under_test_only():
    ok = go(LoadGuest(FINISHED_LOAD, dmesg=(DMESG_1M + IOERR_VDB, 0)))
    assert ok.outcome == "pressure", ok.reason
    bad = go(LoadGuest(FINISHED_LOAD, dmesg=(DMESG_1M + IOERR_VDA, 0)))
    assert bad.outcome == "io-error" and "dev vda" in bad.reason


def test_dd_load_must_report_every_pass():
    spec = LoadSpec(tool="dd", dd=DdSpec(workers=4, passes=4))
    full = go(LoadGuest(FINISHED_LOAD, tool="dd", result=DD_RESULT), spec=spec)
    assert full.tool == "dd" and full.result.expected_dd_passes == 16 and full.outcome == "pressure", full.reason
    more = go(LoadGuest(FINISHED_LOAD, tool="dd", result=DD_RESULT), spec=LoadSpec(tool="fio"))  # 8 x 4 wanted
    assert more.outcome == "unproven" and "only 16 of 32 dd passes reported" in more.reason


def test_randrw_result_is_not_verified():
    run = go(LoadGuest(FINISHED_LOAD, result=(DMA / "loop-fio-clean.result.txt").read_text()))
    assert run.outcome == "unproven" and "rw=randrw" in run.reason


def test_dmesg_fault_is_named_in_the_bounce_proof():
    run = go(LoadGuest(FINISHED_LOAD, dmesg=("dmesg: klogctl: Operation not permitted\n", 1)))
    assert run.outcome == "unproven" and "permission denied" in run.reason
    assert run.kernel_log_reason and run.kernel_text == ""


def test_without_a_size_nothing_is_judged_for_bouncing():
    guest = LoadGuest(FINISHED_LOAD, features="")
    guest.qmp = None  # not asked: the load finished
    run = run_dma_load(guest, "/dev/vda", stall_seconds=0.2, deadline_seconds=30, sample_every=0)
    assert run.bounce is None and run.outcome == "pressure"
    assert run.tool == "fio"  # probed, whatever the default spec says


# -- what the runner asks, and how long it waits ---------------------------------------------------

def test_commands_and_their_bounds(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(runner.time, "sleep", slept.append)
    guest = LoadGuest(FINISHED_LOAD)
    run_dma_load(guest, "/dev/vda", stall_seconds=5, deadline_seconds=30, sample_every=0.5,
                 spec=LoadSpec(tool="dd", workdir="/tmp/elsewhere"), size=parse_size("1M"))
    assert guest.calls == [("probe", runner.PROBE_TIMEOUT), ("start", runner.START_TIMEOUT),
                           ("progress", runner.PROGRESS_TIMEOUT), ("progress", runner.PROGRESS_TIMEOUT),
                           ("dmesg", runner.EVIDENCE_TIMEOUT), ("debugfs", runner.EVIDENCE_TIMEOUT),
                           ("features", runner.EVIDENCE_TIMEOUT), ("result", runner.RESULT_TIMEOUT)]
    assert slept == [0.5]  # between samples, not after the last
    assert guest.qmp.calls == []  # a finished load needs no word from QMP
    start, progress, result = guest.commands[1], guest.commands[2], guest.commands[-1]
    assert "fio --name=dma" in start and "D=/tmp/elsewhere;" in start  # the probed tool, the given work dir
    assert "/tmp/elsewhere/rc" in progress and "/sys/block/vda/stat" in progress
    assert "cd /tmp/elsewhere" in result


def test_the_pool_full_count_is_asked_only_while_no_io_completes():
    """dmesg costs the guest two processes a sample: the runner asks for the count only
    after a sample that saw no sector complete, the only time the detector reads it."""
    guest = LoadGuest([prog(0, full=1), prog(8, full=1), prog(8, full=1), prog(8, full=1), prog(16, full=1),
                       prog(24, full=1), prog(24, full=1, finished=True)])
    run = go(guest, stall=5.0)
    asked = ["full0" in c for c in guest.commands if LoadGuest.kind(c) == "progress"]
    assert asked == [False, False, False, True, True, False, False]
    assert run.outcome != "stall"
    assert [s.endswith("|1|END") for s in run.samples] == asked


def test_every_sample_before_a_stall_is_kept_with_its_peak():
    guest = LoadGuest([prog(0, used=3), prog(8, used=9), prog(8, used=4), prog(8, used="")])
    run = go(guest)
    assert run.peak_used_slots == 9 and len(run.samples) == guest.samples_asked >= 4
    assert run.samples[1].startswith("DMAPROG|30.0 20.0|1 0 8 ")


def test_no_used_sample_leaves_no_peak():
    run = go(LoadGuest([prog(0), prog(8)]))
    assert run.peak_used_slots is None


@pytest.mark.parametrize("n", [1, 2, 3])
def test_sampling_count_follows_the_detector(n):
    answers = [prog(i * 8) for i in range(n)] + [prog(n * 8, finished=True)]
    guest = LoadGuest(answers)
    go(guest)
    assert guest.samples_asked == n + 1


def test_no_extra_sample_after_finish():
    counter = itertools.count()
    guest = LoadGuest([lambda g: prog(next(counter) * 8, finished=True)])
    go(guest)
    assert guest.samples_asked == 1


def test_without_a_console_the_error_has_no_tail():
    def dead(g):
        g.alive = False
        raise GuestError("gone")

    guest = LoadGuest([dead])
    guest.console = None
    with pytest.raises(GuestDied) as err:
        go(guest)
    assert err.value.console_tail == "" and type(err.value) is GuestDied


def test_a_silent_guest_without_a_console_is_hung():
    guest = LoadGuest([GuestTimeout("timed out")])
    guest.console = None
    run = go(guest)
    assert run.outcome == "hung" and run.kernel.panics == []


def test_the_kind_of_guest_decides_the_auto_pool():
    sev = go(LoadGuest(FINISHED_LOAD, nslabs=65536, dmesg=("[    0.5] software IO TLB: area num 2.\n", 0)),
             size="auto", kind="sev-es")
    assert sev.outcome == "clean" and sev.bounce.expected_pool == (64 << 20, 1 << 30), sev.reason
    plain = go(LoadGuest(FINISHED_LOAD, nslabs=65536, dmesg=("[    0.5] software IO TLB: area num 2.\n", 0)),
               size="auto")
    assert plain.outcome == "unproven" and "auto asks for 65536 KiB" in plain.reason


def test_defaults_are_the_documented_ones(monkeypatch):
    """A fake clock (one second per reading) and no sleeping: the defaults show in what the runner did."""
    clock = itertools.count(1000.0)
    slept: list[float] = []
    monkeypatch.setattr(runner.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(runner.time, "sleep", slept.append)
    stuck = run_dma_load(LoadGuest(STUCK), "/dev/vda", size=parse_size("auto"))
    assert "(limit 20s)" in stuck.reason and set(slept) == {2.0}
    assert stuck.bounce.expected_pool == (64 << 20, 64 << 20)  # plain-forced by default
    assert stuck.bounce.access_platform is True  # virtio-blk by default: the device id 2 is read
    moving = run_dma_load(LoadGuest([prog(n) for n in range(0, 80000, 8)]), "/dev/vda")
    assert moving.reason.startswith("load still running after the 300s deadline")
