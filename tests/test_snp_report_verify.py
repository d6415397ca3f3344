"""The SNP report verdict: the real Milan report verifies to AMD's ARK; each forged or mismatched report fails its check.

Known answers: go-sev-guest's real Milan report, its VCEK and AMD's Milan
ASK/ARK (snp-kat) verify link by link; one flipped byte breaks the
signature; AMD's Genoa ASK does not sign the Milan VCEK. Negative cases use
keys made here (``snp_report_forge``): with the test ARK as the trusted
anchor every check holds on the honest report, so each mutation shows the
one check that refuses it; with AMD's anchors the test chain is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from snp_report_forge import CHIP_ID, Forge, make_forge, make_report, tcb_legacy, tcb_turin

from pytest_sev.attest.errors import ChainError, FormatError
from pytest_sev.attest.snp_report import TcbVersion, parse_report
from pytest_sev.attest.snp_roots import PINNED_SHA256, SNP_CERTS_DIR, load_product_chain, pinned_arks, read_vcek
from pytest_sev.attest.snp_verify import Expectations, SnpVerdict, parse_min_tcb, verify_snp_report

_HERE = Path(__file__).resolve()
KAT_DIR = _HERE.parents[1] / "fixtures" / "snp-kat"  # copied unchanged from shared/data/snp-kat
ALL_CHECKS = ["signature", "chain", "vcek_tcb", "vcek_chip_id", "debug", "report_data", "measurement", "policy",
              "vmpl", "min_tcb"]
NONCE = bytes(range(100, 164))
MEASUREMENT = bytes(range(48))


def _kat(name: str) -> bytes:
    return (KAT_DIR / "reports" / name).read_bytes()


def _milan(raw: bytes | None = None, product: str | None = "milan", **expect: object) -> SnpVerdict:
    report = parse_report(raw if raw is not None else _kat("gosev-milan-report.bin"))
    vcek = read_vcek(KAT_DIR / "reports" / "gosev-milan-vcek.der")
    chains = {product: load_product_chain(product)} if product else {p: load_product_chain(p) for p in PINNED_SHA256}
    return verify_snp_report(report, vcek, chains, pinned_arks(), Expectations(**expect), product=product)  # type: ignore[arg-type]


def _states(verdict: SnpVerdict) -> dict[str, str]:
    return {c.name: c.state for c in verdict.checks}


# ------------------------------------------------------------------ the real report

def test_real_milan_report_every_check_holds() -> None:
    """Signature, chain to AMD's Milan ARK, VCEK TCB and chip id, and every expectation kat.json records."""
    case = json.loads((KAT_DIR / "kat.json").read_text())["reports"][0]
    v = _milan(nonce=bytes([1, 2, 3, 4, 5]), measurement=bytes.fromhex(case["measurement"]),
               policy=int(case["policy"], 16), vmpl=0, min_tcb={"bootloader": 2, "tee": 0, "snp": 5, "microcode": 0x44},
               allow_debug=True)
    assert v.ok, [c.describe() for c in v.not_holding]
    assert [c.name for c in v.checks] == ALL_CHECKS and all(c.asked and c.state == "ok" for c in v.checks)
    assert [link.name for link in v.links] == ["ARK (self-signed)", "ARK pinned", "ARK -> ASK", "ASK -> VCEK"]
    assert all(link.ok for link in v.links)
    assert v.product == "milan"
    f = v.fields()
    assert (f["version"], f["policy"], f["measurement"], f["chip_id"]) == \
        (case["version"], case["policy"], case["measurement"], case["chip_id"])
    assert int(f["reported_tcb"]["raw"], 16) == int(case["reported_tcb"], 16)


def test_real_report_debug_bit_refused_unless_allowed() -> None:
    """The shared report was launched with DEBUG (policy 0xB0000): refused by default."""
    v = _milan()
    assert not v.ok and [c.name for c in v.not_holding] == ["debug"]
    assert "bit 19" in v.check("debug").reason


def test_real_report_without_product_finds_milan() -> None:
    v = _milan(product=None, allow_debug=True)
    assert v.ok and v.product == "milan" and "milan ARK" in v.check("chain").reason


@pytest.mark.parametrize("offset", [0x04, 0x50, 0x90, 0x140, 0x1A0, 0x1F0])
def test_one_flipped_byte_fails_the_signature(offset: int) -> None:
    raw = bytearray(_kat("gosev-milan-report.bin"))
    raw[offset] ^= 0x01
    v = _milan(bytes(raw), allow_debug=True)
    assert v.check("signature").state == "failed"
    assert "does not verify the report's signature" in v.check("signature").reason
    assert v.check("chain").state == "ok"


def test_flipped_signature_byte_fails_the_signature() -> None:
    raw = bytearray(_kat("gosev-milan-report.bin"))
    raw[0x2A0] ^= 0x01
    assert _milan(bytes(raw), allow_debug=True).check("signature").state == "failed"


def test_genoa_chain_fails_naming_the_link() -> None:
    v = _milan(product="genoa", allow_debug=True)
    chain = v.check("chain")
    assert chain.state == "failed" and chain.reason.startswith("ASK -> VCEK: FAILED")
    assert [(link.name, link.ok) for link in v.links] == \
        [("ARK (self-signed)", True), ("ARK pinned", True), ("ARK -> ASK", True), ("ASK -> VCEK", False)]
    assert v.check("signature").state == "ok" and not v.ok


def test_no_vcek_is_unknown_never_ok() -> None:
    report = parse_report(_kat("gosev-milan-report.bin"))
    v = verify_snp_report(report, None, {"milan": load_product_chain("milan")}, pinned_arks(),
                          Expectations(allow_debug=True), product="milan")
    for name in ("signature", "chain", "vcek_tcb", "vcek_chip_id"):
        assert v.check(name).state == "unknown" and v.check(name).asked, name
    assert "no VCEK given" in v.check("signature").reason
    assert not v.ok


def test_shipped_snp_chains_are_the_shared_kat_copies() -> None:
    for product in PINNED_SHA256:
        assert (SNP_CERTS_DIR / f"ask_ark_{product}.pem").read_bytes() == _kat(f"ask_ark_{product}.pem")


def test_swapped_shipped_chain_refused(tmp_path: Path) -> None:
    """A pinned file that is not AMD's (a test chain put in its place) is refused at load."""
    forge = make_forge()
    (tmp_path / "ask_ark_milan.pem").write_bytes(forge.chain_pem())
    with pytest.raises(ChainError, match="is not AMD's published milan ASK/ARK"):
        load_product_chain("milan", tmp_path)


# ------------------------------------------------------------------ test-made signers

def _verify(forge: Forge, raw: bytes, anchors: dict | None = None, **expect: object) -> SnpVerdict:
    return verify_snp_report(parse_report(raw), forge.vcek, {"test": forge.chain()},
                             forge.anchors() if anchors is None else anchors, Expectations(**expect))  # type: ignore[arg-type]


def _honest(forge: Forge, **fields: object) -> bytes:
    fields.setdefault("report_data", NONCE)
    return forge.sign(make_report(**fields))  # type: ignore[arg-type]


FULL_EXPECT: dict[str, Any] = dict(nonce=NONCE, measurement=MEASUREMENT, policy=0x30000, vmpl=0, min_tcb=dict(bootloader=3, snp=8))


def test_honest_test_report_every_check_holds() -> None:
    """The baseline the negative cases mutate: with the test ARK trusted, everything holds."""
    forge = make_forge()
    v = _verify(forge, _honest(forge), **FULL_EXPECT)
    assert v.ok, [c.describe() for c in v.not_holding]
    assert all(c.state == "ok" for c in v.checks) and v.product == "milan"


def test_forged_signature_right_format_wrong_key() -> None:
    forge = make_forge()
    other = ec.generate_private_key(ec.SECP384R1())
    v = _verify(forge, forge.sign(make_report(report_data=NONCE), key=other), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["signature"]


def test_wrong_nonce() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, report_data=bytes(64)), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["report_data"]
    assert "is not the nonce" in v.check("report_data").reason


def test_short_nonce_is_zero_padded() -> None:
    forge = make_forge()
    raw = _honest(forge, report_data=b"\x11" * 32 + bytes(32))
    assert _verify(forge, raw, nonce=b"\x11" * 32).check("report_data").state == "ok"
    assert _verify(forge, raw, nonce=b"\x11" * 33).check("report_data").state == "failed"


def test_debug_bit_refused_unless_allowed() -> None:
    forge = make_forge()
    raw = _honest(forge, policy=0x30000 | 1 << 19)
    refused = _verify(forge, raw, **{**FULL_EXPECT, "policy": 0xB0000})
    assert [c.name for c in refused.not_holding] == ["debug"]
    allowed = _verify(forge, raw, **{**FULL_EXPECT, "policy": 0xB0000}, allow_debug=True)
    assert allowed.ok and "allowed" in allowed.check("debug").reason


def test_rolled_back_tcb_under_the_minimum() -> None:
    """A report from SNP firmware SVN 5 (its VCEK issued for 5) against a minimum of 8: min_tcb names snp."""
    forge = make_forge(snp=5)
    v = _verify(forge, _honest(forge, reported_tcb=tcb_legacy(3, 0, 5, 115)), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["min_tcb"]
    assert v.check("min_tcb").reason == "REPORTED_TCB below the minimum: snp 5 < 8"


def test_min_tcb_as_a_raw_tcb_version() -> None:
    forge = make_forge()
    raw = _honest(forge)
    assert _verify(forge, raw, min_tcb=TcbVersion(tcb_legacy(3, 0, 8, 115))).check("min_tcb").state == "ok"
    low = _verify(forge, raw, min_tcb=TcbVersion(tcb_legacy(3, 0, 8, 116))).check("min_tcb")
    assert low.state == "failed" and "microcode 115 < 116" in low.reason


def test_report_tcb_not_the_vceks() -> None:
    """A report claiming SNP SVN 9 signed by a VCEK issued for SVN 8 (a kept key of older firmware)."""
    forge = make_forge()
    v = _verify(forge, _honest(forge, reported_tcb=tcb_legacy(3, 0, 9, 115)), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["vcek_tcb"]
    assert "snp 9 (VCEK 8)" in v.check("vcek_tcb").reason


def test_chip_id_not_the_vceks() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, chip_id=bytes(reversed(CHIP_ID))), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["vcek_chip_id"]


def test_masked_chip_id_is_unknown() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, chip_id=bytes(64)), **FULL_EXPECT)
    assert v.check("vcek_chip_id").state == "unknown" and not v.ok


def test_hwid_as_octet_string() -> None:
    forge = make_forge(hwid_octet_string=True)
    assert _verify(forge, _honest(forge), **FULL_EXPECT).ok


def test_wrong_vmpl() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, vmpl=1), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["vmpl"]
    assert v.check("vmpl").reason == "VMPL 1 is not the expected 0"


def test_vmpl_not_asked_does_not_decide() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, vmpl=1))
    assert v.ok and not v.check("vmpl").asked and v.check("vmpl").state == "unknown"


def test_wrong_policy_and_measurement() -> None:
    forge = make_forge()
    v = _verify(forge, _honest(forge, policy=0x20000, measurement=bytes(48)), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["measurement", "policy"]


@pytest.mark.parametrize("version, cpuid, mit", [(2, None, None), (3, (0x19, 0x01, 0x01), None),
                                                 (5, (0x19, 0x01, 0x01), (1, 3))])
def test_report_versions_2_3_5_verify(version: int, cpuid: tuple[int, int, int] | None,
                                      mit: tuple[int, int] | None) -> None:
    """Each accepted version verifies when honest and fails its signature when a byte changes."""
    forge = make_forge()
    raw = _honest(forge, version=version, cpuid=cpuid, mit_vectors=mit)
    assert _verify(forge, raw, **FULL_EXPECT).ok
    tampered = bytearray(raw)
    tampered[0x1F8 if version == 5 else 0x90] ^= 1
    assert [c.name for c in _verify(forge, bytes(tampered), **FULL_EXPECT).not_holding] == \
        (["signature"] if version == 5 else ["signature", "measurement"])


@pytest.mark.parametrize("version", [1, 6])
def test_report_versions_outside_2_to_5_refused_even_when_signed(version: int) -> None:
    forge = make_forge()
    with pytest.raises(FormatError, match=f"report version {version} is not supported"):
        _verify(forge, _honest(forge, version=version))


def test_turin_layout_with_fmc() -> None:
    """Turin: FMC in byte 0; the product comes from the VCEK's productName; the hwID is the chip id's 8 bytes."""
    chip = bytes(range(1, 9)) + bytes(56)
    forge = make_forge(fmc=2, bootloader=4, tee=1, snp=3, microcode=0x48, product_name="Turin-B0", hwid=chip[:8],
                       hwid_octet_string=True)
    raw = _honest(forge, version=3, cpuid=(0x1A, 0x02, 0x00), reported_tcb=tcb_turin(2, 4, 1, 3, 0x48), chip_id=chip)
    v = _verify(forge, raw, min_tcb=dict(fmc=2, snp=3))
    assert v.ok and v.product == "turin", [c.describe() for c in v.not_holding]
    older_fmc = _verify(forge, forge.sign(make_report(version=3, cpuid=(0x1A, 0x02, 0x00),
                                                      reported_tcb=tcb_turin(1, 4, 1, 3, 0x48), chip_id=chip)),
                        min_tcb=dict(fmc=2))
    assert [c.name for c in older_fmc.not_holding] == ["vcek_tcb", "min_tcb"]
    assert "fmc 1 (VCEK 2)" in older_fmc.check("vcek_tcb").reason


def test_fmc_minimum_on_milan_is_unknown() -> None:
    forge = make_forge()
    check = _verify(forge, _honest(forge), min_tcb=dict(fmc=1)).check("min_tcb")
    assert check.state == "unknown" and "fmc is not a milan TCB component" in check.reason


def test_test_chain_is_not_amds() -> None:
    """Well formed (it verifies to its own ARK) and refused against AMD's pinned ARKs, naming the pin."""
    forge = make_forge()
    v = _verify(forge, _honest(forge), anchors=pinned_arks(), **FULL_EXPECT)
    assert [c.name for c in v.not_holding] == ["chain"]
    assert v.check("chain").reason.startswith("ARK pinned: FAILED")
    assert [link.ok for link in v.links] == [True, False, True, True]


def test_test_vcek_against_amds_asks() -> None:
    """A test VCEK tried against every AMD ASK: none signs it."""
    forge = make_forge()
    chains = {p: load_product_chain(p) for p in PINNED_SHA256}
    v = verify_snp_report(parse_report(_honest(forge)), forge.vcek, chains, pinned_arks())
    assert v.check("chain").state == "failed"
    assert "no ASK of milan, genoa, turin signs this VCEK" in v.check("chain").reason


def test_unsigned_and_vlek_reports() -> None:
    forge = make_forge()
    unsigned = _verify(forge, _honest(forge, signer_info=7 << 2))
    assert unsigned.check("signature").state == "failed" and "not signed" in unsigned.check("signature").reason
    vlek = _verify(forge, _honest(forge, signer_info=1 << 2))
    assert vlek.check("chain").state == "unknown" and not vlek.ok


def test_other_signature_algorithm_fails() -> None:
    forge = make_forge()
    v = _verify(forge, forge.sign(make_report(sig_algo=2)))
    assert v.check("signature").state == "failed" and "not ECDSA P-384" in v.check("signature").reason


@pytest.mark.parametrize("text, want", [
    ("bootloader=2,tee=0,snp=5,microcode=68", {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 68}),
    ("snp=0x10", {"snp": 16}),
    ("0x4405000000000002", TcbVersion(0x4405000000000002)),
])
def test_parse_min_tcb(text: str, want: object) -> None:
    assert parse_min_tcb(text) == want


@pytest.mark.parametrize("text, words", [("spl=1", "unknown component"), ("snp=x", "not a number"),
                                         ("snp=300", "0..255"), ("junk", "expected component=N")])
def test_parse_min_tcb_refuses(text: str, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        parse_min_tcb(text)
