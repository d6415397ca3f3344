"""The platform chain decides: it passes only when it reaches AMD's ARK.

Known-answer based: the real Naples and Rome chains (fixtures/sev-kat) verify
to the ARK/ASK shipped in the package; one byte flipped in one certificate
at a time fails at the link fixed by the chain's structure (not computed by
the code under test). Forged: a platform made here (its own OCA/CEK/PEK/PDH,
its CEK signed by an ASK made here under an ARK made here) is well formed
(it verifies against its own roots) and is refused against AMD's.
"""

from __future__ import annotations

import base64
import functools
import os
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from pytest_sev.attest import sevcert as sc
from pytest_sev.attest.amdroots import GENERATIONS, load_all_roots, load_roots
from pytest_sev.attest.cacert import parse_ca_cert
from pytest_sev.attest.chain import ChainVerdict, Link, from_qmp, verify_chain
from pytest_sev.attest.errors import ChainError, FormatError
from pytest_sev.attest.sevcert import encode_body, parse_sev_cert
from pytest_sev.attest.sigverify import pss

CERTS = Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat" / "certs"
#: the sev-kat vectors' copies of AMD's files, in the checkout (fixtures/sev-kat: shared/data/sev-kat unchanged)
KAT_CERTS = Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat" / "certs"
PLATFORMS = ("naples", "rome")
ALL_LINKS = ["ARK (self-signed)", "ARK -> ASK", "ASK -> CEK", "OCA (self-signed)", "OCA -> PEK", "CEK -> PEK",
             "PEK -> PDH"]
# flipping byte 4 changes a signed byte in both formats (api_major / key_id) and keeps them parseable
FLIP_AT = 4
#: certificate flipped -> the first link that must fail (top of the chain first)
EXPECTED_FAILURE = {"ark": "ARK (self-signed)", "ask": "ARK -> ASK", "cek": "ASK -> CEK",
                    "oca": "OCA (self-signed)", "pek": "OCA -> PEK", "pdh": "PEK -> PDH"}


def _flip(data: bytes, at: int = FLIP_AT) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _raw(gen: str) -> dict[str, bytes]:
    return {n: (CERTS / gen / f"{n}.cert").read_bytes() for n in ("ark", "ask", "pdh", "pek", "oca", "cek")}


def _verify_raw(raw: dict[str, bytes], gen: str | None = None, cek_file: bool = False) -> ChainVerdict:
    ark, ask = parse_ca_cert(raw["ark"]), parse_ca_cert(raw["ask"])
    c = {n: parse_sev_cert(raw[n], n) for n in ("pdh", "pek", "oca", "cek")}
    roots = {gen or "rome": (ark, ask)}
    return verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], roots, cek=c["cek"] if cek_file else None,
                        generation=gen)


def _verify(gen: str, flipped: str | None = None, at: int = FLIP_AT) -> ChainVerdict:
    raw = _raw(gen)
    if flipped:
        raw[flipped] = _flip(raw[flipped], at)
    return _verify_raw(raw, gen)


def _failing(v: ChainVerdict) -> list[str]:
    return [link.name for link in v.links if not link.holds]


# -- the known-answer chains -------------------------------------------------------------------


@pytest.mark.parametrize("gen", PLATFORMS)
def test_kat_chain_reaches_amds_ark_with_the_shipped_roots(gen: str) -> None:
    """Known-answer: the chain as PDH_CERT_EXPORT gives it (its own CEK) verifies, every link,
    to the ARK/ASK shipped in the package; the generation is found from the CEK alone."""
    c = {n: parse_sev_cert(v, n) for n, v in _raw(gen).items() if n not in ("ark", "ask")}
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], load_all_roots())
    assert v.ok and v.fully_anchored and v.failed is None, v.describe()
    assert v.generation == gen
    assert [link.name for link in v.links] == ALL_LINKS
    assert all(link.ok is True for link in v.links)
    assert v.describe().startswith(f"certificate chain verified up to AMD's {gen} ARK: ARK (self-signed): ok")


@pytest.mark.parametrize("gen", PLATFORMS)
def test_cek_file_replaces_the_chains_cek(gen: str) -> None:
    """The AMD-signed CEK given as a file is the one checked (here: the same bytes)."""
    v = _verify_raw(_raw(gen), None, cek_file=True)
    assert v.ok and v.generation == "rome" and _failing(v) == []


def test_shipped_roots_are_the_shared_kat_copies() -> None:
    """The package's ARK/ASK are byte for byte the files AMD publishes (the shared vectors' copies)."""
    for gen in GENERATIONS:
        ark, ask = load_roots(gen)
        assert ark.raw == (KAT_CERTS / gen / "ark.cert").read_bytes()
        assert ask.raw == (KAT_CERTS / gen / "ask.cert").read_bytes()
    assert list(load_all_roots()) == list(GENERATIONS)


@pytest.mark.parametrize("gen", PLATFORMS)
@pytest.mark.parametrize("cert", sorted(EXPECTED_FAILURE))
def test_one_flipped_body_byte_names_the_link(gen: str, cert: str) -> None:
    """One flipped signed byte in each certificate fails the chain at the named link."""
    v = _verify(gen, cert)
    assert not v.ok and not v.fully_anchored
    assert v.failed is not None and v.failed.name == EXPECTED_FAILURE[cert], v.describe()
    assert v.describe().startswith(f"certificate chain not anchored to AMD's ARK: {EXPECTED_FAILURE[cert]}: FAILED")


def _slot_links(gen: str) -> list[tuple[str, int, str]]:
    """(certificate, offset of a byte inside one of its signatures, the link that signature is)."""
    raw = _raw(gen)
    out = []
    for name in ("pdh", "pek", "oca", "cek"):
        cert = parse_sev_cert(raw[name])
        for i, slot in enumerate(cert.sigs):
            if slot.empty or slot.usage == sc.USAGE_CEK and name == "cek":
                continue
            signer = sc.usage_name(slot.usage)
            link = f"{signer} (self-signed)" if signer == cert.name else f"{signer} -> {cert.name}"
            out.append((name, sc.BODY_SIZE + i * (8 + sc.SIG_SIZE) + 8 + 10, link))
    # the CA certificates' signature is their last bytes
    out += [("ark", len(raw["ark"]) - 10, "ARK (self-signed)"), ("ask", len(raw["ask"]) - 10, "ARK -> ASK")]
    return out


@pytest.mark.parametrize("gen", PLATFORMS)
def test_each_flipped_signature_fails_exactly_its_link(gen: str) -> None:
    """A flipped byte inside one signature fails exactly the link that signature carries
    (PDH, PEK twice, OCA, CEK, ASK, ARK), and no other link."""
    cases = _slot_links(gen)
    assert {link for _c, _at, link in cases} == set(ALL_LINKS)
    for cert, at, link in cases:
        v = _verify(gen, cert, at)
        assert _failing(v) == [link], (cert, at, v.describe())
        assert v.failed is not None and v.failed.ok is False and "signature does not verify" in v.failed.reason


def test_body_encoder_reproduces_real_certificates() -> None:
    """Known-answer for the encoder used by the owner's DH certificate: re-encoding the
    parsed fields of a real PDH gives AMD's bytes."""
    for gen in PLATFORMS:
        raw = (CERTS / gen / "pdh.cert").read_bytes()
        c = parse_sev_cert(raw)
        assert encode_body(c.usage, c.algo, c.pubkey, c.api_major, c.api_minor) == raw[:0x414]


def test_from_qmp_reads_base64_pdh_and_chain() -> None:
    """QMP's base64 ``pdh`` and ``cert-chain`` (PEK, OCA, CEK) parse into the chain, which reaches the ARK."""
    d = CERTS / "rome"
    pdh, chain = from_qmp(base64.b64encode((d / "pdh.cert").read_bytes()).decode(),
                          base64.b64encode(b"".join((d / f"{n}.cert").read_bytes() for n in ("pek", "oca", "cek"))).decode())
    assert pdh.name == "PDH" and [c.name for c in chain] == ["PEK", "OCA", "CEK"]
    v = verify_chain(pdh, chain, {"rome": load_roots("rome", CERTS)})
    assert v.ok and v.generation == "rome"


def test_other_generation_roots_do_not_sign_this_cek() -> None:
    """Known-answer: Naples' chain against Rome's roots alone: no ASK signs the CEK."""
    c = {n: parse_sev_cert(v, n) for n, v in _raw("naples").items() if n not in ("ark", "ask")}
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {"rome": load_roots("rome")})
    assert _failing(v) == ["ASK -> CEK"] and v.generation is None
    assert "no ASK of rome signs this CEK" in v.failed.reason and "--sev-cek" in v.failed.reason  # type: ignore[union-attr]
    forced = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {"rome": load_roots("rome")}, generation="rome")
    assert _failing(forced) == ["ASK -> CEK"] and forced.generation == "rome"
    with pytest.raises(ChainError, match="no ARK/ASK loaded for generation 'milan'"):
        verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {"rome": load_roots("rome")}, generation="milan")


def test_naples_ark_without_self_signature_is_the_pinned_anchor() -> None:
    """certs/naples/ark.cert.bad (the same ARK without its signature): the ARK's self-signature
    is 'not checked' and not required; everything else still decides."""
    raw = _raw("naples")
    raw["ark"] = (CERTS / "naples" / "ark.cert.bad").read_bytes()
    v = _verify_raw(raw, "naples")
    assert v.ok, v.describe()
    assert v.links[0].name == "ARK (self-signed)" and v.links[0].ok is None and not v.links[0].required
    assert "ARK (self-signed): not checked (no self-signature" in v.describe()
    raw["pdh"] = _flip(raw["pdh"])
    assert _failing(_verify_raw(raw, "naples")) == ["PEK -> PDH"]


def test_link_holds_only_when_verified_or_not_required() -> None:
    assert Link("A", "B", True).holds and not Link("A", "B", False).holds and not Link("A", "B", None).holds
    assert Link("A", "A", None, required=False).holds and not Link("A", "A", False, required=False).holds
    assert Link("A", "B", True).describe() == "A -> B: ok" and Link("A", "A", None, "x").describe() == \
        "A (self-signed): not checked (x)"


# -- what the chain must hold ------------------------------------------------------------------


def _rome() -> dict:
    return {n: parse_sev_cert(v, n) for n, v in _raw("rome").items() if n not in ("ark", "ask")}


def test_chain_without_cek_fails_at_ask_to_cek() -> None:
    """A PEK-only chain (no CEK in it, none given): not anchored, and it says what to give."""
    c = _rome()
    v = verify_chain(c["pdh"], [c["pek"], c["oca"]], load_all_roots())
    assert _failing(v) == ["ASK -> CEK", "CEK -> PEK"] and v.generation is None
    assert "no CEK: the platform's chain holds none" in v.describe() and "--sev-cek FILE" in v.describe()


def test_malformed_inputs_are_named() -> None:
    with pytest.raises(FormatError, match="pdh is not valid base64"):
        from_qmp("!!", "")
    with pytest.raises(FormatError, match="cert-chain: 10 bytes"):
        from_qmp(base64.b64encode((CERTS / "rome" / "pdh.cert").read_bytes()).decode(),
                 base64.b64encode(b"x" * 10).decode())
    c = _rome()
    with pytest.raises(ChainError, match="no PEK"):
        verify_chain(c["pdh"], [c["oca"]], {})
    with pytest.raises(ChainError, match="no OCA"):
        verify_chain(c["pdh"], [c["pek"]], {})
    with pytest.raises(ChainError, match="holds 2 PEK certificates"):
        verify_chain(c["pdh"], [c["pek"], c["pek"], c["oca"]], {})
    with pytest.raises(ChainError, match="holds 2 CEK certificates"):
        verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"], c["cek"]], {})
    with pytest.raises(ChainError, match="the PDH certificate has usage PEK"):
        verify_chain(c["pek"], [c["pek"], c["oca"]], {})
    with pytest.raises(ChainError, match="the supplied CEK file holds a PEK certificate"):
        verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], load_all_roots(), cek=c["pek"])


# -- forged chains: made here, refused against AMD's roots -------------------------------------


def _ca_cert(usage: int, key: rsa.RSAPrivateKey, signer: rsa.RSAPrivateKey, key_id: bytes, cert_id: bytes) -> bytes:
    """An AMD CA-format certificate (2048-bit RSA, PSS SHA-256), as AMD's tools lay it out."""
    nums, n = key.public_key().public_numbers(), 256
    body = (struct.pack("<I", 1) + key_id + cert_id + struct.pack("<I", usage) + bytes(16)
            + struct.pack("<II", 2048, 2048) + nums.e.to_bytes(n, "little") + nums.n.to_bytes(n, "little"))
    return body + bytes(reversed(signer.sign(body, pss(hashes.SHA256()), hashes.SHA256())))


def _ec_slot(signer: ec.EllipticCurvePrivateKey, usage: int, body: bytes) -> bytes:
    r, s = decode_dss_signature(signer.sign(body, ec.ECDSA(hashes.SHA256())))
    return sc.encode_sig_slot(usage, sc.ALGO_ECDSA_SHA256, sc.ecdsa_sig_to_slot_bytes(r, s))


def _rsa_slot(signer: rsa.RSAPrivateKey, body: bytes) -> bytes:
    sig = signer.sign(body, pss(hashes.SHA256()), hashes.SHA256())
    return sc.encode_sig_slot(sc.USAGE_ASK, sc.ALGO_RSA_SHA256, bytes(reversed(sig)))


def _sev_body(key: ec.EllipticCurvePrivateKey, usage: int, algo: int = sc.ALGO_ECDSA_SHA256) -> bytes:
    return sc.encode_body(usage, algo, sc.encode_ec_pubkey(key.public_key()), 1, 49)


class ForgedPlatform:
    """A whole chain made here: ARK -> ASK -> CEK -> PEK <- OCA, PEK -> PDH (not AMD's)."""

    def __init__(self) -> None:
        curve = ec.SECP384R1()
        self.ark_key = rsa.generate_private_key(65537, 2048)
        self.ask_key = rsa.generate_private_key(65537, 2048)
        ark_id, ask_id = os.urandom(16), os.urandom(16)
        self.ark = parse_ca_cert(_ca_cert(sc.USAGE_ARK, self.ark_key, self.ark_key, ark_id, ark_id))
        self.ask = parse_ca_cert(_ca_cert(sc.USAGE_ASK, self.ask_key, self.ark_key, ask_id, ark_id))
        oca_key, self.cek_key, pek_key, pdh_key = (ec.generate_private_key(curve) for _ in range(4))
        cek_body = _sev_body(self.cek_key, sc.USAGE_CEK)
        self.cek = sc.encode_cert(cek_body, _rsa_slot(self.ask_key, cek_body))
        oca_body = _sev_body(oca_key, sc.USAGE_OCA)
        self.oca = sc.encode_cert(oca_body, _ec_slot(oca_key, sc.USAGE_OCA, oca_body))
        pek_body = _sev_body(pek_key, sc.USAGE_PEK)
        self.pek = sc.encode_cert(pek_body, _ec_slot(oca_key, sc.USAGE_OCA, pek_body),
                                  _ec_slot(self.cek_key, sc.USAGE_CEK, pek_body))
        pdh_body = _sev_body(pdh_key, sc.USAGE_PDH, sc.ALGO_ECDH_SHA256)
        self.pdh = sc.encode_cert(pdh_body, _ec_slot(pek_key, sc.USAGE_PEK, pdh_body))

    @property
    def roots(self) -> dict:
        return {"test": (self.ark, self.ask)}

    def capabilities(self) -> dict[str, str]:
        return {"pdh": base64.b64encode(self.pdh).decode(),
                "cert-chain": base64.b64encode(self.pek + self.oca + self.cek).decode()}

    def parsed(self) -> tuple:
        return from_qmp(**{"pdh_b64": self.capabilities()["pdh"], "cert_chain_b64": self.capabilities()["cert-chain"]})


@functools.lru_cache(maxsize=1)
def forged() -> ForgedPlatform:
    return ForgedPlatform()


def foreign_cek(signed: bool = True) -> bytes:
    """A CEK whose key is made here, signed (or not) by an ASK made here."""
    body = _sev_body(ec.generate_private_key(ec.SECP384R1()), sc.USAGE_CEK)
    return sc.encode_cert(body, _rsa_slot(forged().ask_key, body) if signed else None)


def test_forged_chain_is_well_formed_under_its_own_roots() -> None:
    """The control: against the roots it was made under, the forged chain verifies, every link;
    so the refusals below are about trust, not about a malformed chain."""
    pdh, chain = forged().parsed()
    v = verify_chain(pdh, chain, forged().roots)
    assert v.ok and v.generation == "test" and [link.name for link in v.links] == ALL_LINKS, v.describe()


def test_whole_chain_under_a_test_ark_is_refused() -> None:
    """A complete, self-consistent chain under an ARK/ASK made here: AMD's roots do not sign its CEK."""
    pdh, chain = forged().parsed()
    v = verify_chain(pdh, chain, load_all_roots())
    assert not v.ok and _failing(v) == ["ASK -> CEK"], v.describe()
    assert f"no ASK of {', '.join(GENERATIONS)} signs this CEK" in v.describe()


def test_test_ark_cannot_pose_as_amds(tmp_path: Path) -> None:
    """Roots are pinned: a directory holding the test ARK/ASK under a generation's name is refused."""
    (tmp_path / "rome").mkdir()
    (tmp_path / "rome" / "ark.cert").write_bytes(forged().ark.raw)
    (tmp_path / "rome" / "ask.cert").write_bytes(forged().ask.raw)
    with pytest.raises(ChainError, match="is not AMD's published rome ARK"):
        load_roots("rome", tmp_path)
    with pytest.raises(ChainError, match="is not AMD's published rome ARK"):
        load_all_roots(tmp_path)
    (tmp_path / "rome" / "ark.cert").write_bytes((CERTS / "rome" / "ark.cert").read_bytes())
    with pytest.raises(ChainError, match="is not AMD's published rome ASK"):
        load_roots("rome", tmp_path)
    (tmp_path / "rome" / "ask.cert").unlink()
    with pytest.raises(ChainError, match="cannot read the rome ASK"):
        load_roots("rome", tmp_path)
    with pytest.raises(ChainError, match="unknown EPYC generation 'bergamo'"):
        load_roots("bergamo")


def test_cek_signed_by_a_test_key_is_refused() -> None:
    """A real Rome chain with a CEK file made and signed here: no AMD ASK signs it."""
    c = _rome()
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], load_all_roots(), cek=parse_sev_cert(foreign_cek()))
    assert _failing(v) == ["ASK -> CEK", "CEK -> PEK"], v.describe()
    assert v.failed is not None and v.failed.name == "ASK -> CEK"


def test_amd_signed_cek_of_another_chip_does_not_sign_this_pek() -> None:
    """A genuine AMD CEK (Naples') given for the Rome chain: anchored, but it did not sign this PEK."""
    c = _rome()
    naples_cek = parse_sev_cert(_raw("naples")["cek"])
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], load_all_roots(), cek=naples_cek)
    assert v.generation == "naples" and _failing(v) == ["CEK -> PEK"], v.describe()


def test_firmware_copy_of_the_cek_says_to_give_the_signed_one() -> None:
    """A chain whose CEK carries no ASK signature (the firmware's own copy): refused, naming --sev-cek."""
    pdh, chain = forged().parsed()
    unsigned = parse_sev_cert(foreign_cek(signed=False))
    v = verify_chain(pdh, chain, load_all_roots(), cek=unsigned)
    assert v.failed is not None and v.failed.name == "ASK -> CEK"
    assert v.failed.reason.startswith("the CEK carries no ASK signature (the firmware's own copy): give AMD's signed CEK")
    assert "--sev-cek FILE" in v.failed.reason


def test_verdict_text_and_fields_are_exact() -> None:
    """What a person reads: verified links say 'ok' with no reason, a missing CEK is FAILED on both
    of its links, and the verdict keeps the PDH it judged."""
    c = _rome()
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {"rome": load_roots("rome")})
    assert v.pdh is c["pdh"] and all(link.reason == "" for link in v.links)
    assert v.describe() == "certificate chain verified up to AMD's rome ARK: " + "; ".join(f"{n}: ok" for n in ALL_LINKS)
    none = verify_chain(c["pdh"], [c["pek"], c["oca"]], {})
    assert none.links[3].describe() == "CEK -> PEK: FAILED (no CEK to check the PEK with)"
    assert none.describe().endswith("; links: " + "; ".join(link.describe() for link in none.links))


def test_no_roots_at_all_names_any_generation() -> None:
    c = _rome()
    v = verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {})
    assert v.failed is not None and v.failed.reason.startswith("no ASK of any generation signs this CEK: give")


def test_from_qmp_names_the_field() -> None:
    good = base64.b64encode((CERTS / "rome" / "pdh.cert").read_bytes()).decode()
    with pytest.raises(FormatError, match=r"^pdh: 3 bytes, an SEV certificate has 2084$"):
        from_qmp(base64.b64encode(b"abc").decode(), good)
    with pytest.raises(FormatError, match=r"^cert-chain is not valid base64"):
        from_qmp(good, "!!")
    with pytest.raises(FormatError, match=r"^cert-chain: 3 bytes is not a multiple of 2084$"):
        from_qmp(good, base64.b64encode(b"abc").decode())
