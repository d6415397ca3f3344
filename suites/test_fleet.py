"""Fleet: what parallel guests meet on a real runner.

The guest budget makes a guest wait for a free SEV-ES ASID; an ASID taken
behind its back (another tenant, a cgroup limit) must still end in a named
failure, not a hang or a bare QEMU exit.  Here a misc cgroup limit of one
SEV-ES ASID stands in for the other tenant: the first guest runs, the second
fails naming ASID exhaustion.  Needs an SEV-ES host (the marker applies the
mode table) and cgroup v2 with the misc controller.
"""

from __future__ import annotations

import os
from pathlib import Path

import allure
import pytest

from pytest_sev.errors import GuestLaunchError
from pytest_sev.guest.specs import cbitpos_of, sev_spec

pytestmark = [pytest.mark.qemu, allure.epic("pytest-sev"), allure.feature("fleet")]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _own_cgroup() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return CGROUP_ROOT / line[3:].lstrip("/")
    raise FileNotFoundError("no cgroup v2 entry in /proc/self/cgroup")


@pytest.fixture
def one_sev_es_asid_cgroup():
    """This process (and the QEMUs it starts) in a cgroup allowing one SEV-ES ASID."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.is_file() or "misc" not in controllers.read_text().split():
        pytest.skip("needs cgroup v2 with the misc controller at /sys/fs/cgroup (kernel >= 5.13, CONFIG_CGROUP_MISC)")
    if os.geteuid() != 0:
        pytest.skip("moving a process between cgroups needs root")
    home = _own_cgroup()
    (CGROUP_ROOT / "cgroup.subtree_control").write_text("+misc")
    limited = CGROUP_ROOT / f"pytest-sev-asid-{os.getpid()}"
    limited.mkdir(exist_ok=True)
    (limited / "misc.max").write_text("sev_es 1\n")
    (limited / "cgroup.procs").write_text(str(os.getpid()))
    try:
        yield limited
    finally:
        (home / "cgroup.procs").write_text(str(os.getpid()))
        try:
            limited.rmdir()
        except OSError:  # a QEMU still in it is torn down by the factory; the next run reuses nothing
            pass


@pytest.mark.sev_es
def test_second_sev_es_guest_over_the_asid_limit_fails_named(run_config, host, guest_factory,
                                                              one_sev_es_asid_cgroup):
    spec = sev_spec(run_config, "sev-es", cbitpos_of(host), memory_mib=512)
    first = guest_factory(spec.with_(name="asid-1"))
    assert first.alive
    with pytest.raises(GuestLaunchError, match="SEV ASIDs exhausted"):
        guest_factory(spec.with_(name="asid-2"))
