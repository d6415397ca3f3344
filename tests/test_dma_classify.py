"""pytest_sev.dma.classify: precedence, the stall rule and reasons, on recorded evidence.

The stall rule (issue 21): ``stall`` only for a live guest (QEMU alive and
running the VM, QMP and the shell answering) whose load did not finish and
whose pool is shown exhausted; otherwise an unfinished load is ``hung``, and
a dead QEMU raises GuestDied. The results are captured runs (README.md beside
them); the kernel lines are the 6.1 wording of the recorded guests.
"""

from pathlib import Path

import pytest
from recorded_console import section

from pytest_sev.dma import load
from pytest_sev.dma.bounce import BounceEvidence
from pytest_sev.dma.classify import OUTCOMES, Observed, classify, exhaustion, pool_slots, severity, used_peak
from pytest_sev.dma.debugfs import SwiotlbCounters
from pytest_sev.dma.kmsg import parse_kmsg
from pytest_sev.dma.stall import FINISHED, RUNNING, STALLED
from pytest_sev.errors import GuestDied, GuestPanicked

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"
FULL = "virtio-pci 0000:00:03.0: swiotlb buffer is full (sz: 262144 bytes), total 4096 (slots), used 3606 (slots)\n"
PANIC = "Kernel panic - not syncing: Fatal exception in interrupt\n"
IOERR = "I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2\n"
HUNG = "INFO: task sync:97 blocked for more than 20 seconds.\n"
MAPPED_1M = "software IO TLB: mapped [mem 0x00000000bbf00000-0x00000000bc000000] (1MB)\n"
NO_IO = "no I/O completed for 20s (limit 20s), stuck at 8 sectors, in_flight=0, load not finished"


def res(name):
    return load.parse_result((REC / name).read_text())


CLEAN = res("loop-dd-clean.result.txt")
CORRUPT = res("loop-dd-tamper.result.txt")
ENOSPC = res("loop-dd-enospc.result.txt")
FIO_CLEAN = res("loop-fio-write-verify.result.txt")  # randwrite + verify: the proof is there
FIO_RANDRW = res("loop-fio-clean.result.txt")  # the old randrw load: its reads prove nothing
FIO_VERIFY = res("loop-fio-tamper.result.txt")
STALL = Observed(detector=STALLED, ended=NO_IO)


def k(text=""):
    return parse_kmsg(text)


def counters(nslabs=None, used=None, hiwater=None):
    return SwiotlbCounters(nslabs=nslabs, used=used, used_hiwater=hiwater)


def test_order():
    assert OUTCOMES == ("clean", "pressure", "unproven", "stall", "hung", "io-error", "corruption", "panic")
    assert severity("panic") > severity("corruption") > severity("io-error") > severity("hung") > severity("stall")
    assert severity("clean") == 0


def test_clean_and_pressure():
    c = classify(k(), CLEAN)
    assert c.outcome == "clean" and "MiB/s" in c.reason and "\n" not in c.reason
    assert str(c) == f"clean: {c.reason}"
    assert classify(k(), FIO_CLEAN).outcome == "clean"
    p = classify(k(FULL * 3), FIO_CLEAN)
    assert p.outcome == "pressure" and "3 'swiotlb buffer is full' messages" in p.reason
    assert "used up to 3606/4096 slots" in p.reason


@pytest.mark.parametrize(
    "kmsg, result, seen, want",
    [
        (PANIC + FULL + IOERR, CORRUPT, STALL, "panic"),
        (FULL + IOERR, CORRUPT, STALL, "corruption"),
        (FULL + IOERR, CLEAN, STALL, "io-error"),
        (FULL, ENOSPC, STALL, "io-error"),
        (FULL, None, STALL, "stall"),
        ("", None, STALL, "hung"),  # a stall detector that fired is not evidence
        (HUNG + FULL, CLEAN, Observed(), "hung"),
        (FULL, CLEAN, Observed(), "pressure"),
        (FULL, CLEAN, STALL, "pressure"),  # the result files say it finished
        ("", CLEAN, Observed(), "clean"),
        ("", FIO_VERIFY, Observed(), "corruption"),
        ("", FIO_RANDRW, Observed(), "unproven"),
    ],
)
def test_precedence(kmsg, result, seen, want):
    assert classify(k(kmsg), result, observed=seen).outcome == want


def test_reasons_name_the_evidence():
    assert "worker 1" in classify(k(), CORRUPT).reason
    assert "bad magic header" in classify(k(), FIO_VERIFY).reason
    assert "No space left" in classify(k(), ENOSPC).reason
    stall = classify(k(FULL), None, observed=STALL)
    assert stall.reason.startswith(NO_IO + "; 1 'swiotlb buffer is full' message")


def test_io_errors_of_other_disks_are_ignored_with_dev():
    other = k("I/O error, dev vdb, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0\n")
    assert classify(other, CLEAN, dev="/dev/vda").outcome == "clean"
    assert classify(other, CLEAN).outcome == "io-error"
    c = classify(k(IOERR), CLEAN, dev="vda")
    assert c.outcome == "io-error" and c.reason.startswith("1 kernel I/O error line(s), first: I/O error, dev vda")


def test_faq5_without_panic_is_io_error_and_with_panic_names_faq5():
    text = "virtio-pci 0000:00:04.0: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer"
    c = classify(k(text), None)
    assert c.outcome == "io-error" and "FAQ 5" in c.reason
    p = classify(k(text + "\n" + PANIC), None)
    assert p.outcome == "panic" and p.reason.endswith("(README FAQ 5: set an explicit swiotlb=)")
    assert classify(k(PANIC), None).reason == "kernel panic: Fatal exception in interrupt"


def test_swiotlb_allocation_failure_is_io_error():
    c = classify(k("software IO TLB: Failed to allocate 4096 bytes\n"), CLEAN)
    assert c.outcome == "io-error" and "failed a SWIOTLB allocation: software IO TLB: Failed" in c.reason


def test_result_errors_and_exit_status():
    fio_err = load.parse_result((REC / "loop-fio-clean.result.txt").read_text())
    fio_err.io_errors, fio_err.error_lines = 2, []
    c = classify(k(), fio_err)
    assert c.outcome == "io-error" and c.reason == "fio reported 2 I/O error(s): no detail"
    failed = load.parse_result("@@DMA kind\ndd\n@@DMA rc\n3\n@@DMA-END\n")
    assert str(classify(k(), failed)) == "io-error: dd exited with status 3"
    verify = load.parse_result((REC / "loop-fio-tamper.result.txt").read_text())
    verify.error_lines = []
    assert classify(k(), verify).reason.endswith("time(s): no detail")


def test_unfinished_or_unverifiable():
    unfinished = load.parse_result("@@DMA kind\ndd\n@@DMA-END\n")
    assert classify(k(), unfinished, observed=STALL).outcome == "hung"
    assert classify(k(FULL), unfinished, observed=STALL).outcome == "stall"
    empty_ok = load.parse_result("@@DMA kind\ndd\n@@DMA rc\n0\n@@DMA-END\n")
    c = classify(k(), empty_ok)
    assert c.outcome == "unproven" and "data check is not proven (dd reported no pass)" in c.reason
    r = classify(k(), FIO_RANDRW)
    assert r.outcome == "unproven" and "rw=randrw" in r.reason


def test_finished_detector_without_results():
    c = classify(k(), None)  # a caller that read nothing: finished by default, nothing verified
    assert c.outcome == "unproven" and "results were not read" in c.reason
    h = classify(k(), None, observed=Observed(shell_problem="GuestTimeout: timed out"))
    assert h.outcome == "hung" and "before its results were read (GuestTimeout: timed out)" in h.reason
    no_rc = load.parse_result((REC / "loop-fio-write-verify.result.txt").read_text().replace("@@DMA rc\n0\n", ""))
    assert not no_rc.finished
    c = classify(k(), no_rc, observed=Observed(detector=FINISHED))
    assert c.outcome == "unproven" and "no exit status" in c.reason


def test_hung_task_after_a_finished_load_is_hung():
    c = classify(k(HUNG), CLEAN)
    assert c.outcome == "hung" and "task sync:97 was blocked for more than 20s" in c.reason


# -- the stall rule -----------------------------------------------------------------------------

def test_stall_needs_swiotlb_evidence():
    c = classify(k(), None, observed=STALL)
    assert c.outcome == "hung"
    assert c.reason == (NO_IO + "; no SWIOTLB evidence that the pool ran dry (no 'swiotlb buffer is full', "
                        "io_tlb_used peak None of None slots)")
    s = classify(k(FULL), None, observed=STALL)
    assert s.outcome == "stall"


@pytest.mark.parametrize("line", [
    "swiotlb_tbl_map_single: 12 callbacks suppressed\n",
    "DMA: Out of SW-IOMMU space for 4096 bytes at device 0000:00:05.0\n",
], ids=["suppressed-only", "4.x-out-of-space"])
def test_other_exhaustion_lines_count(line):
    assert classify(k(line), None, observed=STALL).outcome == "stall"


@pytest.mark.parametrize("used, nslabs, want", [
    (384, 512, "stall"),  # 128 free: exactly one largest mapping short of the limit
    (383, 512, "hung"),
    (512, 512, "stall"),
    (0, 128, "hung"),  # nothing used is never exhaustion, even in a pool of one mapping
    (500, None, "hung"),  # pool size unknown: the counter proves nothing
])
def test_io_tlb_used_at_the_pool_limit(used, nslabs, want):
    seen = Observed(detector=STALLED, ended=NO_IO, peak_used=used, counters=counters(nslabs=nslabs))
    assert classify(k(), None, observed=seen).outcome == want


def test_counter_evidence_reason_and_sources():
    seen = Observed(detector=STALLED, ended=NO_IO, peak_used=10, counters=counters(nslabs=512, hiwater=450))
    c = classify(k(), None, observed=seen)
    assert c.outcome == "stall"
    assert c.reason == NO_IO + "; io_tlb_used reached 450 of 512 slots (less than one largest mapping free)"
    last = Observed(detector=STALLED, ended=NO_IO, counters=counters(nslabs=512, used=400))
    assert classify(k(), None, observed=last).outcome == "stall"
    # the pool size from the kernel's boot line when debugfs has none
    from_log = Observed(detector=STALLED, ended=NO_IO, peak_used=400, counters=counters(nslabs=0))
    c = classify(k(MAPPED_1M), None, observed=from_log)
    assert c.outcome == "stall" and "400 of 512 slots" in c.reason
    assert classify(k(MAPPED_1M), None, observed=Observed(detector=STALLED, peak_used=400)).outcome == "stall"


def test_helpers():
    assert pool_slots(k(), None) is None
    assert pool_slots(k(MAPPED_1M), None) == 512
    assert pool_slots(k(MAPPED_1M), counters(nslabs=1024)) == 1024
    assert pool_slots(k(MAPPED_1M), counters()) == 512
    assert used_peak(Observed()) is None
    assert used_peak(Observed(peak_used=7, counters=counters(used=3, hiwater=5))) == 7
    assert used_peak(Observed(counters=counters(used=3))) == 3
    assert exhaustion(k(), Observed(peak_used=1, counters=counters(nslabs=512))) is None


@pytest.mark.parametrize("seen, why", [
    (Observed(detector=STALLED, ended=NO_IO, qmp_status=None, qmp_problem="QMP lost: no answer"),
     "QEMU's monitor does not answer (QMP lost: no answer): the VM is frozen"),
    (Observed(detector=STALLED, ended=NO_IO, qmp_status=None), "QEMU's monitor does not answer (no reply): the VM is frozen"),
    (Observed(detector=STALLED, ended=NO_IO, qmp_status="paused"), "QEMU does not run the VM (query-status: paused)"),
    (Observed(detector=RUNNING, shell_problem="GuestTimeout: timed out after 10s"),
     "the guest's shell stopped answering (GuestTimeout: timed out after 10s)"),
], ids=["qmp-silent", "qmp-silent-no-reason", "vm-paused", "shell-silent"])
def test_a_guest_that_does_not_answer_is_hung_even_with_full_lines(seen, why):
    c = classify(k(FULL * 5), None, observed=seen, dev="vda")
    assert c.outcome == "hung" and c.reason.endswith(why), c.reason
    assert c.reason.startswith(seen.ended or "the load did not finish")


def test_alive_running_answering_is_a_stall():
    seen = Observed(detector=RUNNING, ended="load still running after the 240s deadline", qmp_status="running")
    c = classify(k(FULL), None, observed=seen)
    assert c.outcome == "stall" and c.reason.startswith("load still running after the 240s deadline; 1 ")


@pytest.mark.parametrize("result", [None, CLEAN, FIO_CLEAN])
@pytest.mark.parametrize("kmsg", ["", FULL * 3])
def test_dead_qemu_raises_guest_died_whatever_the_evidence(kmsg, result):
    with pytest.raises(GuestDied) as err:
        classify(k(kmsg), result, observed=Observed(detector=STALLED, ended=NO_IO, qemu_alive=False), dev="vda")
    assert type(err.value) is GuestDied
    assert str(err.value) == "QEMU exited while waiting for the DMA load on vda to finish: a dead guest is no stall"


def test_dead_qemu_after_a_panic_names_the_panic():
    with pytest.raises(GuestPanicked) as err:
        classify(k(PANIC), None, observed=Observed(qemu_alive=False))
    assert str(err.value) == ("guest kernel panicked during the DMA load on the disk: "
                              "Fatal exception in interrupt")


def _proof(problems=()):
    return BounceEvidence("1M", (1 << 20, 1 << 20), 1 << 20, "io_tlb_nslabs", 5, None, 1, True, "read",
                          tuple(problems))


def test_bounce_proof_only_gates_clean_and_pressure():
    missing = _proof(["no sign the pool was used"])
    c = classify(k(), CLEAN, bounce=missing)
    assert c.outcome == "unproven"
    assert c.reason.startswith("would be clean (completed") and c.reason.endswith(
        "but bouncing is not proven: no sign the pool was used")
    assert classify(k(FULL), CLEAN, bounce=missing).outcome == "unproven"
    assert classify(k(FULL), None, observed=STALL, bounce=missing).outcome == "stall"
    assert classify(k(), CLEAN, bounce=_proof()).outcome == "clean"


def test_recorded_guests():
    for name, seen, want in [
        ("guest61-virtio-blk-64M.console.txt", Observed(), "clean"),
        ("guest61-virtio-blk-8M.console.txt", Observed(), "pressure"),
        ("guest61-virtio-blk-1M.console.txt", STALL, "stall"),
        ("guest61-virtio-scsi-1M.console.txt", STALL, "stall"),
    ]:
        text = (REC / name).read_text()
        c = classify(parse_kmsg(section(text, "DMESG")), load.parse_result(section(text, "RESULT")),
                     observed=seen, dev="/dev/sda" if "scsi" in name else "/dev/vda")
        assert c.outcome == want, (name, c)


def test_recorded_1m_stall_without_its_dmesg_is_hung():
    """The same stalled 1M run, had dmesg been unreadable and the counters shown nothing: hung."""
    text = (REC / "guest61-virtio-blk-1M.console.txt").read_text()
    c = classify(k(), load.parse_result(section(text, "RESULT")), observed=STALL, dev="/dev/vda")
    assert c.outcome == "hung"


def test_exact_reasons_of_each_branch():
    unmeasured = load.parse_result("@@DMA kind\ndd\n@@DMA rc\n0\n@@DMA-END\n")
    unmeasured.dd.passes = CLEAN.dd.passes  # verified, but no t0/t1: no speed to tell
    assert unmeasured.mib_s is None
    assert classify(k(), unmeasured).reason == "completed, verified, no 'swiotlb buffer is full'"
    fast = classify(k(FULL), CLEAN)
    assert fast.outcome == "pressure" and fast.reason.startswith(f"completed at {CLEAN.mib_s:.1f} MiB/s, verified; 1 ")
    assert classify(k(), CORRUPT).reason.startswith("4 dd pass(es) read back wrong data (worker 1 pass 0 bs ")
    faq5 = classify(k("Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer"),
                    None)
    assert faq5.reason == "kernel has no SWIOTLB pool ('Can not allocate SWIOTLB buffer earlier', README FAQ 5)"
    failed = classify(k(), load.parse_result("@@DMA kind\nfio\n@@DMA rc\n3\n@@DMA-END\n"))
    assert failed.outcome == "io-error"
    assert classify(k(), None).reason == "the load finished but its results were not read"
    no_rc = load.parse_result((REC / "loop-fio-write-verify.result.txt").read_text().replace("@@DMA rc\n0\n", ""))
    assert classify(k(), no_rc).reason == "the load finished but its result files hold no exit status"


def test_full_detail_names_the_largest_mapping_and_the_fullest_pool():
    lines = ("swiotlb buffer is full (sz: 4096 bytes)\n"
             "swiotlb buffer is full (sz: 65536 bytes), total 512 (slots), used 300 (slots)\n"
             "swiotlb buffer is full (sz: 262144 bytes), total 512 (slots), used 457 (slots)\n"
             "swiotlb_tbl_map_single: 7 callbacks suppressed\n")
    c = classify(k(lines), CLEAN)
    assert c.reason.endswith("verified; 3 'swiotlb buffer is full' messages (+7 suppressed), "
                             "largest mapping 262144 B, used up to 457/512 slots")
    old = classify(k("DMA: Out of SW-IOMMU space for 4096 bytes at device 0000:00:05.0\n"), CLEAN)
    assert old.reason.endswith("verified; 1 'swiotlb buffer is full' message, largest mapping 4096 B")


def test_unproven_names_every_missing_proof():
    c = classify(k(), CLEAN, bounce=_proof(["first", "second"]))
    assert c.reason.endswith("bouncing is not proven: first; second")
