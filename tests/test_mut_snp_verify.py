"""Each decision of the SNP report verdict (:mod:`pytest_sev.attest.snp_verify`), check by check.

Why a second file: ``test_snp_report_verify`` proves the verdict end to end on
real and forged reports; here every branch of every check is taken on its own
(ok, failed, unknown, not asked) and the state and the reason it gives are
asserted, so that flipping any one decision fails a test. Reports are made by
``snp_report_forge`` (unsigned unless a check needs the signature), the VCEK's
facts are given directly where only they matter.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import CHIP_ID, make_forge, make_report, tcb_legacy, tcb_turin

from pytest_sev.attest import snp_verify
from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.snp_report import SnpReport, TcbVersion, parse_report
from pytest_sev.attest.snp_roots import SnpChain
from pytest_sev.attest.snp_vcek import VcekFacts
from pytest_sev.attest.snp_verify import (
    ChainLink,
    Check,
    Expectations,
    SnpVerdict,
    chain_links,
    check_chain,
    check_debug,
    check_measurement,
    check_min_tcb,
    check_policy_equals,
    check_report_data,
    check_signature,
    check_vcek_chip_id,
    check_vcek_tcb,
    check_vmpl,
    parse_min_tcb,
    pinned_product,
    resolve_product,
    verify_snp_report,
)

NONCE = bytes(range(100, 164))
MILAN_TCB = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
VCEK_SIGNER, VLEK_SIGNER, NO_SIGNER = 0, 1 << 2, 7 << 2


def _report(**fields: Any) -> SnpReport:
    return parse_report(make_report(**fields))


def _signed(**fields: Any) -> SnpReport:
    return parse_report(make_forge().sign(make_report(**fields)))


def _t(check: Check) -> tuple[str, str, str, bool]:
    return check.name, check.state, check.reason, check.asked


def _other_forge() -> Any:
    return make_forge(microcode=114)  # another ARK/ASK/VCEK (make_forge caches one per argument set)


# -- Check, ChainLink, SnpVerdict ------------------------------------------------------

def test_check_holds_describe_and_json() -> None:
    ok, failed = Check("a", "ok", "fine"), Check("b", "failed", "bad")
    unasked = Check("c", "unknown", "none given", asked=False)
    assert ok.holds and not failed.holds and not unasked.holds
    assert Check("d", "unknown", "why").asked
    assert [ok.describe(), failed.describe(), unasked.describe()] == \
        ["a: ok (fine)", "b: failed (bad)", "c: not asked (none given)"]
    assert unasked.to_json() == {"name": "c", "state": "unknown", "asked": False, "reason": "none given"}


def test_chain_link_names_and_states() -> None:
    assert ChainLink("ARK", "ARK", True).name == "ARK (self-signed)"
    assert ChainLink("ARK pinned", "", True).name == "ARK pinned"
    assert ChainLink("ASK", "VCEK", True).name == "ASK -> VCEK"
    assert ChainLink("ASK", "VCEK", True).describe() == "ASK -> VCEK: ok"
    assert ChainLink("ASK", "VCEK", False, "no").describe() == "ASK -> VCEK: FAILED (no)"
    assert ChainLink("ASK", "VCEK", None).describe() == "ASK -> VCEK: not checked"
    assert ChainLink("ASK", "VCEK", None).reason == ""


def test_verdict_holds_only_when_every_asked_check_does() -> None:
    report = _report()
    ok, unasked = Check("a", "ok", ""), Check("b", "unknown", "", asked=False)
    unknown, failed = Check("c", "unknown", "why"), Check("d", "failed", "bad")
    assert SnpVerdict(report, None, (ok, unasked)).ok
    assert SnpVerdict(report, None, (ok, unasked)).not_holding == []
    assert not SnpVerdict(report, None, (ok, unknown)).ok
    assert not SnpVerdict(report, None, (failed, ok)).ok
    verdict = SnpVerdict(report, None, (ok, unknown, unasked, failed))
    assert verdict.not_holding == [unknown, failed]
    assert verdict.check("d") is failed and verdict.links == ()


def test_verdict_fields_and_json() -> None:
    report = _report(policy=0x30000, vmpl=1, report_data=NONCE)
    link = ChainLink("ASK", "VCEK", False, "no")
    verdict = SnpVerdict(report, "milan", (Check("a", "ok", "fine"),), (link,))
    tcb = tcb_legacy(3, 0, 8, 115)
    fields = {
        "version": 2, "policy": "0x30000", "vmpl": 1, "report_data": NONCE.hex(),
        "measurement": bytes(range(48)).hex(), "host_data": bytes(32).hex(), "chip_id": CHIP_ID.hex(),
        "reported_tcb": {"raw": f"{tcb:#018x}", **MILAN_TCB}, "signing_key": "VCEK", "product": "milan",
    }
    assert verdict.fields() == fields
    assert verdict.to_json() == {
        **fields, "checks": [{"name": "a", "state": "ok", "asked": True, "reason": "fine"}],
        "chain_links": [{"link": "ASK -> VCEK", "ok": False, "reason": "no"}], "ok": True}
    # no product: the TCB is the raw number alone
    assert SnpVerdict(report, None, ()).fields()["reported_tcb"] == {"raw": f"{tcb:#018x}"}


# -- signature ---------------------------------------------------------------------

def test_signature_of_an_honest_report_holds() -> None:
    assert _t(check_signature(_signed(), make_forge().vcek)) == (
        "signature", "ok", "ECDSA P-384/SHA-384 over bytes 0..0x2A0 verifies with the VCEK's key", True)


def test_signature_decisions() -> None:
    vcek = make_forge().vcek
    assert _t(check_signature(_report(signer_info=NO_SIGNER), vcek)) == (
        "signature", "failed", "the report is not signed (SIGNING_KEY 7: none)", True)
    assert _t(check_signature(_report(), None)) == (
        "signature", "unknown", "no VCEK given: the signature cannot be checked", True)
    assert _t(check_signature(_report(signer_info=VLEK_SIGNER), None)) == (
        "signature", "unknown", "no VLEK given: the signature cannot be checked", True)
    assert _t(check_signature(_report(sig_algo=2), vcek)) == (
        "signature", "failed", "signature algorithm 2 is not ECDSA P-384 with SHA-384 (1)", True)
    # signed by the VCEK but unsigned bytes: R = S = 0
    assert _t(check_signature(_report(), vcek)) == (
        "signature", "failed", "the VCEK's key does not verify the report's signature over bytes 0..0x2A0", True)
    other = parse_report(make_forge().sign(make_report(), key=ec.generate_private_key(ec.SECP384R1())))
    assert check_signature(other, vcek).state == "failed"
    vlek = parse_report(make_forge().sign(make_report(signer_info=VLEK_SIGNER)))
    assert check_signature(vlek, vcek).reason == \
        "ECDSA P-384/SHA-384 over bytes 0..0x2A0 verifies with the VLEK's key"


def test_signature_needs_a_p384_key() -> None:
    forge = make_forge()
    # the ASK holds an RSA key
    assert _t(check_signature(_signed(), forge.ask)) == (
        "signature", "failed", "the VCEK certificate does not hold a P-384 key", True)
    p256 = _ec_cert(ec.SECP256R1())
    assert check_signature(_signed(), p256).reason == "the VCEK certificate does not hold a P-384 key"


def test_malformed_signature_is_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(r: int, s: int) -> bytes:
        raise ValueError("R out of range")
    monkeypatch.setattr(snp_verify, "encode_dss_signature", refuse)
    assert _t(check_signature(_signed(), make_forge().vcek)) == (
        "signature", "failed", "the report's signature is malformed: R out of range", True)


def _ec_cert(curve: ec.EllipticCurve) -> Any:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))


# -- chain -------------------------------------------------------------------------

def test_chain_links_of_a_pinned_chain() -> None:
    forge = make_forge()
    links = chain_links(forge.vcek, forge.chain(), forge.anchors())
    assert [(link.signer, link.subject, link.ok, link.reason) for link in links] == [
        ("ARK", "ARK", True, ""), ("ARK pinned", "", True, "AMD's test ARK"),
        ("ARK", "ASK", True, ""), ("ASK", "VCEK", True, "")]
    assert chain_links(forge.vcek, forge.chain(), forge.anchors(), subject="VLEK")[-1].name == "ASK -> VLEK"


def test_chain_links_of_an_unpinned_chain_name_the_ark() -> None:
    forge, other = make_forge(), _other_forge()
    digest = hashlib.sha256(forge.ark.public_bytes(Encoding.DER)).hexdigest()[:16]
    pin = chain_links(forge.vcek, forge.chain(), other.anchors())[1]
    assert (pin.signer, pin.subject, pin.ok, pin.reason) == (
        "ARK pinned", "", False, f"the ARK of the test chain (DER sha256 {digest}..) is not AMD's ARK of test")
    assert chain_links(forge.vcek, forge.chain(), {})[1].reason.endswith("is not AMD's ARK of any product")
    assert chain_links(forge.vcek, forge.chain(), {"a": other.ark, "b": other.ark})[1].reason.endswith(
        "is not AMD's ARK of a, b")


def test_chain_link_that_does_not_verify_says_why() -> None:
    forge, other = make_forge(), _other_forge()
    links = chain_links(other.vcek, forge.chain(), forge.anchors())
    assert [link.ok for link in links] == [True, True, True, False]
    assert links[-1].reason == "signature does not verify (RSA-PSS, SHA-384, salt 48)"
    # an ARK whose key is not RSA verifies nothing
    ec_ark = SnpChain(forge.ask, forge.vcek, "an EC ARK")
    links = chain_links(forge.vcek, ec_ark, forge.anchors())
    assert [(link.ok, link.reason) for link in links][0] == (False, "the signer's key is not an RSA key")


def test_an_ask_the_ark_did_not_sign() -> None:
    forge, other = make_forge(), _other_forge()
    mixed = SnpChain(other.ask, forge.ark, "a mixed chain")
    links = chain_links(other.vcek, mixed, forge.anchors())
    assert [link.ok for link in links] == [True, True, False, True]
    check, links, product = check_chain(_report(), other.vcek, {"mixed": mixed}, forge.anchors())
    assert _t(check) == ("chain", "failed",
                         "ARK -> ASK: FAILED (signature does not verify (RSA-PSS, SHA-384, salt 48))", True)
    assert product is None


def test_pinned_product() -> None:
    forge, other = make_forge(), _other_forge()
    assert pinned_product(forge.ark, {"x": other.ark, "y": forge.ark}) == "y"
    assert pinned_product(forge.ark, {"x": other.ark}) is None


def test_chain_unknown_without_vcek_or_asks() -> None:
    forge = make_forge()
    chains = {"test": forge.chain()}
    assert check_chain(_report(), None, chains, forge.anchors()) == (
        Check("chain", "unknown", "no VCEK given: the chain cannot be checked"), (), None)
    assert check_chain(_report(signer_info=VLEK_SIGNER), None, chains, forge.anchors())[0].reason == \
        "no VLEK given: the chain cannot be checked"
    vlek = check_chain(_report(signer_info=VLEK_SIGNER), forge.vcek, chains, forge.anchors())
    assert vlek[0].state == "unknown" and vlek[1:] == ((), None)
    assert vlek[0].reason == "no ASVK/ARK given to check the VLEK against (an ASK signs VCEKs only: test not used)"
    assert check_chain(_report(), forge.vcek, {}, forge.anchors()) == (
        Check("chain", "unknown", "no ASK/ARK given to check the VCEK against"), (), None)


def test_chain_ok_names_the_pinned_product() -> None:
    forge = make_forge()
    check, links, product = check_chain(_report(), forge.vcek, {"test": forge.chain()}, forge.anchors())
    assert _t(check) == ("chain", "ok", "VCEK <- ASK <- ARK verified to AMD's test ARK", True)
    assert len(links) == 4 and all(link.ok for link in links) and product == "test"


def test_chain_picks_the_candidate_whose_ask_signs() -> None:
    forge, other = make_forge(), _other_forge()
    anchors = {"o": other.ark, "t": forge.ark}
    check, links, product = check_chain(_report(), forge.vcek, {"o": other.chain(), "t": forge.chain()}, anchors)
    assert (check.state, product) == ("ok", "t")
    assert links == tuple(chain_links(forge.vcek, forge.chain(), anchors))


def test_chain_no_candidate_signs() -> None:
    forge, other, third = make_forge(), _other_forge(), make_forge(microcode=113)
    two = check_chain(_report(), forge.vcek, {"o": other.chain(), "p": third.chain()}, forge.anchors())
    link = ChainLink("ASK", "VCEK", False, "no ASK of o, p signs this VCEK")
    assert two == (Check("chain", "failed", "ASK -> VCEK: FAILED (no ASK of o, p signs this VCEK)"), (link,), None)
    # one candidate: its links, naming the one that failed
    one, links, product = check_chain(_report(), forge.vcek, {"o": other.chain()}, other.anchors())
    assert _t(one) == ("chain", "failed",
                       "ASK -> VCEK: FAILED (signature does not verify (RSA-PSS, SHA-384, salt 48))", True)
    assert [link.ok for link in links] == [True, True, True, False] and product is None


def test_chain_fails_on_the_first_failing_link() -> None:
    forge, other = make_forge(), _other_forge()
    check, links, product = check_chain(_report(), forge.vcek, {"t": forge.chain()}, other.anchors())
    assert check.state == "failed" and check.reason.startswith("ARK pinned: FAILED (the ARK of the test chain")
    assert [link.ok for link in links] == [True, False, True, True] and product is None


# -- the VCEK's facts --------------------------------------------------------------

def test_vcek_tcb_decisions() -> None:
    report = _report()
    assert _t(check_vcek_tcb(report, None, "milan")) == ("vcek_tcb", "unknown", "no VCEK given", True)
    assert _t(check_vcek_tcb(report, VcekFacts("Milan-B0", {}, None), "milan")) == (
        "vcek_tcb", "unknown", "the certificate carries no TCB extensions", True)
    assert _t(check_vcek_tcb(report, VcekFacts("Milan-B0", MILAN_TCB, None), None)) == (
        "vcek_tcb", "unknown", "product unknown: the report's TCB bytes cannot be named", True)
    assert _t(check_vcek_tcb(report, VcekFacts(None, {"fmc": 1}, None), "milan")) == (
        "vcek_tcb", "unknown", "the certificate names none of the milan TCB components", True)
    assert _t(check_vcek_tcb(report, VcekFacts(None, MILAN_TCB, None), "milan")) == (
        "vcek_tcb", "ok", "REPORTED_TCB equals the VCEK's bootloader=3 tee=0 snp=8 microcode=115", True)
    partial = {"snp": 8, "microcode": 115, "fmc": 9}
    assert check_vcek_tcb(report, VcekFacts(None, partial, None), "milan").reason == \
        "REPORTED_TCB equals the VCEK's snp=8 microcode=115; the certificate has no bootloader, tee"
    newer = {**MILAN_TCB, "snp": 9, "microcode": 116}
    assert _t(check_vcek_tcb(report, VcekFacts(None, newer, None), "milan")) == (
        "vcek_tcb", "failed", "REPORTED_TCB differs from the VCEK's: snp 8 (VCEK 9), microcode 115 (VCEK 116)", True)


def test_vcek_chip_id_decisions() -> None:
    report = _report()
    assert _t(check_vcek_chip_id(report, None)) == ("vcek_chip_id", "unknown", "no VCEK given", True)
    assert _t(check_vcek_chip_id(report, VcekFacts(None, {}, None))) == (
        "vcek_chip_id", "unknown", "the certificate carries no hwID (a VLEK has none)", True)
    assert _t(check_vcek_chip_id(_report(chip_id=bytes(64)), VcekFacts(None, {}, CHIP_ID))) == (
        "vcek_chip_id", "unknown", "the report's CHIP_ID is masked (all zero)", True)
    assert _t(check_vcek_chip_id(report, VcekFacts(None, {}, CHIP_ID))) == (
        "vcek_chip_id", "ok", "CHIP_ID equals the VCEK's hwID", True)
    other = bytes(reversed(CHIP_ID))
    assert _t(check_vcek_chip_id(report, VcekFacts(None, {}, other))) == (
        "vcek_chip_id", "failed", f"CHIP_ID {CHIP_ID.hex()[:16]}.. is not the VCEK's hwID {other.hex()[:16]}..", True)
    assert _t(check_vcek_chip_id(report, VcekFacts(None, {}, CHIP_ID[:9]))) == (
        "vcek_chip_id", "failed", "the VCEK's hwID is 9 bytes, expected 64 (or 8 on Turin)", True)


def test_vcek_chip_id_turin_eight_bytes() -> None:
    turin = _report(chip_id=CHIP_ID[:8] + bytes(56))
    assert check_vcek_chip_id(turin, VcekFacts(None, {}, CHIP_ID[:8])).state == "ok"
    assert check_vcek_chip_id(turin, VcekFacts(None, {}, CHIP_ID[1:9])).state == "failed"
    # the rest of a Turin CHIP_ID is zero: a report with more is not the chip the hwID names
    assert check_vcek_chip_id(_report(), VcekFacts(None, {}, CHIP_ID[:8])).state == "failed"
    ninth = _report(chip_id=CHIP_ID[:8] + b"\x01" + bytes(55))
    assert check_vcek_chip_id(ninth, VcekFacts(None, {}, CHIP_ID[:8])).state == "failed"


# -- what the owner launched ---------------------------------------------------------

def test_report_data_decisions() -> None:
    report = _report(report_data=NONCE)
    assert _t(check_report_data(report, None)) == ("report_data", "unknown", "no nonce given", False)
    assert _t(check_report_data(report, NONCE)) == ("report_data", "ok", "REPORT_DATA equals the nonce", True)
    assert _t(check_report_data(report, NONCE + b"\0")) == (
        "report_data", "failed", "the nonce is 65 bytes, REPORT_DATA holds 64", True)
    assert _t(check_report_data(report, bytes(64))) == (
        "report_data", "failed", f"REPORT_DATA {NONCE.hex()[:32]}.. is not the nonce {bytes(16).hex()}..", True)
    short = _report(report_data=b"\x11" * 32 + bytes(32))
    assert _t(check_report_data(short, b"\x11" * 32)) == (
        "report_data", "ok", "REPORT_DATA equals the nonce (32 bytes, zero-padded to 64)", True)
    # padded with zeros, never with anything else
    assert check_report_data(_report(report_data=b"\x11" * 32 + b" " * 32), b"\x11" * 32).state == "failed"


def test_measurement_policy_vmpl_decisions() -> None:
    report = _report(policy=0x30000, vmpl=1)
    m = bytes(range(48))
    assert _t(check_measurement(report, None)) == ("measurement", "unknown", "no expected measurement given", False)
    assert _t(check_measurement(report, m)) == ("measurement", "ok", f"MEASUREMENT equals the expected {m.hex()[:16]}..", True)
    assert _t(check_measurement(report, bytes(48))) == (
        "measurement", "failed", f"MEASUREMENT {m.hex()} is not the expected {bytes(48).hex()}", True)
    assert _t(check_policy_equals(report, None)) == ("policy", "unknown", "no launched policy given", False)
    assert _t(check_policy_equals(report, 0x30000)) == ("policy", "ok", "POLICY equals the launched 0x30000", True)
    assert _t(check_policy_equals(report, 0x20000)) == (
        "policy", "failed", "POLICY 0x30000 is not the launched 0x20000", True)
    assert _t(check_vmpl(report, None)) == ("vmpl", "unknown", "no expected VMPL given; the report's is 1", False)
    assert _t(check_vmpl(report, 1)) == ("vmpl", "ok", "VMPL 1", True)
    assert _t(check_vmpl(report, 0)) == ("vmpl", "failed", "VMPL 1 is not the expected 0", True)


def test_min_tcb_decisions() -> None:
    report = _report()  # bootloader 3, tee 0, snp 8, microcode 115
    assert _t(check_min_tcb(report, None, "milan")) == ("min_tcb", "unknown", "no minimum TCB given", False)
    assert _t(check_min_tcb(report, {"snp": 8}, None)) == (
        "min_tcb", "unknown", "product unknown: the report's TCB bytes cannot be named", True)
    assert _t(check_min_tcb(report, {"fmc": 1, "spl": 0, "snp": 1}, "milan")) == (
        "min_tcb", "unknown", "fmc, spl is not a milan TCB component (bootloader, tee, snp, microcode)", True)
    assert _t(check_min_tcb(report, {"snp": 8, "bootloader": 3}, "milan")) == (
        "min_tcb", "ok", "REPORTED_TCB snp=8>=8 bootloader=3>=3", True)
    assert _t(check_min_tcb(report, {"snp": 9, "tee": 0, "microcode": 116}, "milan")) == (
        "min_tcb", "failed", "REPORTED_TCB below the minimum: snp 8 < 9, microcode 115 < 116", True)
    raw = TcbVersion(tcb_legacy(3, 0, 8, 115))
    assert check_min_tcb(report, raw, "milan").state == "ok"
    turin = _report(reported_tcb=tcb_turin(2, 4, 1, 3, 0x48))
    assert check_min_tcb(turin, TcbVersion(tcb_turin(3, 4, 1, 3, 0x48)), "turin").reason == \
        "REPORTED_TCB below the minimum: fmc 2 < 3"


def test_debug_decisions() -> None:
    assert _t(check_debug(_report(policy=0x30000), False)) == ("debug", "ok", "policy bit 19 (DEBUG) is off", True)
    assert check_debug(_report(policy=0x30000), True).reason == "policy bit 19 (DEBUG) is off"
    debug = _report(policy=0xB0000)
    assert _t(check_debug(debug, True)) == ("debug", "ok", "policy bit 19 (DEBUG) is on, allowed", True)
    assert _t(check_debug(debug, False)) == (
        "debug", "failed", "policy 0xb0000 has bit 19 (DEBUG) on: the host may decrypt the guest's memory "
                           "(allow debugging explicitly, --allow-debug, to accept)", True)


# -- parsing the minimum, the product, the whole verdict ------------------------------

@pytest.mark.parametrize("text, want", [
    ("  SNP = 0 , , Microcode=255 ", {"snp": 0, "microcode": 255}),
    ("fmc=1,tee=0x2", {"fmc": 1, "tee": 2}),
    (" 0x10 ", TcbVersion(16)),
])
def test_parse_min_tcb_forms(text: str, want: object) -> None:
    assert parse_min_tcb(text) == want


@pytest.mark.parametrize("text, message", [
    ("", "minimum TCB '': expected component=N,... or a TCB_VERSION number"),
    ("junk", "minimum TCB 'junk': expected component=N,... or a TCB_VERSION number"),
    ("spl=1", "minimum TCB: unknown component 'spl' (known: bootloader, fmc, microcode, snp, tee)"),
    ("snp=x", "minimum TCB: snp='x' is not a number"),
    ("snp==5", "minimum TCB: snp='=5' is not a number"),
    ("snp=256", "minimum TCB: snp=256 is not a security patch level (0..255)"),
    ("snp=-1", "minimum TCB: snp=-1 is not a security patch level (0..255)"),
])
def test_parse_min_tcb_refusals(text: str, message: str) -> None:
    with pytest.raises(FormatError) as err:
        parse_min_tcb(text)
    assert str(err.value) == message


def test_resolve_product_order() -> None:
    genoa_cpu = _report(version=3, cpuid=(0x19, 0x11, 0x00))
    facts = VcekFacts("Turin-B0", {}, None)
    assert resolve_product("milan", "genoa", facts, genoa_cpu) == "milan"
    assert resolve_product(None, "genoa", facts, _report()) == "genoa"
    assert resolve_product("test", None, facts, genoa_cpu) == "turin"
    assert resolve_product(None, None, None, genoa_cpu) == "genoa"
    assert resolve_product(None, None, VcekFacts(None, {}, None), genoa_cpu) == "genoa"
    assert resolve_product("x", "y", None, _report()) is None


def test_verify_runs_every_check_in_order_with_the_expectations() -> None:
    forge = make_forge()
    report = parse_report(forge.sign(make_report(report_data=NONCE, policy=0xB0000, vmpl=1)))
    expect = Expectations(nonce=NONCE, measurement=bytes(range(48)), policy=0xB0000, vmpl=1,
                          min_tcb={"snp": 8}, allow_debug=True)
    v = verify_snp_report(report, forge.vcek, {"test": forge.chain()}, forge.anchors(), expect)
    assert [(c.name, c.state) for c in v.checks] == [
        ("signature", "ok"), ("chain", "ok"), ("vcek_tcb", "ok"), ("vcek_chip_id", "ok"), ("debug", "ok"),
        ("report_data", "ok"), ("measurement", "ok"), ("policy", "ok"), ("vmpl", "ok"), ("min_tcb", "ok")]
    assert v.ok and v.product == "milan" and v.report is report and len(v.links) == 4
    # the product the chain reached names the TCB bytes, and the caller's product wins over it
    assert verify_snp_report(report, forge.vcek, {"test": forge.chain()}, forge.anchors(), expect,
                             product="genoa").product == "genoa"
    # default: nothing expected, debug refused
    bare = verify_snp_report(report, forge.vcek, {"test": forge.chain()}, forge.anchors())
    assert [c.name for c in bare.not_holding] == ["debug"]
    assert [c.name for c in bare.checks if not c.asked] == ["report_data", "measurement", "policy", "vmpl", "min_tcb"]


def test_the_chains_product_names_the_tcb_before_the_vceks() -> None:
    """A chain pinned as Milan's over a VCEK that says Genoa: the pinned ARK decides."""
    forge = make_forge(product_name="Genoa-B0")
    report = parse_report(forge.sign(make_report()))
    v = verify_snp_report(report, forge.vcek, {"milan": forge.chain()}, {"milan": forge.ark})
    assert v.product == "milan" and v.check("chain").state == "ok"
    assert verify_snp_report(report, forge.vcek, {"t": forge.chain()}, {"t": forge.ark}).product == "genoa"


def test_verify_without_vcek() -> None:
    forge = make_forge()
    v = verify_snp_report(_report(), None, {"test": forge.chain()}, forge.anchors(), product="milan")
    assert [(c.name, c.state) for c in v.checks[:4]] == [
        ("signature", "unknown"), ("chain", "unknown"), ("vcek_tcb", "unknown"), ("vcek_chip_id", "unknown")]
    assert v.links == () and v.product == "milan"
