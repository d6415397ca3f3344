"""``python -m pytest_sev snp-report verify``: exit status, printed checks, ``--json`` fields, one-line errors.

Exit 0 only when every asked check holds (the real Milan report with its
VCEK, ``--product milan`` and ``--allow-debug``, since it was launched with
DEBUG); 1 when one fails or is unknown; 2 for a bad argument or file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import make_forge, make_report

from pytest_sev.__main__ import main as package_main
from pytest_sev.cli.snp_report import main

_HERE = Path(__file__).resolve()
KAT_DIR = _HERE.parents[1] / "fixtures" / "snp-kat"  # copied unchanged from shared/data/snp-kat
REPORTS = KAT_DIR / "reports"
REPORT = str(REPORTS / "gosev-milan-report.bin")
VCEK = str(REPORTS / "gosev-milan-vcek.der")
KAT_CASE = json.loads((KAT_DIR / "kat.json").read_text())["reports"][0]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["verify", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_shared_report_verifies_with_product_milan(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(capsys, REPORT, "--vcek", VCEK, "--product", "milan", "--allow-debug",
                        "--nonce", "0102030405", "--measurement", KAT_CASE["measurement"], "--policy", "b0000",
                        "--vmpl", "0", "--min-tcb", "bootloader=2,tee=0,snp=5,microcode=68")
    assert rc == 0, out + err
    for name in ("signature", "chain", "vcek_tcb", "vcek_chip_id", "debug", "report_data", "measurement", "policy",
                 "vmpl", "min_tcb"):
        assert f"  {name}: ok (" in out
    assert "ASK -> VCEK: ok" in out and out.rstrip().endswith("verdict: verified: every asked check holds")


def test_debug_refused_without_allow_debug(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, REPORT, "--vcek", VCEK, "--product", "milan")
    assert rc == 1 and "verdict: NOT VERIFIED: debug failed" in out


def test_json_fields_and_checks(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, REPORT, "--vcek", VCEK, "--product", "milan", "--allow-debug", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["version"] == KAT_CASE["version"] and doc["policy"] == KAT_CASE["policy"]
    assert doc["measurement"] == KAT_CASE["measurement"] and doc["chip_id"] == KAT_CASE["chip_id"]
    assert int(doc["reported_tcb"]["raw"], 16) == int(KAT_CASE["reported_tcb"], 16)
    assert doc["reported_tcb"]["snp"] == 5 and doc["vmpl"] == 0 and doc["host_data"] == "00" * 32
    assert doc["report_data"].startswith("0102030405")
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["signature"]["state"] == "ok" and checks["chain"]["state"] == "ok"
    assert checks["report_data"] == {"name": "report_data", "state": "unknown", "asked": False,
                                     "reason": "no nonce given"}
    assert all(set(c) == {"name", "state", "asked", "reason"} for c in doc["checks"])
    assert doc["ok"] is True


def test_flipped_byte_fails_naming_the_signature(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    raw = bytearray(Path(REPORT).read_bytes())
    raw[0x90] ^= 0x01
    (tmp_path / "flipped.bin").write_bytes(bytes(raw))
    rc, out, _ = _run(capsys, str(tmp_path / "flipped.bin"), "--vcek", VCEK, "--product", "milan", "--allow-debug")
    assert rc == 1
    assert "  signature: failed (the VCEK's key does not verify" in out
    assert "verdict: NOT VERIFIED: signature failed" in out


def test_genoa_chain_fails_naming_the_link(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, REPORT, "--vcek", VCEK, "--product", "genoa", "--allow-debug")
    assert rc == 1
    assert "  chain: failed (ASK -> VCEK: FAILED" in out and "    ASK -> VCEK: FAILED" in out


def test_chain_file_of_amd_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(capsys, REPORT, "--vcek", VCEK, "--chain", str(REPORTS / "ask_ark_milan.pem"), "--allow-debug")
    assert rc == 0 and "verified to AMD's milan ARK" in out


def test_test_made_chain_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A report, VCEK and chain made here: well formed, and refused because the ARK is not AMD's."""
    forge = make_forge()
    (tmp_path / "r.bin").write_bytes(forge.sign(make_report()))
    (tmp_path / "vcek.pem").write_bytes(forge.vcek.public_bytes(Encoding.PEM))
    (tmp_path / "chain.pem").write_bytes(forge.chain_pem())
    rc, out, _ = _run(capsys, str(tmp_path / "r.bin"), "--vcek", str(tmp_path / "vcek.pem"),
                      "--chain", str(tmp_path / "chain.pem"), "--json")
    doc = json.loads(out)
    assert rc == 1
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["signature"]["state"] == "ok"
    assert checks["chain"]["state"] == "failed" and checks["chain"]["reason"].startswith("ARK pinned: FAILED")


def test_hex_report_and_no_vcek(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Hex text reads; without a VCEK the signature and chain are unknown and the exit is 1."""
    (tmp_path / "r.hex").write_text(Path(REPORT).read_bytes().hex() + "\n")
    rc, out, _ = _run(capsys, str(tmp_path / "r.hex"), "--allow-debug")
    assert rc == 1
    assert "  signature: unknown (no VCEK given" in out and "  chain: unknown (no VCEK given" in out
    assert KAT_CASE["measurement"] in out


@pytest.mark.parametrize("argv, words", [
    (["/nonexistent/report.bin"], "cannot read the report /nonexistent/report.bin"),
    ([REPORT, "--vcek", "/nonexistent/vcek.der"], "cannot read the VCEK file"),
    ([REPORT, "--vcek", REPORT], "is not an X.509 certificate"),
    ([VCEK], "an SNP attestation report is 0x4a0 bytes"),
    ([REPORT, "--nonce", "xyz"], "is not hex"),
    ([REPORT, "--nonce", "00" * 65], "65 bytes, expected 1..64"),
    ([REPORT, "--measurement", "00" * 32], "32 bytes, expected 48"),
    ([REPORT, "--policy", "nope"], "is not a hex number"),
    ([REPORT, "--vmpl", "4"], "VMPL 4 is not 0..3"),
    ([REPORT, "--product", "rome"], "invalid choice"),
    ([REPORT, "--product", "milan", "--chain", VCEK], "not allowed with"),
    ([REPORT, "--min-tcb", "spl=1"], "unknown component"),
    ([REPORT, "--chain", VCEK], "holds 1 certificates, expected two"),
])
def test_bad_argument_or_file_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("pytest-sev snp-report: error: ") and words in err, err


def test_unknown_action_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", REPORT]) == 2
    assert "unknown action 'check'" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--help"]) == 0 and "snp-report verify REPORT" in capsys.readouterr().out


def test_registered_in_package_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert package_main(["snp-report", "verify", REPORT, "--vcek", VCEK, "--product", "milan", "--allow-debug"]) == 0
    assert "verdict: verified" in capsys.readouterr().out


def test_python_dash_m_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "short.bin").write_bytes(b"\0" * 10)
    proc = subprocess.run([sys.executable, "-m", "pytest_sev", "snp-report", "verify", str(tmp_path / "short.bin")],
                          capture_output=True, text=True, timeout=60, cwd=_HERE.parents[1])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
