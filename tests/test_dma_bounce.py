"""Bounce evidence: "clean" and "pressure" need proof the DMA used the pool.

Inputs: the 6.1 guest consoles under fixtures/recorded/dma (captured on the
development machine, see its README.md) for debugfs counters and kernel
lines; the virtio feature strings are the sysfs format (one 0/1 per bit);
the DMA-runner double below replays a finished fio run (loop-fio-write-verify,
captured: randwrite + its verify pass) with an injected empty dmesg.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.dma import bounce, debugfs, kmsg
from pytest_sev.dma.classify import classify
from pytest_sev.dma.load import LoadSpec
from pytest_sev.dma.sizes import parse_size
from pytest_sev.proofs.dma_run import run_dma_load

DMA = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "dma"
S = parse_size


def bits(*on: int, n: int = 64) -> str:
    return "".join("1" if i in on else "0" for i in range(n))


WITH_AP = f"VIRTIOFEAT virtio0 0x0002 {bits(1, 2, 32, 33)}\nVIRTIOFEAT-END\n"
WITHOUT_AP = f"VIRTIOFEAT virtio0 0x0002 {bits(1, 2, 32)}\nVIRTIOFEAT-END\n"


def section(size: str) -> str:
    return (DMA / f"guest61-virtio-blk-{size}.console.txt").read_text()


def test_features_parse_and_bit_33():
    assert bounce.access_platform(bounce.parse_features(WITH_AP), "virtio-blk") is True
    assert bounce.access_platform(bounce.parse_features(WITHOUT_AP), "virtio-blk") is False
    assert bounce.parse_features("VIRTIOFEAT virtio0 0x0002 0101") is None  # cut short
    assert bounce.access_platform(bounce.parse_features(WITH_AP), "virtio-scsi") is None  # no such device


def test_expected_pool_rounding():
    assert bounce.expected_pool(S("1M"), "plain-forced") == (1 << 20, 1 << 20)
    assert bounce.expected_pool(S("auto"), "plain-forced") == (64 << 20, 64 << 20)
    assert bounce.expected_pool(S("auto"), "sev-es") == (64 << 20, 1 << 30)
    lo, hi = bounce.expected_pool(S("3M"), "sev")
    assert lo == 3 << 20 and hi == 4 << 20  # 6.0-6.2 power-of-two areas


def _recorded(size: str):
    text = section(size)
    return kmsg.parse_kmsg(text), debugfs.parse_debugfs(text)


def test_recorded_8m_pressure_is_proven_by_its_full_lines():
    k, c = _recorded("8M")
    ev = bounce.judge(S("8M"), "plain-forced", "virtio-blk", kernel=k, counters=c, peak_used=0,
                      features=bounce.parse_features(WITH_AP))
    assert ev.proven, ev.describe()
    assert ev.reported_pool_bytes == 8 << 20 and ev.full_messages > 0


def test_recorded_64m_without_a_used_sample_is_unproven():
    """The 64M capture predates the device throttle: io_tlb_used read 0 in every
    sample, nothing was full -- nothing shows the pool was used."""
    k, c = _recorded("64M")
    ev = bounce.judge(S("64M"), "plain-forced", "virtio-blk", kernel=k, counters=c, peak_used=0,
                      features=bounce.parse_features(WITH_AP))
    assert not ev.proven and "no sign the pool was used" in ev.describe()
    ok = bounce.judge(S("64M"), "plain-forced", "virtio-blk", kernel=k, counters=c, peak_used=37,
                      features=bounce.parse_features(WITH_AP))
    assert ok.proven, ok.describe()


def test_wrong_pool_size_is_unproven():
    k, c = _recorded("64M")
    ev = bounce.judge(S("8M"), "plain-forced", "virtio-blk", kernel=k, counters=c, peak_used=5,
                      features=bounce.parse_features(WITH_AP))
    assert not ev.proven and "the kernel's pool is 65536 KiB, 8M asks for 8192 KiB" in ev.describe()


def test_no_access_platform_is_unproven():
    k, c = _recorded("64M")
    ev = bounce.judge(S("64M"), "plain-forced", "virtio-blk", kernel=k, counters=c, peak_used=5,
                      features=bounce.parse_features(WITHOUT_AP))
    assert not ev.proven and "VIRTIO_F_ACCESS_PLATFORM" in ev.describe()


def test_classify_turns_unproven_clean_into_unproven():
    k, c = _recorded("64M")
    from pytest_sev.dma.load import parse_result
    res = parse_result((DMA / "loop-dd-clean.result.txt").read_text())
    ev = bounce.judge(S("64M"), "plain-forced", "virtio-blk", kernel=None, kernel_log_reason="dmesg printed nothing",
                      counters=c, peak_used=3, features=bounce.parse_features(WITH_AP))
    got = classify(k, res, dev="vda", bounce=ev)
    assert got.outcome == "unproven" and "dmesg printed nothing" in got.reason
    assert classify(k, res, dev="vda").outcome == "clean"  # not judged: the old answer


class FinishedLoadGuest:
    """Answers the runner's commands with a finished, captured fio run."""

    def __init__(self, dmesg=("", 0), used="12", features=WITH_AP, nslabs=32768):
        from types import SimpleNamespace
        self.spec = SimpleNamespace(name="dma-double")
        self.dmesg, self.used, self.features, self.nslabs = dmesg, used, features, nslabs
        self.console = SimpleNamespace(tail=lambda n=0: "swiotlb buffer is full (sz: 4096 bytes)\n")
        self.qmp = SimpleNamespace(execute=lambda cmd, **args: {"status": "running", "running": True})
        self.argv, self.logs = ["qemu-system-x86_64"], {}
        self.alive = True
        self.result = (DMA / "loop-fio-write-verify.result.txt").read_text()

    def run(self, cmd, timeout=60.0):
        if cmd.startswith("command -v fio"):
            return "DMATOOL fio\n", 0
        if '"DMAPROG"' in cmd:  # load.progress_command's awk line
            return (f"DMAPROG|30.0 20.0|  10 0 800 4 10 0 800 4 0 40 40 0 0 0 0 0 0|{self.used}|"
                    "20.0 10.0|0|END\n"), 0
        if cmd == "dmesg":
            return self.dmesg
        if "swiotlb/*" in cmd:
            return (f"/sys/kernel/debug/swiotlb/io_tlb_nslabs:{self.nslabs}\n"
                    "/sys/kernel/debug/swiotlb/io_tlb_used:0\n"), 0
        if "VIRTIOFEAT" in cmd:
            return self.features, 0
        if "@@DMA" in cmd:
            return self.result, 0
        return "", 0

    def check(self, cmd, timeout=60.0):
        return self.run(cmd, timeout)[0]


DMESG_OK = ("[    0.000000] Linux version 6.1.0\n[    0.5] software IO TLB: area num 2.\n", 0)


def _run(guest, size="64M"):
    return run_dma_load(guest, "/dev/vda", stall_seconds=5, deadline_seconds=30, sample_every=0,
                        spec=LoadSpec(tool="fio"), size=S(size), kind="plain-forced", bus="virtio-blk")


def test_runner_clean_with_evidence():
    run = _run(FinishedLoadGuest(dmesg=DMESG_OK))
    assert run.outcome == "clean", run.reason
    assert run.bounce.proven and run.bounce.peak_used_slots == 12


@pytest.mark.parametrize("dmesg,why", [(("", 0), "printed nothing"),
                                       (("dmesg: klogctl: Operation not permitted\n", 1), "permission denied")],
                         ids=["dmesg-empty-during-dma", "dmesg-denied-during-dma"])
def test_runner_dmesg_fault_is_unproven_and_console_is_not_read(dmesg, why):
    run = _run(FinishedLoadGuest(dmesg=dmesg))
    assert run.outcome == "unproven", run.reason
    assert why in run.reason and run.kernel.full_count == 0  # the console's "full" line was not used


def test_runner_without_access_platform_is_unproven():
    run = _run(FinishedLoadGuest(dmesg=DMESG_OK, features=WITHOUT_AP))
    assert run.outcome == "unproven" and "bit 33" in run.reason


def test_runner_pool_never_used_is_unproven():
    run = _run(FinishedLoadGuest(dmesg=DMESG_OK, used="0"))
    assert run.outcome == "unproven" and "no sign the pool was used" in run.reason


def test_fio_json_without_its_verify_reads_is_not_verified():
    from pytest_sev.dma.load import parse_result
    res = parse_result((DMA / "loop-fio-write-verify.result.txt").read_text())
    assert res.unverified() is None
    res.fio.read_bytes = 0
    assert "verify pass read back 0 of the 134217728 bytes written" in res.unverified()
    k, _ = _recorded("64M")
    assert classify(k, res, dev="vda").outcome == "unproven"


def test_dd_missing_passes_is_not_verified():
    from pytest_sev.dma.load import parse_result
    res = parse_result((DMA / "loop-dd-clean.result.txt").read_text())
    assert res.unverified() is None
    res.expected_dd_passes = len(res.dd.passes) + 1
    assert "dd passes reported" in res.unverified()


# -- every rule of judge() and what it records (the evidence lands in the summary JSON) -------------

NO_POOL = ("the kernel reported no SWIOTLB pool (no 'software IO TLB: mapped' line, no io_tlb_nslabs)")


def test_nothing_known_lists_every_missing_proof():
    ev = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=None)
    assert ev.problems == (
        "kernel log unreadable: no dmesg",
        NO_POOL,
        "no sign the pool was used (peak io_tlb_used None, hiwater None, no 'buffer is full')",
        "VIRTIO_F_ACCESS_PLATFORM of the virtio-blk device could not be read",
    )
    assert ev.pool_source == "none" and ev.kernel_log == "" and ev.full_messages == 0
    assert ev.hiwater_slots is None and ev.access_platform is None and ev.expected_pool == (1 << 20, 1 << 20)
    why = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=None, kernel_log_reason="dmesg printed nothing")
    assert why.problems[0] == "kernel log unreadable: dmesg printed nothing" and why.kernel_log == "dmesg printed nothing"


def test_pool_size_sources():
    mapped = kmsg.parse_kmsg("software IO TLB: mapped [mem 0x00000000bbf00000-0x00000000bc000000] (1MB)\n")
    from_log = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=mapped, counters=debugfs.SwiotlbCounters(
        nslabs=1024), peak_used=1, features=bounce.parse_features(WITH_AP))
    assert from_log.proven and from_log.pool_source == "kernel log" and from_log.reported_pool_bytes == 1 << 20
    assert from_log.kernel_log == "read" and from_log.requested == "1M" and from_log.peak_used_slots == 1
    from_debugfs = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=kmsg.parse_kmsg(""),
                                counters=debugfs.SwiotlbCounters(nslabs=512), peak_used=1,
                                features=bounce.parse_features(WITH_AP))
    assert from_debugfs.proven and from_debugfs.pool_source == "io_tlb_nslabs"
    neither = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=kmsg.parse_kmsg(""), counters=None,
                           peak_used=1, features=bounce.parse_features(WITH_AP))
    assert neither.problems == (NO_POOL,)  # no counters at all: no pool, and no crash


def test_a_range_of_pools_is_named_as_a_range():
    ev = bounce.judge(S("3M"), "sev", "virtio-blk", kernel=kmsg.parse_kmsg(""),
                      counters=debugfs.SwiotlbCounters(nslabs=4096), peak_used=1,
                      features=bounce.parse_features(WITH_AP))
    assert ev.problems == ("the kernel's pool is 8192 KiB, 3M asks for 3072-4096 KiB",)


def test_auto_is_judged_by_the_kind_of_guest():
    big = debugfs.SwiotlbCounters(nslabs=65536)  # 128 MiB: the SEV auto-sizing
    sev = bounce.judge(S("auto"), "sev-es", "virtio-blk", kernel=kmsg.parse_kmsg(""), counters=big, peak_used=1,
                       features=bounce.parse_features(WITH_AP))
    assert sev.proven and sev.expected_pool == (64 << 20, 1 << 30)
    plain = bounce.judge(S("auto"), "plain-forced", "virtio-blk", kernel=kmsg.parse_kmsg(""), counters=big,
                         peak_used=1, features=bounce.parse_features(WITH_AP))
    assert plain.problems == ("the kernel's pool is 131072 KiB, auto asks for 65536 KiB",)


@pytest.mark.parametrize("peak, hiwater, full, proven", [
    (1, None, "", True), (None, 1, "", True),
    (0, 0, "swiotlb buffer is full (sz: 4096 bytes)\n", True),
    (0, 0, "", False), (None, None, "", False),
])
def test_any_one_sign_of_use_is_enough(peak, hiwater, full, proven):
    ev = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=kmsg.parse_kmsg(full),
                      counters=debugfs.SwiotlbCounters(nslabs=512, used_hiwater=hiwater), peak_used=peak,
                      features=bounce.parse_features(WITH_AP))
    assert ev.proven is proven, ev.problems
    assert ev.hiwater_slots == hiwater and ev.full_messages == (1 if full else 0)


def test_no_sign_of_use_without_a_kernel_log():
    ev = bounce.judge(S("1M"), "plain-forced", "virtio-blk", kernel=None,
                      counters=debugfs.SwiotlbCounters(nslabs=512), peak_used=0,
                      features=bounce.parse_features(WITH_AP))
    assert ev.problems[-1] == "no sign the pool was used (peak io_tlb_used 0, hiwater None, no 'buffer is full')"


def test_device_without_access_platform_is_named():
    ev = bounce.judge(S("1M"), "plain-forced", "virtio-scsi", kernel=kmsg.parse_kmsg(""),
                      counters=debugfs.SwiotlbCounters(nslabs=512), peak_used=3,
                      features=bounce.parse_features(WITHOUT_AP.replace("0x0002", "0x0008")))
    assert ev.access_platform is False
    assert ev.problems == ("the virtio-scsi device did not negotiate VIRTIO_F_ACCESS_PLATFORM (bit 33): "
                           "it bypasses the DMA API (iommu_platform=on missing)",)


def test_feature_string_too_short_for_bit_33():
    short = "VIRTIOFEAT virtio0 0x0002 " + "1" * 33 + "\nVIRTIOFEAT-END\n"
    assert bounce.access_platform(bounce.parse_features(short), "virtio-blk") is False
    assert bounce.access_platform(bounce.parse_features(short.replace("1" * 33, "1" * 34)), "virtio-blk") is True
    assert bounce.parse_features("\r\nVIRTIOFEAT-END\r\n") == {}


def test_describe_and_json():
    proven = bounce.BounceEvidence("1M", (1 << 20, 1 << 20), 1 << 20, "io_tlb_nslabs", 5, 7, 2, True, "read")
    assert proven.describe() == ("pool 1024 KiB (io_tlb_nslabs) for 1M, peak io_tlb_used 5, hiwater 7, "
                                 "full lines 2, ACCESS_PLATFORM True")
    missing = bounce.BounceEvidence("1M", (1 << 20, 1 << 20), None, "none", None, None, 0, None, "no dmesg",
                                    ("a", "b"))
    assert missing.describe() == ("pool ? (none) for 1M, peak io_tlb_used None, hiwater None, full lines 0, "
                                  "ACCESS_PLATFORM None; NOT PROVEN: a; b")
    assert proven.to_json() == {"requested": "1M", "expected_pool": [1 << 20, 1 << 20],
                                "reported_pool_bytes": 1 << 20, "pool_source": "io_tlb_nslabs",
                                "peak_used_slots": 5, "hiwater_slots": 7, "full_messages": 2,
                                "access_platform": True, "kernel_log": "read", "problems": [], "proven": True}
    assert missing.to_json()["problems"] == ["a", "b"] and missing.to_json()["proven"] is False


def test_pool_rounding_for_slab_counts():
    assert bounce.expected_pool(S("256K"), "sev") == (256 << 10, 256 << 10)
    assert bounce.expected_pool(S("768K"), "sev") == (768 << 10, 1 << 20)


def test_features_command_prints_what_the_parser_reads(tmp_path):
    """The guest command run by a real shell over a sysfs-like tree (busybox ash in the guest; sh here)."""
    import shutil
    import subprocess
    sh = shutil.which("busybox") or shutil.which("sh")
    for name, dev_id, bits in (("virtio0", "0x0002", bits_str(1, 33)), ("virtio1", "0x0008", bits_str(1))):
        d = tmp_path / name
        d.mkdir()
        (d / "features").write_text(bits + "\n")
        (d / "device").write_text(dev_id + "\n")
    (tmp_path / "virtio2").mkdir()  # no features file: skipped
    cmd = bounce.features_command().replace("/sys/bus/virtio/devices", str(tmp_path))
    argv = [sh, "sh", "-c", cmd] if sh.endswith("busybox") else [sh, "-c", cmd]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    got = bounce.parse_features(out)
    assert got == {"virtio0": (2, bits_str(1, 33)), "virtio1": (8, bits_str(1))}
    assert bounce.access_platform(got, "virtio-blk") is True and bounce.access_platform(got, "virtio-scsi") is False


def bits_str(*on: int) -> str:
    return bits(*on)
