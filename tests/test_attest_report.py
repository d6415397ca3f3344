"""``query-sev-attestation-report``: parsing and the PEK signature.

Self-consistency: the firmware double signs reports with its PEK (ECDSA
P-384/SHA-256 over mnonce || digest || policy). No outside vector exists in
the shared kat for this command.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from attest_firmware import FirmwareDouble

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.measure import LaunchInputs, candidate_digests
from pytest_sev.attest.report import judge_report, parse_attestation_report, verify_report_signature
from pytest_sev.attest.sevcert import parse_sev_cert

AMDSEV = str(Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat" / "sev-crate" / "measurement"
             / "ovmf_AmdSev_suffix.bin")
CANDS = candidate_digests(LaunchInputs(AMDSEV, 4, "EPYC-v4"))


def test_report_verifies_and_matches() -> None:
    fw = FirmwareDouble()
    es = CANDS[1]
    mnonce = os.urandom(16)
    rep = parse_attestation_report(fw.attestation_report(es.digest, 0x5, mnonce))
    assert (rep.mnonce, rep.launch_digest, rep.policy) == (mnonce, es.digest, 0x5)
    v = judge_report(rep, parse_sev_cert(fw.pek), mnonce, CANDS)
    assert v.ok and v.signature_ok and v.nonce_ok and v.matched == es, v.describe()


def test_report_tampering_and_wrong_signer() -> None:
    fw = FirmwareDouble()
    raw = bytearray(base64.b64decode(fw.attestation_report(CANDS[0].digest, 0x1, b"\0" * 16)))
    raw[0x30] ^= 0x04  # the hypervisor claims an ES policy
    rep = parse_attestation_report(bytes(raw))
    assert verify_report_signature(rep, parse_sev_cert(fw.pek)) == "signature does not verify"
    good = parse_attestation_report(fw.attestation_report(CANDS[0].digest, 0x1, b"\0" * 16))
    assert "PEK" in (verify_report_signature(good, parse_sev_cert(fw.pdh)) or "")
    assert verify_report_signature(good, parse_sev_cert(FirmwareDouble().pek)) == "signature does not verify"


def test_report_stale_nonce_and_unknown_digest() -> None:
    fw = FirmwareDouble()
    rep = parse_attestation_report(fw.attestation_report(b"\x11" * 32, 0x5, b"\1" * 16))
    v = judge_report(rep, parse_sev_cert(fw.pek), b"\2" * 16, CANDS)
    assert not v.ok and v.signature_ok and v.nonce_ok is False and v.matched is None
    assert any("mnonce" in p for p in v.problems) and any("none of the expected" in p for p in v.problems)


def test_report_format_errors() -> None:
    with pytest.raises(FormatError, match="expected 208"):
        parse_attestation_report(b"\0" * 100)
