"""The ``measure`` command.

Known-answer: the kat.json SEV-ES 4-vCPU digest, and every SNP case of
snp-kat/kat.json (upstream sev-snp-measure's digests) on the last line of
``--mode snp``. Cross-implementation:
for the default OVMF installed here, digests equal those printed by the
``sev-snp-measure`` command line (a separate process of the same library, so
this shows our input mapping, not an independent measurement).
"""

from __future__ import annotations

import base64
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
    (["--mode", "sev", "--ovmf", "/etc/passwd"], 1, "/etc/passwd is not an OVMF image"),
    (["--mode", "sev-es", "--ovmf", "/dev/null"], 1, "/dev/null is not an OVMF image: not a regular file"),
    (["-sev", "-execpath", "/etc"], 1, "cannot read OVMF"),
])
def test_errors(capsys: pytest.CaptureFixture[str], argv: list[str], rc: int, text: str) -> None:
    assert main(argv) == rc
    assert text in capsys.readouterr().err


# ---------------------------------------------------------------- --mode snp

_SNP_KAT_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat"  # copied unchanged from shared/data/snp-kat
_SNP_CASES = [c for c in json.loads((_SNP_KAT_DIR / "kat.json").read_text())["digests"]["cases"]
              if c["mode"] == "snp"]
_SNP_DIGEST_CASES = [c for c in _SNP_CASES if "expect_error" not in c]
_SNP_REFUSED = [c for c in _SNP_CASES if "expect_error" in c]
SNP_DISTRO_OVMF = "/usr/share/ovmf/OVMF.fd"  # Debian 'ovmf': OvmfPkgX64 with SNP metadata


def _snp_argv(case: dict) -> list[str]:
    """The command line for a kat.json SNP case ("empty" kernel/initrd = a zero-length file)."""
    argv = ["measure", "--mode", "snp", "--ovmf", str(_SNP_KAT_DIR / case["ovmf"]), "--vcpus", str(case["vcpus"]),
            "--guest-features", case["guest_features"], "--vmm-type", case["vmm_type"]]
    if case["vcpu_type"]:
        argv += ["--vcpu-type", case["vcpu_type"]]
    for option in ("kernel", "initrd"):
        if case[option]:
            argv += [f"--{option}", "/dev/null" if case[option] == "empty" else case[option]]
    if case["append"] is not None:
        argv += ["--append", case["append"]]
    return argv


@pytest.mark.parametrize("case", _SNP_DIGEST_CASES, ids=[c["name"] for c in _SNP_DIGEST_CASES])
def test_snp_kat_digest_on_last_line(capsys: pytest.CaptureFixture[str], case: dict) -> None:
    """Known-answer: the last line is sev-snp-measure's upstream digest for every SNP case,
    each VMM type, from the OVMF file alone (no precomputed OVMF hash)."""
    assert _last_line(capsys, _snp_argv(case)) == case["digest"]


@pytest.mark.parametrize("case", [c for c in _SNP_DIGEST_CASES if c.get("snp_ovmf_hash")],
                         ids=[c["name"] for c in _SNP_DIGEST_CASES if c.get("snp_ovmf_hash")])
def test_snp_kat_digest_with_given_ovmf_hash(capsys: pytest.CaptureFixture[str], case: dict) -> None:
    """Known-answer: the cases that give a precomputed OVMF hash, fed through --snp-ovmf-hash."""
    assert main(_snp_argv(case) + ["--snp-ovmf-hash", case["snp_ovmf_hash"]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == case["digest"]
    assert f"ovmf pages: given {case['snp_ovmf_hash']}" in lines


@pytest.mark.parametrize("case", _SNP_REFUSED, ids=[c["name"] for c in _SNP_REFUSED])
def test_snp_kat_refused_case(capsys: pytest.CaptureFixture[str], case: dict) -> None:
    """Known-answer: OvmfX64 with a kernel is refused with upstream's reason, on one stderr line."""
    assert main(_snp_argv(case)) == 1
    out = capsys.readouterr()
    assert out.out == "" and case["expect_error"] in out.err and len(out.err.strip().splitlines()) == 1


def test_snp_real_command_line() -> None:
    """``python -m pytest_sev measure --mode snp`` in its own process prints a 4-vCPU case's digest last."""
    case = next(c for c in _SNP_DIGEST_CASES if c["name"] == "test_snp_with_multiple_vcpus_default")
    run = subprocess.run([sys.executable, "-m", "pytest_sev", *_snp_argv(case)], capture_output=True, text=True,
                         check=False, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == case["digest"]
    assert "guest features: 0x21 (SNPActive, DebugSwap)" in run.stdout


def test_snp_id_block_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """With the kat's test keys the id-block lines carry kat.json's key digests, the id-block embeds
    the printed digest, and the digest stays the last line."""
    kat = json.loads((_SNP_KAT_DIR / "kat.json").read_text())["id_block"]
    case = _SNP_DIGEST_CASES[0]
    argv = _snp_argv(case) + ["--id-key", str(_SNP_KAT_DIR / kat["id_key"]),
                              "--author-key", str(_SNP_KAT_DIR / kat["author_key"])]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == case["digest"]
    assert kat["expect_contains"][1] in lines and kat["expect_contains"][2] in lines
    block_b64 = next(ln for ln in lines if "id-block=" in ln).split("id-block=", 1)[1].split(",", 1)[0]
    assert base64.b64decode(block_b64)[:48].hex() == case["digest"]


def _snp_bad(*extra: str) -> list[str]:
    return ["--mode", "snp", "--ovmf", str(_SNP_KAT_DIR / "ovmf_AmdSev_suffix.bin"), "--vcpu-type", "EPYC-v4",
            *extra]


@pytest.mark.parametrize("extra, text", [
    (("--ovmf", "/etc/passwd", "--guest-features", "0x1"), "is not an OVMF image"),
    (("--guest-features", "21"), "0x prefix"),
    (("--guest-features", "0xZZ"), "0x prefix"),
    (("--guest-features", "0x20"), "SNPActive"),
    (("--guest-features", "0x1", "--vcpus", "0"), "at least 1"),
    (("--guest-features", "0x1", "--vcpus", "-2"), "at least 1"),
    ((), "needs --guest-features"),
    (("--guest-features", "0x1", "--vmm-type", "xen"), "unknown VMM type"),
    (("--guest-features", "0x1", "--snp-ovmf-hash", "abcd"), "48 bytes"),
    (("--guest-features", "0x1", "--vmsa", "legacy"), "only for --mode sev-es"),
    (("--guest-features", "0x1", "--append", "x"), "need --kernel"),
    (("--guest-features", "0x1", "--id-key", "k.pem"), "both --id-key and --author-key"),
])
def test_snp_bad_inputs_one_line(capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], text: str) -> None:
    """Bad SNP inputs: exit non-zero, one line on stderr naming the problem, nothing on stdout."""
    assert main(_snp_bad(*extra)) != 0
    out = capsys.readouterr()
    assert out.out == "" and text in out.err and len(out.err.strip().splitlines()) == 1
    assert "Traceback" not in out.err


def test_snp_options_refused_for_sev_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--mode", "sev-es", "--ovmf", AMDSEV, "--guest-features", "0x1", "--vmm-type", "gce"]) == 2
    assert "--guest-features, --vmm-type: only for --mode snp" in capsys.readouterr().err
    assert main(["-sev-snp", "-smp", "4"]) == 2
    assert "--mode snp" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists(SNP_DISTRO_OVMF), reason=f"{SNP_DISTRO_OVMF} not installed")
@pytest.mark.parametrize("vmm", ["QEMU", "ec2", "gce"])
def test_snp_distro_ovmf_matches_sev_snp_measure_cli(capsys: pytest.CaptureFixture[str], vmm: str) -> None:
    """A full 2 MiB OVMF.fd: our SNP digest equals ``sev-snp-measure --mode snp``'s (input mapping)."""
    ours = _last_line(capsys, ["--mode", "snp", "--ovmf", SNP_DISTRO_OVMF, "--vcpus", "2", "--vcpu-type",
                               "EPYC-Milan", "--guest-features", "0x21", "--vmm-type", vmm])
    theirs = _ssm_cli("--mode", "snp", "--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--guest-features", "0x21",
                      "--vmm-type", vmm, "--ovmf", SNP_DISTRO_OVMF)
    assert ours == theirs


@pytest.mark.skipif(not os.path.exists(DEFAULT_OVMF), reason=f"{DEFAULT_OVMF} not installed")
def test_snp_refuses_ovmf_without_sev_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    """Debian's OVMF_CODE_4M.fd has SEV-ES support but no SEV metadata: no SNP launch can use it."""
    assert main(["--mode", "snp", "--ovmf", DEFAULT_OVMF, "--guest-features", "0x1"]) == 1
    assert "has no SEV metadata" in capsys.readouterr().err
