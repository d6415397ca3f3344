"""``query-sev-launch-measure`` verdict: SEV-ES proven / SEV only / no match.

Known-answer: virtee/sev's measurement-verify vector. Self-consistency: the
firmware double computes the blob for a launch of known inputs; the verdict
must name the mode and VMSA generation it measured, or list what was tried.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from attest_firmware import FirmwareDouble

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.launch_verify import judge_measurement, measurement_mac, parse_measure_blob
from pytest_sev.attest.measure import LaunchInputs, candidate_digests
from pytest_sev.attest.session import new_launch_start
from pytest_sev.attest.sevcert import parse_sev_cert

ROOT = Path(__file__).resolve().parents[1]
AMDSEV = str(ROOT / "fixtures" / "sev-kat" / "sev-crate" / "measurement" / "ovmf_AmdSev_suffix.bin")
VEC = json.loads((ROOT / "fixtures" / "sev-kat" / "virtee-sev-unit.json").read_text())["verify"]


def test_measurement_mac_known_answer() -> None:
    """Known-answer (virtee/sev session verify test)."""
    h = bytes.fromhex
    mac = measurement_mac(h(VEC["tik_hex"]), VEC["api_major"], VEC["api_minor"], VEC["build_id"], VEC["policy"],
                          h(VEC["digest_hex"]), h(VEC["mnonce_hex"]))
    assert mac.hex() == VEC["measure_hex"]


def _launch(policy: int, measured_digest: bytes):
    fw = FirmwareDouble(api=(1, 51), build=3)
    start, _ = new_launch_start(parse_sev_cert(fw.pdh), policy)
    ctx = fw.launch_start(start.dh_cert_b64(), start.session_b64(), policy)
    return fw, start, fw.launch_measure(ctx, measured_digest, os.urandom(16))


INPUTS = LaunchInputs(AMDSEV, 4, "EPYC-v4", "/dev/null", "/dev/null", "console=ttyS0")


@pytest.mark.parametrize("vmsa", ["init2", "legacy"])
def test_sev_es_proven(vmsa: str) -> None:
    """Self-consistency: an ES-policy launch that measured the SEV-ES digest is proven,
    and the verdict says which VMSA generation matched."""
    cands = candidate_digests(INPUTS)
    es = next(c for c in cands if c.mode == "sev-es" and c.vmsa == vmsa)
    fw, start, blob = _launch(0x5, es.digest)
    v = judge_measurement(blob, start.tik, fw.api, fw.build, 0x5, cands)
    assert v.status == "sev-es" and v.sev_es_proven and v.matched == es, v.describe()
    assert f"({vmsa} VMSA)" in v.describe()


def test_sev_only() -> None:
    """Self-consistency: the firmware measured no VMSA: 'SEV only', even if the policy says ES."""
    cands = candidate_digests(INPUTS)
    sev = next(c for c in cands if c.mode == "sev")
    for policy in (0x1, 0x5):
        fw, start, blob = _launch(policy, sev.digest)
        v = judge_measurement(blob, start.tik, fw.api, fw.build, policy, cands)
        assert v.status == "sev" and not v.sev_es_proven, v.describe()


def test_no_match_names_inputs_tried() -> None:
    """Self-consistency: a launch of other inputs matches nothing; the verdict lists the
    OVMF hash, vCPU count/type/signature, VMSA kind and kernel hashes of each candidate."""
    other = candidate_digests(LaunchInputs(AMDSEV, 2, "EPYC-Rome"))[1]
    fw, start, blob = _launch(0x5, other.digest)
    v = judge_measurement(blob, start.tik, fw.api, fw.build, 0x5, candidate_digests(INPUTS))
    assert v.status == "no-match"
    text = v.describe()
    for needle in ("OVMF", "sha256", "4 vCPU(s) EPYC-v4 signature 0x800f12", "init2 VMSA", "legacy VMSA",
                   "kernel hashes: kernel", "cmdline 'console=ttyS0'"):
        assert needle in text, needle


def test_no_match_on_wrong_platform_data_or_tik() -> None:
    cands = candidate_digests(INPUTS)
    fw, start, blob = _launch(0x5, cands[1].digest)
    assert judge_measurement(blob, start.tik, (1, 52), fw.build, 0x5, cands).status == "no-match"
    assert judge_measurement(blob, b"\0" * 16, fw.api, fw.build, 0x5, cands).status == "no-match"
    v = judge_measurement(blob, start.tik, fw.api, fw.build, 0x1, cands)
    assert v.status == "no-match"


def test_blob_format_errors() -> None:
    with pytest.raises(FormatError, match="not valid base64"):
        parse_measure_blob("@@")
    with pytest.raises(FormatError, match="47 bytes"):
        parse_measure_blob(b"x" * 47)
