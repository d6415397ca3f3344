"""``python -m pytest_sev snp-report verify``: exit status, printed checks, ``--json`` fields, one-line errors.

Exit 0 only when every asked check holds (the real Milan report with its
VCEK, ``--product milan`` and ``--allow-debug``, since it was launched with
DEBUG); 1 when one fails or is unknown; 2 for a bad argument or file.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import make_forge, make_report
from test_snp_kds import Kds, serve_kds
from test_snp_vcek_source import table

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


# -- where the VCEK comes from: --cert-table, --cert-dir ----------------------------
# The certificate tables are reconstructed from the GHCB layout (24-byte entries: GUID in RFC 4122
# byte order, u32 offset, u32 length; an all-zero entry; offsets from the table's start), holding the
# real Milan VCEK and AMD's pinned Milan ASK/ARK (no captured auxblob was found).

VCEK_GUID = "63da758d-e664-4564-adc5-f4b93be8accd"
ASK_GUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
ARK_GUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
CHIP_HEX = KAT_CASE["chip_id"]
STORED = f"milan/{CHIP_HEX}/4405000000000002.der"


def _milan_roots_der() -> tuple[bytes, bytes]:
    ask, ark = x509.load_pem_x509_certificates((REPORTS / "ask_ark_milan.pem").read_bytes())
    return ask.public_bytes(Encoding.DER), ark.public_bytes(Encoding.DER)


def test_verify_with_the_vcek_from_a_certtable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ask, ark = _milan_roots_der()
    (tmp_path / "aux.bin").write_bytes(table((VCEK_GUID, Path(VCEK).read_bytes()), (ASK_GUID, ask), (ARK_GUID, ark)))
    rc, out, err = _run(capsys, REPORT, "--cert-table", str(tmp_path / "aux.bin"), "--product", "milan", "--allow-debug")
    assert rc == 0, out + err
    assert "  vcek source:   cert_table: the VCEK from the host's certificate table\n" in out
    assert "  signature: ok (" in out and "  chain: ok (" in out


def test_verify_with_the_vcek_from_a_cert_dir_and_json_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / STORED).parent.mkdir(parents=True)
    (tmp_path / STORED).write_bytes(Path(VCEK).read_bytes())
    rc, out, _ = _run(capsys, REPORT, "--cert-dir", str(tmp_path), "--allow-debug", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True
    assert doc["vcek_source"]["source"] == "cert_dir" and str(tmp_path / STORED) in doc["vcek_source"]["reason"]


def test_verify_cert_table_without_vcek_and_empty_dir_is_unknown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ask, ark = _milan_roots_der()
    (tmp_path / "aux.bin").write_bytes(table((ASK_GUID, ask), (ARK_GUID, ark)))
    rc, out, _ = _run(capsys, REPORT, "--cert-table", str(tmp_path / "aux.bin"), "--cert-dir", str(tmp_path),
                      "--product", "milan", "--allow-debug")
    assert rc == 1
    assert ("  vcek source:   none: no VCEK found: the host's certificate table has no VCEK entry (it holds ASK, ARK); "
            f"no VCEK in the certificate directory {tmp_path} (looked for {STORED})") in out
    assert "  signature: unknown (no VCEK given" in out and "verdict: NOT VERIFIED" in out


def test_vcek_file_wins_over_table_and_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "aux.bin").write_bytes(table((VCEK_GUID, b"junk")))
    rc, out, _ = _run(capsys, REPORT, "--vcek", VCEK, "--cert-table", str(tmp_path / "aux.bin"), "--cert-dir",
                      str(tmp_path), "--product", "milan", "--allow-debug")
    assert rc == 0 and f"  vcek source:   vcek_file: the file given with --vcek ({VCEK})" in out


@pytest.mark.parametrize("make, words", [
    (lambda d: ["--cert-table", str(d / "nope.bin")], "cannot read the certificate table"),
    (lambda d: ["--cert-table", VCEK], "certificate table"),
    (lambda d: ["--cert-dir", str(d / "nope")], "is not a directory"),
    (lambda d: ["--cert-dir", VCEK], "is not a directory"),
])
def test_bad_cert_table_or_dir_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           make: Callable[[Path], list[str]], words: str) -> None:
    rc, out, err = _run(capsys, REPORT, *make(tmp_path))
    assert rc == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_malformed_cert_table_names_the_rule(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "aux.bin").write_bytes(table((VCEK_GUID, Path(VCEK).read_bytes()))[:-1])
    rc, _, err = _run(capsys, REPORT, "--cert-table", str(tmp_path / "aux.bin"))
    assert rc == 2 and "lie outside the" in err and err.count("\n") == 1


# -- fetch-vcek, against a real HTTP server on 127.0.0.1 ------------------------------

KDS_PATH = f"/vcek/v1/Milan/{CHIP_HEX}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"


@pytest.fixture()
def kds() -> Iterator[Kds]:
    """The local stand-in for AMD's key server (``test_snp_kds.serve_kds``)."""
    with serve_kds() as state:
        yield state


def _fetch(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["fetch-vcek", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_fetch_stores_the_vcek_then_verify_finds_it(capsys: pytest.CaptureFixture[str], tmp_path: Path, kds: Kds) -> None:
    kds.routes[KDS_PATH] = (200, {}, Path(VCEK).read_bytes())
    rc, out, err = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--kds-url", kds.url)
    assert rc == 0, err
    assert (tmp_path / STORED).read_bytes() == Path(VCEK).read_bytes()
    assert out.startswith(f"stored the VCEK of chip {CHIP_HEX[:16]}.. at TCB 0x4405000000000002: {tmp_path / STORED}")
    assert kds.seen == [KDS_PATH]
    rc, out, _ = _run(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--allow-debug")
    assert rc == 0 and "  vcek source:   cert_dir: the VCEK from the certificate directory" in out
    # a second fetch does not ask the key server again
    rc, out, _ = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--kds-url", kds.url)
    assert rc == 0 and out == f"already stored: {tmp_path / STORED} (AMD's key server not asked)\n"
    assert kds.seen == [KDS_PATH]


def test_fetch_replaces_a_stored_file_that_is_not_the_vcek(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                           kds: Kds) -> None:
    (tmp_path / STORED).parent.mkdir(parents=True)
    (tmp_path / STORED).write_bytes(b"garbage")
    kds.routes[KDS_PATH] = (200, {}, Path(VCEK).read_bytes())
    rc, out, _ = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--kds-url", kds.url)
    assert rc == 0 and out.startswith(f"replacing {tmp_path / STORED}: ") and kds.seen == [KDS_PATH]
    assert (tmp_path / STORED).read_bytes() == Path(VCEK).read_bytes()


@pytest.mark.parametrize("status, headers, words", [
    (404, {}, "VCEK unknown: AMD's key server has no VCEK for this chip id and TCB (HTTP 404) (GET http://127.0.0.1:"),
    (429, {"Retry-After": "60"}, "VCEK unknown: AMD's key server is rate-limiting this client (HTTP 429 Too Many "
                                 "Requests; Retry-After: 60)"),
    (200, {}, "VCEK unknown: AMD's key server answered HTTP 200 with something unusable"),
])
def test_fetch_failures_exit_1_with_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, kds: Kds,
                                             status: int, headers: dict[str, str], words: str) -> None:
    kds.routes[KDS_PATH] = (status, headers, b"nope")
    rc, out, err = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--kds-url", kds.url)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("pytest-sev snp-report: ") and words in err, err
    assert not (tmp_path / STORED).exists()


def test_fetch_network_error_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rc, _, err = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan",
                        "--kds-url", f"http://127.0.0.1:{port}", "--timeout", "5")
    assert rc == 1 and "VCEK unknown: AMD's key server could not be reached" in err and err.count("\n") == 1


def test_fetch_masked_chip_or_vlek_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "masked.bin").write_bytes(make_report(chip_id=bytes(64)))
    rc, _, err = _fetch(capsys, str(tmp_path / "masked.bin"), "--cert-dir", str(tmp_path), "--product", "milan",
                        "--kds-url", "http://127.0.0.1:9")
    assert rc == 1 and "VCEK unknown: no place in the certificate directory: the report's CHIP_ID is masked" in err
    (tmp_path / "vlek.bin").write_bytes(make_report(signer_info=1 << 2))
    rc, _, err = _fetch(capsys, str(tmp_path / "vlek.bin"), "--cert-dir", str(tmp_path), "--product", "milan")
    assert rc == 1 and "VCEK unknown: the report is signed by VLEK, not a VCEK" in err and err.count("\n") == 1
    (tmp_path / "unsigned.bin").write_bytes(make_report(signer_info=7 << 2))
    rc, _, err = _fetch(capsys, str(tmp_path / "unsigned.bin"), "--cert-dir", str(tmp_path), "--product", "milan")
    assert rc == 1 and "VCEK unknown: the report is not signed (SIGNING_KEY 7: none)" in err


@pytest.mark.parametrize("argv, words", [
    ([REPORT, "--product", "milan"], "the following arguments are required: --cert-dir"),
    ([REPORT, "--cert-dir", "/tmp/x", "--product", "rome"], "invalid choice"),
    ([REPORT, "--cert-dir", "/tmp/x", "--product", "milan", "--kds-url", "ftp://x"], "expected http(s)://HOST"),
    ([REPORT, "--cert-dir", "/tmp/x", "--product", "milan", "--timeout", "0"], "timeout 0 is not a positive number"),
    ([REPORT, "--cert-dir", "/tmp/x", "--product", "milan", "--timeout", "inf"], "is not a positive number"),
    ([REPORT, "--cert-dir", "/tmp/x", "--product", "milan", "--timeout", "soon"], "'soon' is not a number of seconds"),
    ([REPORT, "--cert-dir", "/tmp/x"], "the product cannot be told from this report (version 2 has no CPUID bytes): "
                                       "give --product milan|genoa|turin"),
    (["/nonexistent.bin", "--cert-dir", "/tmp/x", "--product", "milan"], "cannot read the report"),
])
def test_fetch_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    rc, out, err = _fetch(capsys, *argv)
    assert rc == 2 and out == "" and err.count("\n") == 1 and words in err, err


def test_fetch_unwritable_dir_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, kds: Kds) -> None:
    (tmp_path / "milan").write_text("a file where a directory should be")
    kds.routes[KDS_PATH] = (200, {}, Path(VCEK).read_bytes())
    rc, _, err = _fetch(capsys, REPORT, "--cert-dir", str(tmp_path), "--product", "milan", "--kds-url", kds.url)
    assert rc == 2 and "cannot write" in err and err.count("\n") == 1


def test_fetch_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch-vcek", "--help"]) == 0 and "--kds-url" in capsys.readouterr().out
    assert main(["fetch"]) == 2 and "expected: verify, fetch-vcek" in capsys.readouterr().err


def test_fetch_python_dash_m_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest_sev", "snp-report", "fetch-vcek", REPORT, "--cert-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=60, cwd=_HERE.parents[1])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "give --product" in proc.stderr
