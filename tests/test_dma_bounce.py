"""Bounce evidence: "clean" and "pressure" need proof the DMA used the pool.

Inputs: the 6.1 guest consoles under fixtures/recorded/dma (captured on the
development machine, see its README.md) for debugfs counters and kernel
lines; the virtio feature strings are the sysfs format (one 0/1 per bit);
the DMA-runner double below replays a finished fio run (loop-fio-clean,
captured) with an injected empty dmesg.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.dma import bounce, debugfs, kmsg
from pytest_sev.dma.classify import classify
from pytest_sev.dma.load import LoadSpec
from pytest_sev.dma.run import run_dma_load
from pytest_sev.dma.sizes import parse_size

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
        self.alive = True
        self.result = (DMA / "loop-fio-clean.result.txt").read_text()

    def run(self, cmd, timeout=60.0):
        if cmd.startswith("command -v fio"):
            return "DMATOOL fio\n", 0
        if cmd.startswith('echo "DMAPROG'):
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


def test_fio_json_without_writes_or_reads_is_not_verified():
    from pytest_sev.dma.load import parse_result
    res = parse_result((DMA / "loop-fio-clean.result.txt").read_text())
    assert res.unverified() is None
    res.fio.read_bytes = 0
    assert "verify phase did not run" in res.unverified()
    k, _ = _recorded("64M")
    assert classify(k, res, dev="vda").outcome == "io-error"


def test_dd_missing_passes_is_not_verified():
    from pytest_sev.dma.load import parse_result
    res = parse_result((DMA / "loop-dd-clean.result.txt").read_text())
    assert res.unverified() is None
    res.expected_dd_passes = len(res.dd.passes) + 1
    assert "dd passes reported" in res.unverified()
