"""pytest_sev.dma.kmsg and .debugfs on every kernel era's wording.

Inline lines are the kernel's own format strings filled in (sources named in
sev-reference.md section 7); the ``guest61-*`` recordings are real consoles of
a Debian 6.1 guest (see fixtures/recorded/dma/README.md).
"""

from pathlib import Path

from recorded_console import section

from pytest_sev.dma.debugfs import dump_command, parse_debugfs
from pytest_sev.dma.kmsg import io_errors_for, parse_kmsg

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"



def test_boot_lines_5x_and_6x():
    r = parse_kmsg(
        "[    0.000000] software IO TLB: area num 2.\n"
        "[    0.401234] software IO TLB: mapped [mem 0x00000000bbfd6000-0x00000000bffd6000] (64MB)\n"
    )
    assert r.areas == 2
    assert r.pool_mb == 64 and r.pool_bytes == 64 << 20
    assert r.reported_pool_bytes == 64 << 20


def test_boot_line_4x_and_sub_mib_pool():
    # <= 4.14 wording; a 256K pool prints "(0MB)": the range is the exact size.
    r = parse_kmsg("software IO TLB [mem 0x7bfc0000-0x7c000000] (0MB) mapped at [ffff88007bfc0000-ffff88007bffffff]")
    assert r.pool_mb == 0 and r.pool_bytes == 256 << 10


def test_sev_auto_adjust_and_bounce():
    r = parse_kmsg(
        "[    0.000000] software IO TLB: SWIOTLB bounce buffer size adjusted to 61MB\n"
        "[    0.000000] software IO TLB: SWIOTLB bounce buffer size roundup to 64MB\n"
        "[    2.000000] Memory encryption is active and system is using DMA bounce buffers\n"
    )
    assert r.adjusted_mb == 61 and r.roundup_mb == 64
    assert r.reported_pool_bytes == 64 << 20
    assert r.bounce_active


def test_full_messages_all_eras():
    r = parse_kmsg(
        "[   38.1] virtio-pci 0000:00:04.0: swiotlb buffer is full (sz: 262144 bytes), total 1024 (slots), used 671 (slots)\n"
        "[   38.2] swiotlb_tbl_map_single: 37 callbacks suppressed\n"
        "[   38.3] ipu3-imgu 0000:00:05.0: swiotlb buffer is full (sz: 4096 bytes)\n"
        "[   38.4] DMA: Out of SW-IOMMU space for 4096 bytes at device 0000:00:05.0\n"
        "[   38.5] qxl 0000:00:03.0: DMA: Out of SW-IOMMU space for 299008 bytes\n"
    )
    assert r.full_count == 2 and r.full_suppressed == 37 and r.exhausted
    a, b = r.full
    assert (a.size, a.total, a.used, a.device) == (262144, 1024, 671, "virtio-pci 0000:00:04.0")
    assert (b.size, b.total, b.used) == (4096, None, None)
    assert r.out_of_space == [4096, 299008]
    assert not r.panics and not r.io_errors


def test_out_of_space_alone_counts_as_full():
    r = parse_kmsg("DMA: Out of SW-IOMMU space for 65536 bytes at device 0000:00:04.0")
    assert r.full_count == 1 and r.exhausted


def test_faq5_panic_and_warning():
    text = ("[    3.1] Kernel panic - not syncing: Can not allocate SWIOTLB buffer earlier and "
            "can't now provide you with the DMA bounce buffer\n")
    r = parse_kmsg(text)
    assert r.early_alloc_failure and r.panicked
    assert r.panics[0].startswith("Can not allocate SWIOTLB buffer earlier")
    w = parse_kmsg("virtio-pci 0000:00:04.0: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer")
    assert w.early_alloc_failure and not w.panicked


def test_other_panics():
    r = parse_kmsg("---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---\n"
                   "DMA: Random memory could be DMA written\n")
    assert len(r.panics) == 2


def test_hung_task_and_io_errors_all_eras():
    r = parse_kmsg(
        "[  243.1] INFO: task dd:312 blocked for more than 120 seconds.\n"
        "[  243.2]       Not tainted 6.1.0-53-cloud-amd64 #1 Debian 6.1.187-1\n"
        "[  250.0] I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 phys_seg 1 prio class 2\n"
        "[  250.1] blk_update_request: I/O error, dev vdb, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0\n"
        "[  250.2] print_req_error: I/O error, dev vda, sector 4096\n"
        "[  250.3] Buffer I/O error on dev vda, logical block 0, async page read\n"
        "[  250.4] critical medium error, dev sda, sector 16 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2\n"
        "[  250.5] sd 0:0:0:0: [sda] tag#3 FAILED Result: hostbyte=DID_ERROR driverbyte=DRIVER_OK cmd_age=30s\n"
    )
    assert [(h.task, h.pid, h.seconds) for h in r.hung_tasks] == [("dd", 312, 120)]
    assert [(e.dev, e.sector) for e in r.io_errors] == [
        ("vda", 2048), ("vdb", 8), ("vda", 4096), ("vda", None), ("sda", 16), ("sda", None)
    ]
    assert len(io_errors_for(r, "/dev/vda")) == 3
    assert len(io_errors_for(r, "sda")) == 2


def test_noise_is_ignored():
    r = parse_kmsg("~ # echo swiotlb buffer is full\nswiotlb buffer is full\nOVMF: I/O error somewhere\n")
    assert r.full_count == 0 and not r.io_errors and not r.exhausted


def test_debugfs_all_eras():
    c = parse_debugfs(
        "/sys/kernel/debug/swiotlb/io_tlb_nslabs:32768\n"
        "/sys/kernel/debug/swiotlb/io_tlb_used:117\n"
        "/sys/kernel/debug/swiotlb/io_tlb_used_hiwater:4242\n"
        "/sys/kernel/debug/swiotlb/io_tlb_transient_nslabs:0\n"
        "/sys/kernel/debug/swiotlb/restricted/io_tlb_used:9\n"
        "~ # \n"
    )
    assert (c.nslabs, c.used, c.used_hiwater, c.transient_nslabs) == (32768, 117, 4242, 0)
    assert c.pool_bytes == 64 << 20
    old = parse_debugfs("io_tlb_nslabs:512\nio_tlb_used 3\n")
    assert (old.nslabs, old.used, old.used_hiwater) == (512, 3, None)
    assert "grep -H . /sys/kernel/debug/swiotlb/*" in dump_command()


# --- real 6.1 guest recordings -------------------------------------------------

def test_guest61_64m_clean_boot():
    text = (REC / "guest61-virtio-blk-64M.console.txt").read_text()
    r = parse_kmsg(section(text, "DMESG"))
    # 6.1 on x86 prints only "area num" at boot, not the "mapped [mem ...]" line:
    # the pool size comes from debugfs there.
    assert r.areas == 2 and r.pool_bytes is None
    assert not r.exhausted and not r.panics and not r.io_errors and not r.hung_tasks
    assert parse_debugfs(section(text, "DEBUGFS")).nslabs == 32768


def test_guest61_8m_full_storm():
    text = (REC / "guest61-virtio-blk-8M.console.txt").read_text()
    r = parse_kmsg(section(text, "DMESG"))
    assert r.full_count >= 3
    assert all(e.total == 4096 for e in r.full)
    assert r.reported_pool_bytes == 8 << 20
    assert parse_debugfs(section(text, "DEBUGFS")).nslabs == 4096


def test_guest61_1m_stall_is_not_silent_in_dmesg():
    text = (REC / "guest61-virtio-blk-1M.console.txt").read_text()
    r = parse_kmsg(section(text, "DMESG"))
    assert r.full_count > 50 and r.full_suppressed > 1000
    assert {e.total for e in r.full} == {512} and r.reported_pool_bytes == 1 << 20
    # direct I/O waits in blk_io_schedule(): no hung-task report even at 20 s
    assert not r.hung_tasks and not r.io_errors and not r.panics


def test_hung_task_report_61_layout():
    r = parse_kmsg((REC / "kmsg-6.1-hung-task.txt").read_text())
    assert [(h.task, h.pid, h.seconds) for h in r.hung_tasks] == [("sync", 97, 120), ("kworker/u4:1", 45, 120)]
    assert not r.panics and not r.io_errors
