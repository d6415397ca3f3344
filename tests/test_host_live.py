"""The probe's I/O on this machine and on synthetic roots: real QEMU for the
QMP answer (``-machine none``, well under a second), real device reads."""

import os
import shutil
from pathlib import Path

import pytest

from pytest_sev.host import CHECK_NAMES, SubprocessRunner, probe_host
from pytest_sev.host.commands import ReplayRunner
from pytest_sev.host.evidence import gather
from pytest_sev.host.parse_cpu import parse_cpuinfo
from pytest_sev.host.qmp_probe import QmpAnswer, query_sev_capabilities
from pytest_sev.host.recorded import _write_sparse

QEMU = shutil.which("qemu-system-x86_64")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")


def no_children_left() -> bool:
    """No process (zombie or alive) has this test process as its parent."""
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        if stat.rsplit(") ", 1)[1].split()[1] == me:
            return False
    return True


@needs_qemu
def test_qmp_probe_under_tcg_gives_the_error_text():
    answer = query_sev_capabilities(QEMU, "tcg")
    assert answer.launched and not answer.ok
    assert answer.error_class == "GenericError"
    assert answer.error_desc == "KVM not enabled"  # measured-here.md, QEMU 7.2 under TCG
    assert no_children_left()


def test_qmp_probe_of_a_missing_binary(tmp_path):
    answer = query_sev_capabilities(str(tmp_path / "no-such-qemu"), "tcg")
    assert not answer.launched and "cannot start" in answer.error_desc


def test_qmp_probe_of_a_qemu_that_exits_at_once(tmp_path):
    fake = tmp_path / "qemu-broken"
    fake.write_text("#!/bin/sh\necho 'qemu: could not load PC BIOS' >&2\nexit 1\n")
    fake.chmod(0o755)
    answer = query_sev_capabilities(str(fake), "tcg", timeout=5)
    assert not answer.launched and "could not load PC BIOS" in answer.error_desc
    assert no_children_left()


def test_qmp_answer_round_trips():
    for a in (QmpAnswer("kvm", result={"cbitpos": 51}), QmpAnswer("tcg", error_class="GenericError",
              error_desc="KVM not enabled"), QmpAnswer("tcg", error_desc="cannot start", launched=False)):
        assert QmpAnswer.from_dict(a.to_dict()) == a


def test_sparse_cpuid_file_is_read_by_leaf_offset(tmp_path):
    """The pread layout: leaf N's 16 bytes live at offset N."""
    root = tmp_path / "root"
    regs = bytes.fromhex("3fb00100" "73400000" "fd010000" "64000000")
    top = (0x80000023).to_bytes(4, "little") + bytes(12)
    _write_sparse(root / "dev/cpu/0/cpuid", {0x80000000: top, 0x8000001F: regs})
    (root / "proc").mkdir()
    ev = gather(root, ReplayRunner({}), "qemu-system-x86_64", None, None,
                qmp=lambda q, a: QmpAnswer(a, error_desc="skipped", launched=False))
    assert ev.cpuid[0x8000001F].ebx & 0x3F == 51
    assert ev.cpuid[0x8000001F].edx == 100
    with pytest.raises(ValueError):
        _write_sparse(root / "x", {0: bytes(16), 1: bytes(16)})  # leaves 0 and 1 overlap in a file


def test_empty_root_gives_every_check_and_no_readiness(tmp_path):
    runner = ReplayRunner({})
    report = probe_host(tmp_path, runner, qmp=lambda q, a: QmpAnswer(a, error_desc="no qemu", launched=False))
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert not report.ready_for("sev") and not report.ready_for("sev-es")
    assert report.check("syscfg_smee").status == "skip"
    assert report.check("cpu_vendor").status == "skip"
    assert "modprobe cpuid" in runner.asked  # it tried to load the driver, tolerated the failure


def test_this_machine():
    """Probe this machine for real; the facts must agree with /proc/cpuinfo."""
    report = probe_host()
    info = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.facts["cpu_vendor"] == info.vendor
    assert report.facts["cpu_model"] == info.model_name
    assert report.facts["family_model_stepping"] == f"{info.family}/{info.model}/{info.stepping}"
    assert report.check("cpu_vendor").status == ("pass" if info.vendor == "AuthenticAMD" else "fail")
    if not Path("/dev/cpu/0/msr").exists() and shutil.which("rdmsr") is None:
        # unreadable MSR: the kernel's answer (the sev flag stays only when SMEE is on) or unknown
        assert report.check("syscfg_smee").status == ("pass" if "sev" in info.flags else "skip")
    if not info.flags & {"svm", "vmx"}:
        assert report.check("dev_kvm").status in ("fail",)
        assert report.facts["qemu_accel"] == "tcg"
        if QEMU:
            assert "KVM not enabled" in report.check("qmp_sev_capabilities").value
    if "sev_es" not in info.flags and not Path("/dev/sev").exists():
        assert not report.ready_for("sev-es")
    assert no_children_left()


def test_subprocess_runner():
    r = SubprocessRunner(timeout=5)
    assert r.run(["uname", "-r"]) == (0, os.uname().release + "\n")
    assert r.run(["/nonexistent/tool"])[0] == 127
    assert SubprocessRunner(timeout=0.2).run(["sleep", "10"]) == (124, "")
