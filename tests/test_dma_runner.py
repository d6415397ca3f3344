"""The DMA runner never hangs, and a frozen VM is no stall: a guest that stops
answering (the whole VM frozen) ends as ``hung`` naming QEMU's silent monitor,
after one unanswered progress sample and one unanswered QMP query, and is torn
down; the test's own timeout is the guard, no wall-clock assertion.

A stall needs a live guest (QEMU running the VM, QMP and the shell answering)
with SWIOTLB evidence (issue 21); the injected faults without QEMU are in
tests/test_dma_run_doubles.py."""

import os
import signal

import pytest

from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.proofs.dma_run import PROGRESS_TIMEOUT, QMP_TIMEOUT, run_dma_load

pytestmark = pytest.mark.qemu

STALL = 8.0


# boot + one unanswered sample + the QMP query + staged teardown, far below
# the 600 s default: hitting this guard means the runner waited on the guest
@pytest.mark.timeout(150 + STALL + 3 * PROGRESS_TIMEOUT + QMP_TIMEOUT)
def test_frozen_guest_is_hung_not_a_stall_and_is_torn_down(tmp_path, qemu_processes):
    disk = tmp_path / "scratch.img"
    with open(disk, "wb") as f:
        f.truncate(128 << 20)
    from pytest_sev.model.spec import Disk
    spec = default_guest_spec(name="frozen-dma", with_fio=False,
                              disks=(Disk(disk, iommu_platform=True, disable_legacy=True),))
    with Guest(spec) as guest:
        guest.check("true")
        # freeze the whole VM right after the load starts: nothing answers any more
        real_check = guest.check

        def check_then_freeze(cmd, timeout=60.0):
            out = real_check(cmd, timeout)
            os.kill(guest.process.pid, signal.SIGSTOP)
            return out

        guest.check = check_then_freeze
        run = run_dma_load(guest, "/dev/vda", stall_seconds=STALL, deadline_seconds=600)
        assert run.outcome == "hung", run.reason
        assert run.guest_wedged and len(run.samples) == 0
        assert run.observed.qemu_alive and run.observed.qmp_status is None
        assert "QEMU's monitor does not answer" in run.reason and "the VM is frozen" in run.reason
        assert "stall" not in run.outcome
    assert guest.shutdown_stage == "SIGKILL"  # a frozen QEMU answers neither poweroff nor quit
    assert qemu_processes("frozen-dma") == []
