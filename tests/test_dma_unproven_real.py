""""unproven" on a real QEMU guest (TCG, the default 6.1 guest with fio):
a run that completes without touching the pool must not read as clean.

- virtio-blk without ``iommu_platform=on``: the device does not negotiate
  VIRTIO_F_ACCESS_PLATFORM and DMAs guest-physical addresses directly;
- ``swiotlb=N`` without ``force`` on a plain guest with < 4 GiB: the kernel
  sets up no bounce pool for it, nothing is bounced.

Both finish their fio load verified; both must come out ``unproven``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from pytest_sev.dma.fio import FioSpec
from pytest_sev.dma.load import LoadSpec
from pytest_sev.dma.sizes import parse_size
from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.model.spec import Disk
from pytest_sev.proofs.dma_run import run_dma_load

pytestmark = pytest.mark.qemu

CASES = {
    # name: (iommu_platform, swiotlb argument, what the evidence must say)
    "no-iommu-platform": (False, "swiotlb=32768,force", "VIRTIO_F_ACCESS_PLATFORM"),
    "swiotlb-without-force": (True, "swiotlb=32768", "no sign the pool was used"),
}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("case", list(CASES))
def test_unbounced_run_is_unproven(case, qemu_processes):
    iommu, append, why = CASES[case]
    d = Path(tempfile.mkdtemp(prefix="sev-unproven-"))
    try:
        disk = d / "scratch.img"
        with open(disk, "wb") as f:
            f.truncate(128 << 20)
        spec = default_guest_spec(name=f"unproven-{case}", with_fio=True, append=append,
                                  disks=(Disk(disk, iommu_platform=iommu, disable_legacy=True,
                                              throttle_bps=16 << 20),))
        with Guest(spec) as guest:
            run = run_dma_load(guest, "/dev/vda", stall_seconds=20, deadline_seconds=240,
                               spec=LoadSpec(tool="fio", fio=FioSpec(size_mib=16)),
                               size=parse_size("64M"), kind="plain-forced", bus="virtio-blk")
        assert run.outcome == "unproven", f"{run.outcome}: {run.reason}"
        assert run.result is not None and run.result.finished and not run.result.rc  # it did complete
        assert why in run.reason, run.bounce.describe()
        print(f"\n{case}: {run.outcome}: {run.bounce.describe()}")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert qemu_processes(f"unproven-{case}") == []
