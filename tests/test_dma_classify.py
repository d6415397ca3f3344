"""pytest_sev.dma.classify: precedence and reasons, on recorded evidence."""

from pathlib import Path

import pytest
from recorded_console import section

from pytest_sev.dma import load
from pytest_sev.dma.classify import OUTCOMES, classify, severity
from pytest_sev.dma.kmsg import parse_kmsg

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"
FULL = "virtio-pci 0000:00:03.0: swiotlb buffer is full (sz: 262144 bytes), total 4096 (slots), used 3606 (slots)\n"
PANIC = "Kernel panic - not syncing: Fatal exception in interrupt\n"
IOERR = "I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2\n"
HUNG = "INFO: task sync:97 blocked for more than 20 seconds.\n"


def res(name):
    return load.parse_result((REC / name).read_text())



CLEAN = res("loop-dd-clean.result.txt")
CORRUPT = res("loop-dd-tamper.result.txt")
ENOSPC = res("loop-dd-enospc.result.txt")
FIO_CLEAN = res("loop-fio-clean.result.txt")
FIO_VERIFY = res("loop-fio-tamper.result.txt")


def test_order():
    assert OUTCOMES == ("clean", "pressure", "unproven", "stall", "io-error", "corruption", "panic")
    assert severity("panic") > severity("corruption") > severity("io-error") > severity("stall")


def test_clean_and_pressure():
    c = classify(parse_kmsg(""), CLEAN)
    assert c.outcome == "clean" and "MiB/s" in c.reason and "\n" not in c.reason
    p = classify(parse_kmsg(FULL * 3), FIO_CLEAN)
    assert p.outcome == "pressure" and "3 'swiotlb buffer is full' messages" in p.reason
    assert "used up to 3606/4096 slots" in p.reason


@pytest.mark.parametrize(
    "kmsg, result, stalled, want",
    [
        (PANIC + FULL + IOERR, CORRUPT, True, "panic"),
        (FULL + IOERR, CORRUPT, True, "corruption"),
        (FULL + IOERR, CLEAN, True, "io-error"),
        (FULL, ENOSPC, True, "io-error"),
        (FULL, CLEAN, True, "stall"),
        (FULL, None, False, "stall"),
        (HUNG + FULL, CLEAN, False, "stall"),
        (FULL, CLEAN, False, "pressure"),
        ("", CLEAN, False, "clean"),
        ("", FIO_VERIFY, False, "corruption"),
    ],
)
def test_precedence(kmsg, result, stalled, want):
    assert classify(parse_kmsg(kmsg), result, stalled=stalled, stall_reason="no I/O for 60s").outcome == want


def test_reasons_name_the_evidence():
    assert "worker 1" in classify(parse_kmsg(""), CORRUPT).reason
    assert "bad magic header" in classify(parse_kmsg(""), FIO_VERIFY).reason
    assert "No space left" in classify(parse_kmsg(""), ENOSPC).reason
    assert classify(parse_kmsg(""), CLEAN, stalled=True, stall_reason="no I/O for 60s").reason == "no I/O for 60s"


def test_io_errors_of_other_disks_are_ignored_with_dev():
    k = parse_kmsg("I/O error, dev vdb, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0\n")
    assert classify(k, CLEAN, dev="/dev/vda").outcome == "clean"
    assert classify(k, CLEAN).outcome == "io-error"


def test_faq5_without_panic_is_io_error():
    k = parse_kmsg("virtio-pci 0000:00:04.0: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer")
    c = classify(k, None)
    assert c.outcome == "io-error" and "FAQ 5" in c.reason


def test_unfinished_or_unverifiable():
    unfinished = load.parse_result("@@DMA kind\ndd\n@@DMA-END\n")
    assert classify(parse_kmsg(""), unfinished).outcome == "stall"
    empty_ok = load.parse_result("@@DMA kind\ndd\n@@DMA rc\n0\n@@DMA-END\n")
    c = classify(parse_kmsg(""), empty_ok)
    assert c.outcome == "io-error" and "no verifiable result" in c.reason


def test_recorded_guests():
    for name, stalled, want in [
        ("guest61-virtio-blk-64M.console.txt", False, "clean"),
        ("guest61-virtio-blk-8M.console.txt", False, "pressure"),
        ("guest61-virtio-blk-1M.console.txt", True, "stall"),
        ("guest61-virtio-scsi-1M.console.txt", True, "stall"),
    ]:
        text = (REC / name).read_text()
        c = classify(parse_kmsg(section(text, "DMESG")), load.parse_result(section(text, "RESULT")),
                     stalled=stalled, dev="/dev/sda" if "scsi" in name else "/dev/vda")
        assert c.outcome == want, (name, c)
