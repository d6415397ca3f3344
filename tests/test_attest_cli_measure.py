"""The ``measure`` command.

Known-answer: the kat.json SEV-ES 4-vCPU digest. Cross-implementation:
for the default OVMF installed here, digests equal those printed by the
``sev-snp-measure`` command line (a separate process of the same library, so
this shows our input mapping, not an independent measurement).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sev.attest.measure import LaunchInputs, launch_digest, ovmf_facts
from pytest_sev.cli.measure import main

KAT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat"
AMDSEV = str(KAT_DIR / "sev-crate" / "measurement" / "ovmf_AmdSev_suffix.bin")
DEFAULT_OVMF = "/usr/share/OVMF/OVMF_CODE_4M.fd"
needs_ovmf = pytest.mark.skipif(not os.path.exists(DEFAULT_OVMF), reason=f"{DEFAULT_OVMF} not installed")


def _last_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_kat_digest_sev_es_4_vcpus(capsys: pytest.CaptureFixture[str]) -> None:
    """Known-answer: kat.json's SEV-ES/4 vCPU/EPYC-v4 case on the AmdSev OVMF.

    That case measures kernel and initrd as empty files (/dev/null, no append),
    so the command needs ``--kernel /dev/null --initrd /dev/null`` to print
    0dccbcab...de91; without them the AmdSev OVMF alone gives another digest.
    """
    case = next(c for c in json.loads((KAT_DIR / "kat.json").read_text())["launch_digest"]["cases"]
                if c["mode"] == "sev-es" and c.get("vcpus") == 4)
    argv = ["measure", "--mode", "sev-es", "--ovmf", AMDSEV, "--vcpus", "4", "--vcpu-type", "EPYC-v4"]
    assert _last_line(capsys, argv + ["--kernel", "/dev/null", "--initrd", "/dev/null"]) == case["expected_hex"]
    assert case["expected_hex"].startswith("0dccbcab") and case["expected_hex"].endswith("de91")
    assert _last_line(capsys, argv) != case["expected_hex"]


def _ssm_cli(*args: str) -> str:
    exe = shutil.which("sev-snp-measure", path=os.path.dirname(sys.executable)) or shutil.which("sev-snp-measure")
    assert exe, "sev-snp-measure command line not installed"
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]


@needs_ovmf
@pytest.mark.parametrize("vcpus", [1, 4])
@pytest.mark.parametrize("mode", ["sev", "sev-es"])
def test_default_ovmf_matches_sev_snp_measure_cli(capsys: pytest.CaptureFixture[str], mode: str, vcpus: int) -> None:
    """The distro OVMF_CODE_4M.fd: our digest equals ``sev-snp-measure``'s command line."""
    ours = _last_line(capsys, ["--mode", mode, "--ovmf", DEFAULT_OVMF, "--vcpus", str(vcpus), "--vcpu-type", "EPYC"])
    theirs = _ssm_cli("--mode", "seves" if mode == "sev-es" else "sev", "--vcpus", str(vcpus),
                      "--vcpu-type", "EPYC", "--ovmf", DEFAULT_OVMF)
    assert ours == theirs


@needs_ovmf
def test_default_ovmf_facts() -> None:
    """OVMF_CODE_4M.fd (Debian 12 'ovmf', OvmfPkgX64) has the SEV-ES reset vector, so SEV and
    SEV-ES digests exist, but no kernel-hashes table and an empty launch-secret area: kernel
    measurement and launch secrets need an AmdSevX64 build."""
    f = ovmf_facts(DEFAULT_OVMF)
    assert f.sev_es_reset_eip is not None and not f.kernel_hashes and f.secret_area is None
    with pytest.raises(Exception, match="doesn't support kernel/initrd/cmdline measurement"):
        launch_digest(LaunchInputs(DEFAULT_OVMF, 1, "EPYC", "/dev/null"), "sev-es")


def test_launch_qemu_sh_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``-sev-es -smp 4 -execpath P`` measures P/share/qemu/OVMF_CODE.fd, 4 x EPYC, SEV-ES."""
    (tmp_path / "share" / "qemu").mkdir(parents=True)
    shutil.copy(AMDSEV, tmp_path / "share" / "qemu" / "OVMF_CODE.fd")
    got = _last_line(capsys, ["-sev-es", "-smp", "4", "-execpath", str(tmp_path)])
    assert got == launch_digest(LaunchInputs(AMDSEV, 4, "EPYC"), "sev-es").hex()
    assert _last_line(capsys, ["-sev-es", "-execpath", str(tmp_path)]) == got  # -smp defaults to 4
    assert _last_line(capsys, ["-sev", "-execpath", str(tmp_path)]) == launch_digest(LaunchInputs(AMDSEV), "sev").hex()


@pytest.mark.parametrize("argv, rc, text", [
    (["-hda", "x.qcow2"], 2, "without -sev or -sev-es"),
    (["--mode", "sev"], 2, "--ovmf"),
    (["--mode", "sev", "--ovmf", AMDSEV, "--append", "x"], 2, "need --kernel"),
    (["--mode", "sev-es", "--ovmf", AMDSEV, "--vcpu-type", "Pentium"], 1, "unknown vCPU type"),
    (["--mode", "sev", "--ovmf", "/nonexistent/OVMF.fd"], 1, "cannot read OVMF"),
])
def test_errors(capsys: pytest.CaptureFixture[str], argv: list[str], rc: int, text: str) -> None:
    assert main(argv) == rc
    assert text in capsys.readouterr().err
