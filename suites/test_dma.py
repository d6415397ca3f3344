"""DMA through the SWIOTLB bounce pool under virtio-blk load, per pool size.

For each pool size the guest gets a scratch disk and an fio load (dd when
the guest has no fio) that writes a pattern and verifies it back; progress
is sampled and a stall detector ends runs that stop moving.  The outcome
(clean / pressure / unproven / stall / hung / io-error / corruption / panic)
is compared to ``fixtures/dma_expectations.toml``. Clean and pressure need
proof that the DMA went through the pool at the requested size (the kernel's
pool size, io_tlb_used above 0 during the load, VIRTIO_F_ACCESS_PLATFORM
negotiated; ``pytest_sev.dma.bounce``) and that fio's verify pass read back
everything written: without it the run is "unproven", a failure in every
mode. A stall needs a live guest (QEMU running, QMP and the shell answering)
and SWIOTLB evidence that the pool ran dry; a load that stops without that
evidence, or a guest that stops answering, is "hung", a failure in every mode;
a QEMU that dies fails the test with GuestDied, whatever the table expects.
The evidence is in the summary JSON.

Modes: the plain control (``swiotlb=N,force`` -- ``swiotlb=force`` for
``auto`` -- plus ``iommu_platform=on`` on the virtio device, which bounces
every streaming DMA like an SEV guest) always runs; the SEV / SEV-ES / SEV-SNP
guest rows run when the mode table allows (``--sev-es`` runs the SEV rows too,
``--sev-snp`` demands the SNP rows; an SNP guest bounces its DMA as an SEV-ES
guest does) and are always enforced: their expected outcome is the runner's baseline
(``--dma-baseline``), else the plain-forced row; ``--dma-record-baseline
FILE`` records this run's.
virtio-scsi runs at the sizes where virtio-blk is expected to stall, to
check the README's advice.  The disk is throttled in QEMU so requests wait
in the device with their bounce buffers mapped, as on real storage: the
guest's CPU under TCG is otherwise the bottleneck and the pool never fills.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import allure
import pytest
from filelock import FileLock

from pytest_sev.dma import baseline, summary
from pytest_sev.dma.expectations import NEVER, load_expectations
from pytest_sev.dma.fio import FioSpec
from pytest_sev.dma.load import LoadSpec
from pytest_sev.dma.sizes import default_matrix, parse_size
from pytest_sev.errors import PytestSevError
from pytest_sev.guest.specs import cbitpos_of, plain_spec, reduced_phys_bits_of, sev_spec, snp_spec
from pytest_sev.model.spec import Disk
from pytest_sev.plugin.state import run_config as session_run_config
from pytest_sev.proofs import witnesses
from pytest_sev.proofs.dma_run import run_dma_load
from pytest_sev.reporting.runner_name import runner_name
from pytest_sev.sev import signatures

pytestmark = [pytest.mark.qemu, allure.epic("pytest-sev"), allure.feature("dma")]

#: QEMU throttle on the scratch disk (see the module docstring).  16 MiB/s:
#: at 32 MiB/s the rows took half the time, but the 8M pool's pressure became
#: a matter of luck (peak 2644-3813 of 4096 slots, once no "buffer is full" at
#: all: a "clean" that should be "pressure"), so the slower device stays.
DEVICE_BPS = 16 << 20
STALL_SECONDS = 20.0
#: idle seconds that decide a stall once the kernel says the pool is full
#: (pytest_sev.dma.stall): a throttled 4 MiB request takes 0.25 s here, so
#: 3 s without one completed sector is some 12 requests' time. Measured on
#: the pressure rows (2M and 8M, pool full from their first second, seven
#: runs, two rows at once): no 0.5 s sample ever went by without a completed
#: sector but one (0.53 s); the stall rows' pool was full 1.1-1.8 s into the load.
CONCLUSIVE_SECONDS = 3.0
DEADLINE_SECONDS = 240.0
#: seconds between progress samples (the pool's io_tlb_used is read in each):
#: a 64 MiB write-and-verify lasts about 12 s, and the bounce proof of a clean
#: row needs a sample that sees the pool in use (6.1 has no hiwater counter)
SAMPLE_EVERY = 0.5
LOAD = LoadSpec(tool="fio", fio=FioSpec(size_mib=16))
EXPECTATIONS = load_expectations()
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex[:12]
KINDS = ("plain-forced", "sev", "sev-es", "sev-snp")
MARKS = {"plain-forced": pytest.mark.plain, "sev": pytest.mark.sev, "sev-es": pytest.mark.sev_es,
         "sev-snp": pytest.mark.sev_snp}
STALE_RUN_SECONDS = 6 * 3600  # other runs' parts older than this are merged or abandoned


def _sizes(config) -> list:
    """--dma-sizes / ini dma_sizes (validated at start-up), else the default matrix."""
    chosen = session_run_config(config).dma_sizes
    return [parse_size(s) for s in chosen] if chosen else default_matrix()


def _largest_pool_first(sizes: list) -> list:
    """The run order of the pool sizes: ``auto`` and the large pools (a whole
    write-and-verify, the longest rows) before the small ones that stall (decided
    in seconds), so that under xdist the short rows fill the end of the run
    instead of one worker running a long row alone while the other waits."""
    return sorted(sizes, key=lambda size: -float("inf") if size.bytes is None else -size.bytes)


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    cases, ids = [], []
    for size in _largest_pool_first(_sizes(metafunc.config)):
        # every kind's virtio-blk row, then virtio-scsi where blk is expected to stall (the
        # README's advice): two rows of one kind are never neighbours, so under xdist a worker's
        # next test (it holds one queued) is seldom a second long row while another worker idles
        for bus in ("virtio-blk", "virtio-scsi"):
            for mode in KINDS:
                row = EXPECTATIONS.row(mode, "virtio-blk", size)
                if bus == "virtio-scsi" and (row is None or row.outcome != "stall"):
                    continue
                cases.append(pytest.param((mode, bus, size), marks=[MARKS[mode]]))
                ids.append(f"{mode}-{bus}-{size.label}")
    metafunc.parametrize("case", cases, ids=ids)


def _results_dir(config) -> Path:
    return Path(config.rootpath) / "reports" / "dma"


def _guest_spec(run_config, host, mode, bus, size, disk):
    memory = 1024 + (size.bytes >> 20 if size.bytes else 0)
    if mode == "plain-forced":
        disks = (Disk(disk, bus=bus, iommu_platform=True, disable_legacy=True, throttle_bps=DEVICE_BPS),)
        return plain_spec(run_config, name=f"dma-{bus}-{size.label}", with_fio=True, memory_mib=memory,
                          append=size.cmdline(force=True), disks=disks)
    # said explicitly: a QEMU that does not imply it for SEV would leave the device bypassing the pool
    disks = (Disk(disk, bus=bus, iommu_platform=True, disable_legacy=True, throttle_bps=DEVICE_BPS),)
    if mode == "sev-snp":
        return snp_spec(run_config, cbitpos_of(host), reduced_phys_bits_of(host),
                        name=f"dma-{mode}-{bus}-{size.label}", with_fio=True, memory_mib=memory,
                        append=size.cmdline(force=False), disks=disks)
    return sev_spec(run_config, mode, cbitpos_of(host),
                    name=f"dma-{mode}-{bus}-{size.label}", with_fio=True, memory_mib=memory,
                    append=size.cmdline(force=False), disks=disks)


@pytest.fixture
def scratch_disk():
    """A sparse raw disk the load owns, in a private directory, always removed."""
    d = Path(tempfile.mkdtemp(prefix="sev-dma-"))
    disk = d / "scratch.img"
    with open(disk, "wb") as f:
        f.truncate(max(LOAD.disk_bytes, 128 << 20))
    yield disk
    shutil.rmtree(d, ignore_errors=True)


def _expectations(run_config):
    if run_config.dma_baseline is not None:
        return EXPECTATIONS.with_baseline(baseline.load_baseline(run_config.dma_baseline))
    return EXPECTATIONS


def test_dma_under_load(case, request, run_config, host, guest_factory, scratch_disk):
    mode, bus, size = case
    allure.dynamic.story(f"{mode} {bus} {size.label}")
    try:
        guest = guest_factory(_guest_spec(run_config, host, mode, bus, size, scratch_disk))
    except PytestSevError as exc:  # a known field failure (QEMU stderr, console) goes first
        known = witnesses.diagnose_error(exc)
        if not known:
            raise
        pytest.fail(f"{known}\n{exc}", pytrace=False)
    dev = "/dev/vda" if bus == "virtio-blk" else "/dev/sda"
    run = run_dma_load(guest, dev, stall_seconds=STALL_SECONDS, conclusive_seconds=CONCLUSIVE_SECONDS,
                       deadline_seconds=DEADLINE_SECONDS, sample_every=SAMPLE_EVERY, spec=LOAD,
                       size=size, kind=mode, bus=bus)
    verdict = _expectations(run_config).check(mode, bus, size, run.outcome)
    hiwater = run.counters.used_hiwater if run.counters else None
    result = summary.SizeResult(
        size=size.label, bus=bus, mode=mode, outcome=run.outcome, reason=run.reason,
        mib_s=run.result.mib_s if run.result else None, iops=run.result.iops if run.result else None,
        full_messages=run.kernel.full_count, reported_pool_bytes=run.kernel.reported_pool_bytes
        or (run.counters.pool_bytes if run.counters else None),
        peak_used_slots=run.peak_used_slots, hiwater_slots=hiwater, duration_s=round(run.seconds, 1),
        expected=verdict.expected, verdict=verdict.message,
        bounce=run.bounce.to_json() if run.bounce else None)
    parts = _results_dir(request.config) / "runs" / RUN_ID
    parts.mkdir(parents=True, exist_ok=True)
    (parts / f"{mode}-{bus}-{size.label}.json").write_text(json.dumps(summary.to_json([result])))
    allure.attach(json.dumps(summary.to_json([result]), indent=1), name=f"dma {mode} {bus} {size.label}",
                  attachment_type=allure.attachment_type.JSON)
    allure.attach("\n".join(run.samples), name="progress samples", attachment_type=allure.attachment_type.TEXT)
    if run_config.dma_record_baseline is not None and mode != "plain-forced":
        with FileLock(str(run_config.dma_record_baseline) + ".lock"):
            baseline.record(run_config.dma_record_baseline, mode, bus, size.label, run.outcome,
                            runner=runner_name(), reason=run.reason)
    known = signatures.explain({"guest dmesg": run.kernel_text, "guest cmdline": guest.spec.append})
    prefix = known + "\n" if known else ""  # a named field failure goes first
    if run.outcome in NEVER:
        pytest.fail(f"{prefix}{run.outcome}: {run.reason}", pytrace=False)
    if verdict.fails:
        pytest.fail(prefix + verdict.message, pytrace=False)
    if not verdict.ok:
        print(f"\nDMA expectation differs (unmeasured plain-forced row, reported only): {verdict.message}")


def _prune_runs(runs: Path, keep: str, now: float | None = None) -> list[str]:
    """Drop other runs' parts older than STALE_RUN_SECONDS so reports/dma/runs
    does not grow forever. This run's own parts stay: with xdist every worker
    merges them all, the last one writing the complete summary."""
    now = time.time() if now is None else now
    dropped = []
    for d in runs.iterdir() if runs.is_dir() else ():
        if d.is_dir() and d.name != keep and now - d.stat().st_mtime > STALE_RUN_SECONDS:
            shutil.rmtree(d, ignore_errors=True)
            dropped.append(d.name)
    return dropped


@pytest.fixture(scope="module", autouse=True)
def dma_summary(request):
    """After the matrix: merge this run's results into JSON + PNG under reports/dma."""
    yield
    out = _results_dir(request.config)
    parts = out / "runs" / RUN_ID
    if not parts.is_dir():
        return
    with FileLock(str(out / ".summary.lock")):
        results = []
        for f in sorted(parts.glob("*.json")):
            results += summary.from_json(json.loads(f.read_text()))
        if not results:
            return
        json_path = summary.write_json(results, out)
        png_path = summary.write_plot(
            results, out, title=f"SWIOTLB pool size vs outcome (device throttled to {DEVICE_BPS >> 20} MiB/s)")
        _prune_runs(out / "runs", keep=RUN_ID)
    allure.attach.file(str(json_path), name="dma summary", attachment_type=allure.attachment_type.JSON)
    allure.attach.file(str(png_path), name="dma plot", attachment_type=allure.attachment_type.PNG)
