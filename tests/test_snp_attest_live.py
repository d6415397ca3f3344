"""The SNP report fetch on a real plain guest (QEMU, TCG, the default 6.1 guest): unknown, never a report.

Why a real boot: the fetch is shell commands over the serial console; only
the real guest shows that the probe runs in its busybox shell, that a
kernel without configfs-tsm is named as such (Debian 12's cloud 6.1 has
CONFIG_CONFIGFS_FS=m outside the initramfs and no CONFIG_VIRT_DRIVERS, so
neither ``/sys/kernel/config/tsm/report`` nor ``/dev/sev-guest``), and that
nothing of a report comes back from a guest that has none.
"""

from __future__ import annotations

import secrets

import pytest

from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.proofs.snp_attest import SEV_GUEST_DEVICE, TSM_REPORT_DIR, fetch_report

pytestmark = pytest.mark.qemu


@pytest.mark.timeout(300)
def test_plain_default_guest_has_no_snp_report(qemu_processes):
    spec = default_guest_spec(name="snp-fetch-plain")
    with Guest(spec) as guest:
        result = fetch_report(guest, secrets.token_bytes(64), timeout=60)
        # the guest is still usable afterwards: the fetch left its shell answering
        assert guest.check("echo alive", timeout=30).strip() == "alive"
    assert result.status == "unknown" and result.report is None and not result.ok, result.describe()
    for what in (TSM_REPORT_DIR, SEV_GUEST_DEVICE, "CONFIG_TSM_REPORTS", "CONFIG_SEV_GUEST"):
        assert what in result.reason, f"{what} not named: {result.reason}"
    # what the 6.1 guest itself said when configfs could not be mounted is kept in the reason
    assert "configfs" in result.reason.split("the guest said:", 1)[-1], result.reason
    print(f"\nplain default guest: {result.describe()}")
    assert qemu_processes("snp-fetch-plain") == []
