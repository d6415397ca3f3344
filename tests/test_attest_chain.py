"""Chain verification failures name the link at fault.

Known-answer based: the real Naples and Rome chains (fixtures/sev-kat) with
one byte flipped in one certificate at a time; the expected failing link is
fixed by the chain's structure, not computed by the code under test.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from pytest_sev.attest.amdroots import load_roots
from pytest_sev.attest.cacert import parse_ca_cert
from pytest_sev.attest.chain import from_qmp, verify_chain
from pytest_sev.attest.errors import ChainError, FormatError
from pytest_sev.attest.sevcert import encode_body, parse_sev_cert

CERTS = Path(__file__).resolve().parents[1] / "fixtures" / "sev-kat" / "certs"
# flipping byte 4 changes a signed byte in both formats (api_major / key_id) and keeps them parseable
FLIP_AT = 4
#: certificate flipped -> the first link that must fail (top of the chain first)
EXPECTED_FAILURE = {"ark": "ARK (self-signed)", "ask": "ARK -> ASK", "cek": "ASK -> CEK",
                    "oca": "OCA (self-signed)", "pek": "OCA -> PEK", "pdh": "PEK -> PDH"}


def _flip(data: bytes, at: int = FLIP_AT) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _verify(gen: str, flipped: str | None = None, at: int = FLIP_AT):
    raw = {n: (CERTS / gen / f"{n}.cert").read_bytes() for n in ("ark", "ask", "pdh", "pek", "oca", "cek")}
    if flipped:
        raw[flipped] = _flip(raw[flipped], at)
    ark, ask = parse_ca_cert(raw["ark"]), parse_ca_cert(raw["ask"])
    c = {n: parse_sev_cert(raw[n], n) for n in ("pdh", "pek", "oca", "cek")}
    return verify_chain(c["pdh"], [c["pek"], c["oca"], c["cek"]], {gen: (ark, ask)}, cek=c["cek"], generation=gen)


@pytest.mark.parametrize("gen", ["naples", "rome"])
@pytest.mark.parametrize("cert", sorted(EXPECTED_FAILURE))
def test_one_flipped_byte_names_the_link(gen: str, cert: str) -> None:
    """One flipped byte in each certificate fails the chain at the named link."""
    v = _verify(gen, cert)
    assert not v.ok
    assert v.failed is not None and v.failed.name == EXPECTED_FAILURE[cert], v.describe()
    assert f"INVALID at {EXPECTED_FAILURE[cert]}" in v.describe()


@pytest.mark.parametrize("gen", ["naples", "rome"])
@pytest.mark.parametrize("cert", ["pdh", "pek", "oca", "cek"])
def test_flipped_signature_byte_names_the_link(gen: str, cert: str) -> None:
    """A flipped byte inside the first signature (offset 0x41C+8) fails the link it carries."""
    v = _verify(gen, cert, at=0x41C + 8)
    by_subject = {"pdh": "PEK -> PDH", "pek": "OCA -> PEK", "oca": "OCA (self-signed)", "cek": "ASK -> CEK"}
    assert v.failed is not None and v.failed.name == by_subject[cert], v.describe()


def test_body_encoder_reproduces_real_certificates() -> None:
    """Known-answer for the encoder used by the owner's DH certificate: re-encoding the
    parsed fields of a real PDH gives AMD's bytes."""
    for gen in ("naples", "rome"):
        raw = (CERTS / gen / "pdh.cert").read_bytes()
        c = parse_sev_cert(raw)
        assert encode_body(c.usage, c.algo, c.pubkey, c.api_major, c.api_minor) == raw[:0x414]


def test_from_qmp_reads_base64_pdh_and_chain() -> None:
    """QMP's base64 ``pdh`` and ``cert-chain`` (PEK, OCA, CEK) parse into the chain."""
    d = CERTS / "rome"
    pdh, chain = from_qmp(base64.b64encode((d / "pdh.cert").read_bytes()).decode(),
                          base64.b64encode(b"".join((d / f"{n}.cert").read_bytes() for n in ("pek", "oca", "cek"))).decode())
    assert pdh.name == "PDH" and [c.name for c in chain] == ["PEK", "OCA", "CEK"]
    v = verify_chain(pdh, chain, {"rome": load_roots("rome", CERTS)})
    assert v.ok and v.anchored_to == "PEK"


def test_malformed_inputs_are_named() -> None:
    with pytest.raises(FormatError, match="pdh is not valid base64"):
        from_qmp("!!", "")
    with pytest.raises(FormatError, match="cert-chain: 10 bytes"):
        from_qmp(base64.b64encode((CERTS / "rome" / "pdh.cert").read_bytes()).decode(),
                 base64.b64encode(b"x" * 10).decode())
    d = CERTS / "rome"
    pdh = parse_sev_cert((d / "pdh.cert").read_bytes())
    with pytest.raises(ChainError, match="no PEK"):
        verify_chain(pdh, [parse_sev_cert((d / "oca.cert").read_bytes())], {})
