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
from pytest_sev.attest.launch_verify import expected_blob, judge_measurement, measurement_mac, parse_measure_blob
from pytest_sev.attest.measure import Candidate, LaunchInputs, candidate_digests
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


# -- the verdict against the policy: only a match of what the policy launched releases secrets ---------

TIK = bytes(range(16))
API, BUILD = (1, 51), 3
MNONCE = bytes(range(100, 116))
SEV_D, ES_D, OTHER_D = b"\x11" * 32, b"\x22" * 32, b"\x33" * 32
SEV_C = Candidate("sev", None, SEV_D, INPUTS, "sev inputs")
ES_C = Candidate("sev-es", "init2", ES_D, INPUTS, "es inputs")


def _judge(policy: int, measured: bytes, cands=(SEV_C, ES_C), blob_policy: int | None = None):
    """The firmware measured ``measured`` under ``blob_policy`` (default: ``policy``)."""
    blob = expected_blob(TIK, *API, BUILD, policy if blob_policy is None else blob_policy, measured, MNONCE)
    return judge_measurement(blob, TIK, API, BUILD, policy, list(cands)), blob


@pytest.mark.parametrize("policy", [0x5, 0x4, 0x7, 0x5 | 0x20])
def test_es_match_under_es_policy_is_proven_and_releases(policy: int) -> None:
    v, blob = _judge(policy, ES_D)
    assert (v.status, v.matched, v.policy, v.blob) == ("sev-es", ES_C, policy, blob)
    assert v.sev_es_proven and v.policy_status == "sev-es" and v.releases_secrets
    assert "SEV-ES is proven" in v.describe() and ES_D.hex() in v.describe() and f"(policy {policy:#x})" in v.describe()


@pytest.mark.parametrize("policy", [0x1, 0x0, 0x3, 0x1 | 0x20])
def test_es_digest_under_non_es_policy_is_contradictory(policy: int) -> None:
    """The SEV-ES digest matches but the policy lacks ES: no match, nothing released."""
    v, _ = _judge(policy, ES_D)
    assert v.status == "no-match" and v.matched is None and not v.releases_secrets and not v.sev_es_proven
    assert v.policy_status == "sev"
    assert f"policy {policy:#x} lacks ES (0x4): contradictory" in v.describe()


@pytest.mark.parametrize("policy", [0x5, 0x4])
def test_sev_match_under_es_policy_releases_nothing(policy: int) -> None:
    """The firmware measured no VMSA although the policy sets ES: 'sev', which this policy does not accept."""
    v, _ = _judge(policy, SEV_D)
    assert v.status == "sev" and v.matched == SEV_C and not v.sev_es_proven
    assert v.policy_status == "sev-es" and not v.releases_secrets
    assert v.reason == f"no VMSA was measured: the guest is SEV without SEV-ES although policy {policy:#x} sets ES"


@pytest.mark.parametrize("policy", [0x1, 0x0])
def test_sev_match_under_sev_policy_releases(policy: int) -> None:
    v, _ = _judge(policy, SEV_D)
    assert v.status == "sev" and v.policy_status == "sev" and v.releases_secrets
    assert v.reason == "no VMSA was measured: the guest is SEV without SEV-ES"
    assert v.describe().startswith(f"launch measurement matches the sev digest {SEV_D.hex()} (policy {policy:#x})")


def test_no_match_releases_nothing_and_lists_what_was_tried() -> None:
    v, blob = _judge(0x5, OTHER_D)
    assert v.status == "no-match" and v.matched is None and not v.releases_secrets and v.blob == blob
    assert v.tried == (f"sev {SEV_D.hex()[:16]}... [sev inputs]", f"sev-es (init2 VMSA) {ES_D.hex()[:16]}... [es inputs]")
    assert v.describe() == ("launch measurement matches no expected digest: no candidate gives the MAC under TIK, "
                            "API 1.51 build 3, policy 0x5 (wrong TIK, platform data, or launched inputs); tried: "
                            + " | ".join(v.tried))


def test_no_candidates_is_no_match() -> None:
    v, _ = _judge(0x5, ES_D, cands=())
    assert v.status == "no-match" and v.reason == "no candidate digests were given" and v.tried == ()
    assert v.policy == 0x5 and v.policy_status == "sev-es" and not v.releases_secrets


def test_first_matching_candidate_is_named() -> None:
    """Two candidates with the same digest (e.g. two VMSA kinds that agree): the first is the match."""
    twin = Candidate("sev-es", "legacy", ES_D, INPUTS, "twin")
    v, _ = _judge(0x5, ES_D, cands=(SEV_C, ES_C, twin))
    assert v.matched is ES_C
    sev_twin = Candidate("sev", None, SEV_D, INPUTS, "sev twin")
    v, _ = _judge(0x1, SEV_D, cands=(SEV_C, sev_twin))
    assert v.matched is SEV_C


def test_mac_binds_policy_and_platform() -> None:
    """The same digest measured under another policy, API or build is no match."""
    assert _judge(0x5, ES_D, blob_policy=0x7)[0].status == "no-match"
    blob = expected_blob(TIK, 1, 52, BUILD, 0x5, ES_D, MNONCE)
    assert judge_measurement(blob, TIK, API, BUILD, 0x5, [ES_C]).status == "no-match"
    assert judge_measurement(blob, TIK, (1, 52), BUILD, 0x5, [ES_C]).status == "sev-es"
    assert judge_measurement(parse_measure_blob(blob), TIK, (1, 52), BUILD, 0x5, [ES_C]).status == "sev-es"


def test_blob_is_measurement_then_mnonce() -> None:
    blob = bytes(range(48))
    mb = parse_measure_blob(blob)
    assert mb.measurement == blob[:32] and mb.mnonce == blob[32:] and mb.to_bytes() == blob
    with pytest.raises(FormatError, match=r"^launch measurement is 49 bytes, SEV/SEV-ES gives 48$"):
        parse_measure_blob(b"x" * 49)
    with pytest.raises(FormatError, match=r"^launch measurement is not valid base64"):
        parse_measure_blob("@@")
    with pytest.raises(FormatError, match=r"^the launch digest is 32 bytes and the mnonce 16$"):
        measurement_mac(TIK, 1, 0, 0, 0, b"x" * 31, MNONCE)
    with pytest.raises(FormatError, match=r"^the launch digest is 32 bytes and the mnonce 16$"):
        measurement_mac(TIK, 1, 0, 0, 0, ES_D, b"x" * 15)


@pytest.mark.parametrize("policy", [0x5, 0x80000005, 0xFFFFFFFF])
def test_mac_covers_the_whole_u32_policy(policy: int) -> None:
    """Independent of the code under test: HMAC-SHA256 over 0x04, API, build, policy (u32 LE), digest, mnonce."""
    import hashlib
    import hmac
    msg = bytes([4, 1, 51, 3]) + policy.to_bytes(4, "little") + ES_D + MNONCE
    assert measurement_mac(TIK, 1, 51, 3, policy, ES_D, MNONCE) == hmac.new(TIK, msg, hashlib.sha256).digest()


def test_every_verdict_keeps_what_was_tried_and_the_blob() -> None:
    """Whatever the status, the verdict carries the candidates tried and the blob it judged, and its reason."""
    tried = (f"sev {SEV_D.hex()[:16]}... [sev inputs]", f"sev-es (init2 VMSA) {ES_D.hex()[:16]}... [es inputs]")
    for policy, measured, reason in (
            (0x5, ES_D, "the firmware measured the VMSAs of the vCPUs under an ES policy: SEV-ES is proven"),
            (0x1, ES_D, "the SEV-ES digest matches but policy 0x1 lacks ES (0x4): contradictory"),
            (0x1, SEV_D, "no VMSA was measured: the guest is SEV without SEV-ES")):
        v, blob = _judge(policy, measured)
        assert (v.tried, v.blob, v.reason) == (tried, blob, reason), v
    v, blob = _judge(0x5, ES_D, cands=())
    assert v.blob == blob
