"""Real guests through a real libvirtd: the libvirt launcher boots, answers on
its console and over QMP passthrough, launches what launch-qemu.sh would,
honours no_reboot, and ends in a named failure and a clean libvirt when its
QEMU or libvirtd itself is killed.

The daemon is started here when none answers (tests never assume one runs);
each test names its guest with a fresh token so the leak checks look only
at what it started.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from pytest_sev.errors import GuestDied
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.model.spec import Disk
from pytest_sev.qemu.argv import launch_argv
from pytest_sev.qemu.binary import qemu_version, resolve_qemu
from pytest_sev.qemu.qmp import ExecuteError

#: one xdist group: these tests start, kill and restart the one libvirtd of the
#: machine, so under ``-n`` they run in one worker, one after another
pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("libvirtd")]


@pytest.fixture(scope="module")
def libvirtd():
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (pip install -e '.[test]')")
    from pytest_sev.libvirt import connection
    if not os.path.exists("/usr/sbin/libvirtd"):
        pytest.skip("libvirtd is not installed (scripts/setup.sh installs libvirt-daemon-system)")
    connection.ensure_daemon()
    return connection


@pytest.fixture
def token():
    return "lv" + secrets.token_hex(4)


@pytest.fixture
def leftovers(libvirtd, qemu_processes):
    """``leftovers(token)``: domains libvirt still knows and QEMU processes still running."""
    def check(token: str, wait: float = 20.0) -> tuple[list[str], list[int]]:
        deadline = time.monotonic() + wait
        while True:
            conn = libvirtd.connect()
            try:
                doms = [n for n in libvirtd.our_domains(conn) if token in n]
            finally:
                conn.close()
            procs = qemu_processes(token)
            if (not doms and not procs) or time.monotonic() > deadline:
                for stale in libvirtd.QEMU_LOG_DIR.glob(f"*{token}*.log"):  # libvirt's own, per domain
                    stale.unlink()
                return doms, procs
            time.sleep(0.5)
    return check


def _guest(spec, tmp_path):
    from pytest_sev.libvirt.guest import LibvirtGuest
    return LibvirtGuest(spec, workdir=tmp_path / "g", keep_workdir=True)


def test_plain_guest_through_libvirt(tmp_path, token, libvirtd, leftovers):
    """OVMF, a virtio disk with iommu_platform (the DMA plain-forced shape):
    console, QMP, launch-qemu.sh parity of libvirt's QEMU argv, and a guest
    reboot that ends the domain as -no-reboot would."""
    from pytest_sev.libvirt import parity
    disk = tmp_path / "scratch.img"
    disk.write_bytes(b"\0" * (1 << 20))
    spec = default_guest_spec(name=token, firmware="ovmf", memory_mib=512,
                              disks=(Disk(disk, iommu_platform=True, disable_legacy=True),))
    with _guest(spec, tmp_path) as g:
        assert g.run("cat /proc/cmdline")[0].startswith(spec.append)  # OVMF appends initrd=initrd
        assert g.check("cat /sys/block/vda/size").strip() == "2048"
        assert g.qmp.execute("query-status")["status"] == "running"
        with pytest.raises(ExecuteError) as err:
            g.qmp.execute("no-such-command")
        assert err.value.error_class == "CommandNotFound"
        assert g.argv and "guest=" + g.domain_name in " ".join(g.argv)
        qemu = resolve_qemu("qemu-system-x86_64")
        script = launch_argv(spec, qemu=qemu, accel="tcg", qemu_version=qemu_version(qemu)[:2])
        assert parity.compare(g.argv, script, ovmf_code=str(spec.firmware.code)) == []
        g.console.sendline("reboot -f")  # no_reboot: the domain ends instead of rebooting
        deadline = time.monotonic() + 60
        while g.alive and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not g.alive, "the guest rebooted instead of ending (on_reboot=destroy)"
    assert g.shutdown_stage == "exited by itself"
    assert "qmp transcript" in g.logs and '"via": "libvirt"' in g.logs["qmp transcript"].read_text()
    assert leftovers(token) == ([], [])


@pytest.mark.parametrize("owner_continues", [False, True])
def test_before_boot_step_sees_the_domain_before_its_first_instruction(tmp_path, token, leftovers,
                                                                      owner_continues):
    """An attested launch's owner step under libvirt: the domain is still paused
    when it runs (the firmware has not started: the console is empty), and the
    guest boots whether the step sends ``cont`` itself (as attested_launch
    does) or leaves the resume to the launcher."""
    spec = default_guest_spec(name=token, memory_mib=512, paused=True)
    seen = []

    def before_boot(qmp):
        seen.append((qmp.execute("query-status"), g.logs["console log"].read_bytes()))
        if owner_continues:
            qmp.execute("cont")

    g = _guest(spec, tmp_path)
    g.start(before_boot=before_boot)
    try:
        assert g.run("echo booted")[0].strip() == "booted"
    finally:
        g.close()
    status, console = seen[0]
    assert status["running"] is False and status["status"] in ("paused", "prelaunch"), status
    assert console == b""
    assert leftovers(token) == ([], [])


def test_before_boot_step_needs_a_paused_spec(tmp_path, token, leftovers):
    from pytest_sev.errors import GuestLaunchError
    g = _guest(default_guest_spec(name=token, memory_mib=512), tmp_path)
    with pytest.raises(GuestLaunchError, match="needs a paused spec"):
        g.start(before_boot=lambda qmp: None)
    g.close()
    assert leftovers(token) == ([], [])


def test_qemu_killed_from_outside_fails_clearly(tmp_path, token, leftovers):
    with _guest(default_guest_spec(name=token), tmp_path) as g:
        os.kill(g.qemu_pid, signal.SIGKILL)
        with pytest.raises(GuestDied, match="QEMU exited while waiting for command 'true'") as err:
            g.run("true", timeout=30)
        assert f"libvirt domain {g.domain_name}: QEMU (pid {g.qemu_pid}) is gone" in str(err.value)
        with pytest.raises(GuestDied):
            g.qmp.execute("query-status")
    assert g.shutdown_stage == "exited by itself"
    assert leftovers(token) == ([], [])


def test_libvirtd_killed_mid_test_fails_clearly_and_leaves_nothing(tmp_path, token, libvirtd, leftovers):
    from pytest_sev.libvirt.connection import LibvirtConnectionLost
    try:
        with _guest(default_guest_spec(name=token), tmp_path) as g:
            daemon = libvirtd.daemon_pid()
            assert daemon is not None, "libvirtd keeps no pid file: cannot kill it by id"
            os.kill(daemon, signal.SIGKILL)
            # gone means nothing accepts on its socket either: once, in a clean-clone CI run with three
            # workers, the socket still answered after the pid was gone (cause not found; perhaps a
            # child process forked at the kill held the listening socket for a moment)
            deadline = time.monotonic() + 10
            while (libvirtd.pid_alive(daemon) or libvirtd.daemon_answers()) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert g.run("echo still-here") == ("still-here\n", 0)  # QEMU outlives its daemon
            with pytest.raises(LibvirtConnectionLost, match="libvirtd stopped answering while QMP") as err:
                g.qmp.execute("query-status")
            assert "does not answer on /run/libvirt/libvirt-sock" in str(err.value)
        assert g.shutdown_stage == "SIGKILL"  # no daemon to destroy it: the recorded QEMU pid
        assert not g.alive
        assert ("virDomainDestroy (reconnected)", "failed: libvirtd does not answer") in g.stop_log
    finally:
        libvirtd.ensure_daemon()  # the next test (and the next run) needs the daemon back
    assert leftovers(token) == ([], [])  # the restarted daemon found the dead QEMU and dropped the domain


def _libvirt_argv(native: str) -> list[str]:
    """``domxml-to-native qemu-argv`` text -> argv (its leading VAR=value environment dropped)."""
    import shlex
    words = shlex.split(native)
    while words and "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)
    return words


@pytest.mark.parametrize("mode", ["sev", "sev-es"])
def test_sev_domain_as_libvirt_would_launch_it(tmp_path, mode, libvirtd):
    """What libvirt would run for the SEV/SEV-ES domain, compared with
    launch-qemu.sh's argv; where libvirt has no SEV it says why, and that is
    the skip reason (this TCG container: "SEV launch security is not
    supported with this QEMU binary")."""
    import libvirt

    from pytest_sev.libvirt import parity
    from pytest_sev.libvirt.domain_xml import DomainOptions, domain_name, domain_xml
    from pytest_sev.model.spec import SevLaunch
    from pytest_sev.sev.policy import policy_for
    spec = default_guest_spec(name="parity", firmware="ovmf",
                              sev=SevLaunch(mode, policy_for(mode), cbitpos=51))  # type: ignore[arg-type]
    xml = domain_xml(spec, DomainOptions(domain_name(spec, "n"), domain_type="kvm", nvram=tmp_path / "V.fd"))
    conn = libvirtd.connect()
    try:
        native = conn.domainXMLToNative("qemu-argv", xml, 0)
    except libvirt.libvirtError as exc:
        pytest.skip(f"libvirt would not launch an {mode} domain here: {exc}")
    finally:
        conn.close()
    qemu = resolve_qemu("qemu-system-x86_64")
    script = launch_argv(spec, qemu=qemu, accel="kvm", qemu_version=qemu_version(qemu)[:2])
    assert parity.compare(_libvirt_argv(native), script, ovmf_code=str(spec.firmware.code)) == []


def test_virsh_sev_check_is_determined_with_a_real_daemon(libvirtd):
    """With libvirtd up, the virsh_sev check is decided (pass or fail), never
    skipped; when libvirt has no SEV the check says why in virt-host-validate's words."""
    from pytest_sev.host.checks_tools import virsh_check
    from pytest_sev.host.commands import SubprocessRunner
    from pytest_sev.host.evidence import Evidence
    runner = SubprocessRunner()
    ev = Evidence(virsh=runner.run(["virsh", "domcapabilities"]),
                  virt_host_validate=runner.run(["virt-host-validate", "qemu"]))
    check = virsh_check(ev, None)
    assert check.status in ("pass", "fail"), check.value
    if check.status == "fail" and "svm" not in open("/proc/cpuinfo").read():
        assert "virt-host-validate qemu: hardware virtualization: FAIL" in check.value, check.value


def test_domain_of_a_harness_killed_outright_is_swept(tmp_path, token, libvirtd, leftovers):
    """QEMU's PDEATHSIG has no libvirt equivalent: a harness killed with
    SIGKILL leaves its transient domain running. The owner pid in the domain's
    <metadata> lets the next libvirt run destroy it (and only it)."""
    import subprocess

    from pytest_sev.libvirt.domain_xml import DomainOptions, domain_name, domain_xml
    dead = subprocess.Popen(["true"])
    dead.wait()
    spec = default_guest_spec(name=token)
    conn = libvirtd.connect()
    try:
        names = {}
        for who, pid in (("orphan", dead.pid), ("owned", os.getpid())):
            names[who] = domain_name(spec, who)
            xml = domain_xml(spec, DomainOptions(names[who], owner_pid=pid))
            conn.createXML(xml, libvirtd.libvirt_module().VIR_DOMAIN_START_PAUSED)
        swept = libvirtd.sweep_orphans(conn)
        assert names["orphan"] in swept and names["owned"] not in swept
        assert names["owned"] in libvirtd.our_domains(conn)
    finally:
        for dom in conn.listAllDomains(0):
            if token in dom.name():
                dom.destroy()
        conn.close()
    assert leftovers(token) == ([], [])
