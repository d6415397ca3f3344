"""VLEK-signed SNP reports: AMD's pinned ASVK chains, and the chain check VLEK <- ASVK <- ARK.

Real data: each ``asvk_ark_<product>.pem`` (AMD's ``/vlek/v1/<Product>/cert_chain``,
read from google/go-sev-guest ``verify/trust``) is pinned, its ARK is the
product's pinned ARK and that ARK signs its ASVK; a modified file is refused.
Forged data (``snp_report_forge.make_vlek_forge``: a test ARK signing an ASK
and an ASVK, with the test ARK passed as the trusted anchor): a VLEK report
verifies link by link; each wrong pairing (an ASVK that did not sign the
VLEK, a VLEK for a VCEK-signed report, an ASK chain for a VLEK, an ASVK
chain for a VCEK, no VLEK) is refused or unknown, never ok.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import make_forge, make_report, make_vlek_forge
from test_snp_vcek_source import table

from pytest_sev.attest.errors import ChainError, FormatError
from pytest_sev.attest.snp_report import PRODUCTS, SnpReport, parse_report
from pytest_sev.attest.snp_roots import (
    ASK,
    ASVK,
    PINNED_SHA256,
    PINNED_VLEK_SHA256,
    SNP_CERTS_DIR,
    SnpChain,
    intermediate_name,
    load_product_chain,
    load_vlek_chain,
    pinned_arks,
    pinned_chains,
    read_chain_file,
)
from pytest_sev.attest.snp_vcek_source import SOURCE_TABLE, find_vcek
from pytest_sev.attest.snp_verify import Check, Expectations, chain_links, check_chain, verify_snp_report
from pytest_sev.cli.snp_report import main

VCEK_SIGNER, VLEK_SIGNER = 0, 1 << 2
NONCE = bytes(range(100, 164))
VCEK_GUID = "63da758d-e664-4564-adc5-f4b93be8accd"
VLEK_GUID = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
ASK_GUID = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
ARK_GUID = "c0b406a4-a803-4952-9743-3fb6014cd0ae"
PSS_FAILS = "signature does not verify (RSA-PSS, SHA-384, salt 48)"
NO_ASVK = "no ASVK/ARK given to check the VLEK against (an ASK signs VCEKs only: ask not used)"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _vlek_report(key: ec.EllipticCurvePrivateKey | None = None, signer_info: int = VLEK_SIGNER) -> SnpReport:
    forge = make_vlek_forge()
    return parse_report(forge.sign(make_report(signer_info=signer_info, report_data=NONCE), key))


# -- the real data: AMD's ASVK chains ------------------------------------------------------------------------------

@pytest.mark.parametrize("product", PRODUCTS)
def test_pinned_asvk_is_signed_by_the_pinned_ark_of_its_product(product: str) -> None:
    path = SNP_CERTS_DIR / f"asvk_ark_{product}.pem"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_VLEK_SHA256[product]
    chain = load_vlek_chain(product)
    vcek_chain = load_product_chain(product)
    assert chain.intermediate == ASVK and vcek_chain.intermediate == ASK
    assert chain.source == f"AMD's {product} ASVK/ARK"
    assert chain.ask.subject.rfc4514_string().startswith(f"CN=SEV-VLEK-{product.capitalize()},")
    assert _der(chain.ark) == _der(vcek_chain.ark) == _der(pinned_arks()[product])  # the same ARK as the ASK's
    assert _der(chain.ask) != _der(vcek_chain.ask)
    # ARK self-signed, pinned, ARK -> ASVK (the last link, ASVK -> VLEK, has no VLEK here: the ASVK stands in)
    links = chain_links(chain.ask, chain, pinned_arks(), subject="VLEK")
    assert [(link.name, link.ok) for link in links[:3]] == [
        ("ARK (self-signed)", True), ("ARK pinned", True), ("ARK -> ASVK", True)]
    assert links[1].reason == f"AMD's {product} ARK"
    assert (links[3].name, links[3].ok) == ("ASVK -> VLEK", False)


def test_an_asvk_is_not_signed_by_another_products_ark() -> None:
    milan, genoa = load_vlek_chain("milan"), load_vlek_chain("genoa")
    crossed = SnpChain(genoa.ask, milan.ark, "crossed", ASVK)
    assert [link.ok for link in chain_links(genoa.ask, crossed, pinned_arks(), "VLEK")][:3] == [True, True, False]


@pytest.mark.parametrize("change", ["flip", "append", "ask_ark"])
def test_pin_refuses_a_modified_asvk_file(tmp_path: Path, change: str) -> None:
    shutil.copytree(SNP_CERTS_DIR, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "asvk_ark_milan.pem"
    data = path.read_bytes()
    if change == "flip":  # one base64 character of the ASVK
        at = data.index(b"\n", 40) + 10
        data = data[:at] + (b"B" if data[at:at + 1] != b"B" else b"C") + data[at + 1:]
    elif change == "append":
        data += b"\n"
    else:  # the ASK/ARK file where the ASVK/ARK belongs: well formed, and not the pinned file
        data = (tmp_path / "ask_ark_milan.pem").read_bytes()
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with pytest.raises(ChainError) as err:
        load_vlek_chain("milan", tmp_path)
    assert str(err.value) == (f"{path} is not AMD's published milan ASVK/ARK (sha256 {digest}, "
                              f"pinned {PINNED_VLEK_SHA256['milan']})")
    assert load_vlek_chain("genoa", tmp_path).intermediate == ASVK  # the untouched ones still load


def test_vlek_chain_loader_refuses_unknown_product_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="unknown SNP product 'rome': expected one of milan, genoa, turin"):
        load_vlek_chain("rome")
    with pytest.raises(FormatError, match="cannot read the milan ASVK/ARK"):
        load_vlek_chain("milan", tmp_path)


def test_pinned_chains_by_signing_key() -> None:
    vlek, vcek = pinned_chains("VLEK"), pinned_chains("VCEK")
    assert list(vlek) == list(vcek) == list(PRODUCTS)
    assert {c.intermediate for c in vlek.values()} == {ASVK} and {c.intermediate for c in vcek.values()} == {ASK}
    assert {c.intermediate for c in pinned_chains("none").values()} == {ASK}
    assert list(pinned_chains("VLEK", ["genoa"])) == ["genoa"]
    assert _der(pinned_chains("VLEK", ["turin"])["turin"].ask) == _der(load_vlek_chain("turin").ask)
    assert set(PINNED_VLEK_SHA256) == set(PINNED_SHA256) == set(PRODUCTS)


def test_intermediate_is_named_by_the_certificate() -> None:
    assert intermediate_name(load_vlek_chain("milan").ask) == ASVK
    assert intermediate_name(load_product_chain("milan").ask) == ASK
    forge = make_vlek_forge()
    assert (intermediate_name(forge.asvk), intermediate_name(forge.ask)) == (ASVK, ASK)
    assert read_chain_file(SNP_CERTS_DIR / "asvk_ark_turin.pem").intermediate == ASVK
    assert read_chain_file(SNP_CERTS_DIR / "ask_ark_turin.pem").intermediate == ASK
    assert SnpChain(forge.ask, forge.ark, "x").intermediate == ASK  # the default: what every caller built so far


# -- a VLEK report through a forged ARK -> ASVK -> VLEK ------------------------------------------------------------

def test_vlek_report_verifies_link_by_link() -> None:
    forge = make_vlek_forge()
    v = verify_snp_report(_vlek_report(), forge.vlek, {"test": forge.asvk_chain()}, forge.anchors(),
                          Expectations(nonce=NONCE, vmpl=0), product="milan")
    assert v.check("signature").state == "ok" and "with the VLEK's key" in v.check("signature").reason
    assert v.check("chain") == Check("chain", "ok", "VLEK <- ASVK <- ARK verified to AMD's test ARK")
    assert [(link.name, link.ok) for link in v.links] == [
        ("ARK (self-signed)", True), ("ARK pinned", True), ("ARK -> ASVK", True), ("ASVK -> VLEK", True)]
    assert v.check("vcek_tcb").state == "ok"
    # a VLEK names no chip: the chip-id question is not asked, so it does not decide
    chip = v.check("vcek_chip_id")
    assert chip == Check("vcek_chip_id", "unknown", "a VLEK names no chip: the report is bound to the cloud "
                                                    "provider's VLEK, not to one chip's key", asked=False)
    assert v.not_holding == [] and v.ok


def test_a_vcek_without_hwid_still_leaves_the_chip_id_unknown_and_asked() -> None:
    from pytest_sev.attest.snp_report import parse_report
    from pytest_sev.attest.snp_vcek import VcekFacts
    from pytest_sev.attest.snp_verify import check_vcek_chip_id
    report = parse_report(make_report())
    assert report.signer.signing_key == "VCEK"
    check = check_vcek_chip_id(report, VcekFacts(product_name="Milan", tcb={}, hwid=None))
    assert (check.state, check.asked) == ("unknown", True) and "no hwID" in check.reason


def test_chain_check_returns_the_pinned_product_of_the_asvk_chain() -> None:
    forge = make_vlek_forge()
    chains = {"ask": forge.ask_chain(), "asvk": forge.asvk_chain()}
    check, links, product = check_chain(_vlek_report(), forge.vlek, chains, forge.anchors())
    assert check.state == "ok" and product == "test" and links[-1].name == "ASVK -> VLEK"


def test_asvk_that_did_not_sign_the_vlek_fails_naming_the_link() -> None:
    forge, other = make_vlek_forge(), make_vlek_forge(1)
    wrong = SnpChain(other.asvk, other.ark, "the other ASVK chain", ASVK)
    check, links, product = check_chain(_vlek_report(), forge.vlek, {"other": wrong}, other.anchors())
    assert check == Check("chain", "failed", f"ASVK -> VLEK: FAILED ({PSS_FAILS})")
    assert [link.ok for link in links] == [True, True, True, False] and product is None
    both = {"other": wrong, "again": wrong}
    check, links, product = check_chain(_vlek_report(), forge.vlek, both, other.anchors())
    assert check == Check("chain", "failed", "ASVK -> VLEK: FAILED (no ASVK of other, again signs this VLEK)")
    assert [(link.signer, link.subject, link.ok) for link in links] == [("ASVK", "VLEK", False)] and product is None


def test_asvk_chain_whose_ark_is_not_pinned_fails_at_the_pin() -> None:
    forge, other = make_vlek_forge(), make_vlek_forge(1)
    check, links, _ = check_chain(_vlek_report(), forge.vlek, {"test": forge.asvk_chain()}, other.anchors())
    assert check.state == "failed" and check.reason.startswith("ARK pinned: FAILED (the ARK of the test ASVK chain")
    assert [link.ok for link in links] == [True, False, True, True]


def test_an_asvk_the_ark_did_not_sign_fails_naming_it() -> None:
    forge, other = make_vlek_forge(), make_vlek_forge(1)
    mixed = SnpChain(forge.asvk, other.ark, "mixed", ASVK)
    check, _, _ = check_chain(_vlek_report(), forge.vlek, {"mixed": mixed}, other.anchors())
    assert check == Check("chain", "failed", f"ARK -> ASVK: FAILED ({PSS_FAILS})")


def test_vlek_given_for_a_vcek_signed_report_fails() -> None:
    """The report says VCEK: only the ASK chain is tried, and the ASK did not sign the VLEK."""
    forge = make_vlek_forge()
    report = _vlek_report(signer_info=VCEK_SIGNER)
    chains = {"ask": forge.ask_chain(), "asvk": forge.asvk_chain()}
    v = verify_snp_report(report, forge.vlek, chains, forge.anchors(), product="milan")
    assert v.check("signature").state == "ok"  # the VLEK's key did sign it
    assert v.check("chain") == Check("chain", "failed", f"ASK -> VCEK: FAILED ({PSS_FAILS})")
    assert [link.name for link in v.links][2:] == ["ARK -> ASK", "ASK -> VCEK"] and not v.ok


def test_no_vlek_given_is_unknown() -> None:
    forge = make_vlek_forge()
    v = verify_snp_report(_vlek_report(), None, {"test": forge.asvk_chain()}, forge.anchors(), product="milan")
    assert v.check("signature") == Check("signature", "unknown", "no VLEK given: the signature cannot be checked")
    assert v.check("chain") == Check("chain", "unknown", "no VLEK given: the chain cannot be checked")
    assert v.links == () and not v.ok


def test_a_vlek_never_verifies_through_an_ask_chain() -> None:
    """A VLEK the test ASK signed: its ASK chain would verify it, and is never tried."""
    forge = make_vlek_forge()
    key = ec.generate_private_key(ec.SECP384R1())
    by_ask = forge.issue("SEV-VLEK", key, by="ASK")
    report = _vlek_report(key)
    assert check_chain(report, by_ask, {"ask": forge.ask_chain()}, forge.anchors()) == (
        Check("chain", "unknown", NO_ASVK), (), None)
    check, links, _ = check_chain(report, by_ask, {"ask": forge.ask_chain(), "asvk": forge.asvk_chain()},
                                  forge.anchors())
    assert check == Check("chain", "failed", f"ASVK -> VLEK: FAILED ({PSS_FAILS})")
    assert links[-1].signer == "ASVK"
    # the same certificate for a VCEK-signed report goes through the ASK: the pairing, not the key, decides
    vcek_report = _vlek_report(key, signer_info=VCEK_SIGNER)
    assert check_chain(vcek_report, by_ask, {"ask": forge.ask_chain()}, forge.anchors())[0].state == "ok"


def test_a_vcek_never_verifies_through_an_asvk_chain() -> None:
    """A VCEK the test ASVK signed: its ASVK chain would verify it, and is never tried."""
    forge = make_vlek_forge()
    key = ec.generate_private_key(ec.SECP384R1())
    by_asvk = forge.issue("SEV-VCEK", key, by="ASVK")
    report = _vlek_report(key, signer_info=VCEK_SIGNER)
    assert check_chain(report, by_asvk, {"asvk": forge.asvk_chain()}, forge.anchors()) == (
        Check("chain", "unknown", "no ASK/ARK given to check the VCEK against (an ASVK signs VLEKs only: "
                                  "asvk not used)"), (), None)
    two = {"a": forge.asvk_chain(), "b": forge.asvk_chain()}
    assert check_chain(report, by_asvk, two, forge.anchors())[0].reason == (
        "no ASK/ARK given to check the VCEK against (an ASVK signs VLEKs only: a, b not used)")
    check, links, _ = check_chain(report, by_asvk, {"asvk": forge.asvk_chain(), "ask": forge.ask_chain()},
                                  forge.anchors())
    assert check == Check("chain", "failed", f"ASK -> VCEK: FAILED ({PSS_FAILS})")
    assert [link.name for link in links][2:] == ["ARK -> ASK", "ASK -> VCEK"]
    # the same certificate for a VLEK-signed report goes through the ASVK
    assert check_chain(_vlek_report(key), by_asvk, {"asvk": forge.asvk_chain()}, forge.anchors())[0].state == "ok"


def test_vcek_report_still_verifies_with_both_kinds_of_chain_given() -> None:
    forge = make_vlek_forge()
    report = parse_report(forge.sign(make_report(report_data=NONCE), forge.vcek_key))
    chains = {"asvk": forge.asvk_chain(), "ask": forge.ask_chain()}
    v = verify_snp_report(report, forge.vcek, chains, forge.anchors(), Expectations(nonce=NONCE), product="milan")
    assert v.check("chain") == Check("chain", "ok", "VCEK <- ASK <- ARK verified to AMD's test ARK")
    assert v.ok, [c.describe() for c in v.not_holding]


def test_forged_vlek_against_amds_asvks_is_refused() -> None:
    forge = make_vlek_forge()
    check, links, product = check_chain(_vlek_report(), forge.vlek, pinned_chains("VLEK"), pinned_arks())
    assert check == Check("chain", "failed", "ASVK -> VLEK: FAILED (no ASVK of milan, genoa, turin signs this VLEK)")
    assert product is None
    # and the real VCEK-signed Milan report never goes through AMD's ASVKs
    kat = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat" / "reports"
    from pytest_sev.attest.snp_roots import read_vcek
    real = parse_report((kat / "gosev-milan-report.bin").read_bytes())
    vcek = read_vcek(kat / "gosev-milan-vcek.der")
    assert check_chain(real, vcek, pinned_chains("VLEK"), pinned_arks())[0].state == "unknown"
    assert check_chain(real, vcek, {**pinned_chains("VLEK"), "ask": load_product_chain("milan")},
                       pinned_arks())[0].reason == "VCEK <- ASK <- ARK verified to AMD's milan ARK"


# -- a VLEK from the host's certificate table ------------------------------------------------------------------------

def test_vlek_from_the_cert_table_verifies_and_the_tables_asvk_is_not_used() -> None:
    forge, other = make_vlek_forge(), make_vlek_forge(1)
    blob = table((VCEK_GUID, _der(forge.vcek)), (VLEK_GUID, _der(forge.vlek)), (ASK_GUID, _der(other.asvk)),
                 (ARK_GUID, _der(other.ark)))
    report = _vlek_report()
    lookup = find_vcek(report, cert_table=blob, product="milan")
    assert lookup.source == SOURCE_TABLE and lookup.cert is not None and _der(lookup.cert) == _der(forge.vlek)
    v = verify_snp_report(report, lookup.cert, {"test": forge.asvk_chain()}, forge.anchors(), product="milan")
    assert v.check("chain").state == "ok" and v.check("signature").state == "ok"


# -- the CLI ---------------------------------------------------------------------------------------------------------

def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["verify", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def vlek_files(tmp_path: Path) -> Path:
    forge = make_vlek_forge()
    (tmp_path / "report.bin").write_bytes(forge.sign(make_report(signer_info=VLEK_SIGNER)))
    (tmp_path / "vlek.der").write_bytes(_der(forge.vlek))
    (tmp_path / "aux.bin").write_bytes(table((VLEK_GUID, _der(forge.vlek))))
    (tmp_path / "chain.pem").write_bytes(forge.asvk_chain_pem())
    return tmp_path


def test_cli_tries_amds_asvks_for_a_vlek(capsys: pytest.CaptureFixture[str], vlek_files: Path) -> None:
    rc, out, _ = _cli(capsys, str(vlek_files / "report.bin"), "--vcek", str(vlek_files / "vlek.der"))
    assert rc == 1
    assert "  signature: ok (" in out
    assert "  chain: failed (ASVK -> VLEK: FAILED (no ASVK of milan, genoa, turin signs this VLEK))" in out


def test_cli_product_uses_that_asvk(capsys: pytest.CaptureFixture[str], vlek_files: Path) -> None:
    rc, out, _ = _cli(capsys, str(vlek_files / "report.bin"), "--cert-table", str(vlek_files / "aux.bin"),
                      "--product", "genoa", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["vcek_source"]["source"] == "cert_table"
    assert [(link["link"], link["ok"]) for link in doc["chain_links"]] == [
        ("ARK (self-signed)", True), ("ARK pinned", True), ("ARK -> ASVK", True), ("ASVK -> VLEK", False)]
    assert doc["chain_links"][1]["reason"] == "AMD's genoa ARK"


def test_cli_chain_file_needs_amds_ark(capsys: pytest.CaptureFixture[str], vlek_files: Path) -> None:
    rc, out, _ = _cli(capsys, str(vlek_files / "report.bin"), "--vcek", str(vlek_files / "vlek.der"),
                      "--chain", str(vlek_files / "chain.pem"))
    assert rc == 1 and "  chain: failed (ARK pinned: FAILED (the ARK of chain file " in out
    assert "    ARK -> ASVK: ok\n" in out and "    ASVK -> VLEK: ok\n" in out
    rc, out, _ = _cli(capsys, str(vlek_files / "report.bin"), "--vcek", str(vlek_files / "vlek.der"),
                      "--chain", str(SNP_CERTS_DIR / "asvk_ark_milan.pem"))
    assert rc == 1 and "  chain: failed (ASVK -> VLEK: FAILED (" in out and "    ARK pinned: ok (AMD's milan ARK)" in out


def test_cli_vcek_report_is_not_tried_against_asvks(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    forge = make_forge()
    (tmp_path / "report.bin").write_bytes(forge.sign(make_report()))
    (tmp_path / "vcek.der").write_bytes(_der(forge.vcek))
    rc, out, _ = _cli(capsys, str(tmp_path / "report.bin"), "--vcek", str(tmp_path / "vcek.der"))
    assert rc == 1 and "  chain: failed (ASK -> VCEK: FAILED (no ASK of milan, genoa, turin signs this VCEK))" in out


def test_sha384_is_what_the_asvk_is_signed_with() -> None:
    """The pinned ASVKs are RSA-PSS/SHA-384 as the ASK (what :mod:`.snp_verify` checks)."""
    for product in PRODUCTS:
        asvk = load_vlek_chain(product).ask
        assert isinstance(asvk.signature_hash_algorithm, hashes.SHA384)


def test_the_live_check_tries_amds_asvk_chains_for_a_vlek_signed_report(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from test_proofs_snp_attest import snp_guest_spec

    from pytest_sev.proofs.snp_attest import FetchResult, check_live_report
    forge = make_vlek_forge()
    fetched = FetchResult("report", report=_vlek_report().raw, via="configfs-tsm")

    def find(r: object, *, cert_table: object = None, cert_dir: object = None) -> SimpleNamespace:
        return SimpleNamespace(cert=forge.vlek, source="the table", reason="in it")
    live = check_live_report(fetched, snp_guest_spec(tmp_path), NONCE, find_vcek=find, measure=lambda i: bytes(48))
    # the default chains are AMD's ASVK/ARK (a forged VLEK is signed by none of them); ASK chains
    # would have made this "unknown" instead
    assert live.verdict.check("chain") == Check(
        "chain", "failed", "ASVK -> VLEK: FAILED (no ASVK of milan, genoa, turin signs this VLEK)")
    # with the forge's own ASVK chain and anchor, the same report's chain holds
    ok = check_live_report(fetched, snp_guest_spec(tmp_path), NONCE, find_vcek=find, measure=lambda i: bytes(48),
                           chains={"test": forge.asvk_chain()}, anchors=forge.anchors())
    assert ok.verdict.check("chain").state == "ok"
