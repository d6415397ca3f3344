"""AMD's SEV-SNP ASK/ARK per product (X.509), shipped in the package and pinned; VCEK and chain files read.

Why pinned: the ARK is the one trust anchor of an SNP report. A VCEK is only
worth believing when it traces to AMD's ARK, so the ARK must not come from
the host, the guest or a file a person was handed: the package carries AMD's
``cert_chain`` of each product (``amdcerts/snp/ask_ark_<product>.pem``, ASK
then ARK, as AMD's key server serves ``/vcek/v1/<Product>/cert_chain``,
copied unchanged from ``shared/data/snp-kat/reports/``: the Milan and Genoa
files equal google/go-sev-guest ``verify/trust/ask_ark_{milan,genoa}.pem``,
the Milan and Turin files virtee/sev's ``tests/certs_data/cert_chain_*``),
and each load checks the file's SHA-256 against the value recorded here. A
chain given as a file (``--chain``) is used only if its ARK is one of these
pinned ARKs (:func:`pinned_arks`, decided in :mod:`.snp_verify`).

A report signed by a VLEK (a key AMD issues to a cloud provider, not per
chip) traces to the same ARK through AMD's ASVK instead of the ASK: the
package carries each product's ASVK chain too (``amdcerts/snp/asvk_ark_<product>.pem``,
ASVK then ARK, as AMD's key server serves ``/vlek/v1/<Product>/cert_chain``,
read unchanged from google/go-sev-guest ``verify/trust/ask_ark_<product>_vlek.pem``
at commit af1c107a648f47253da23a9de7a7c82ec073cfdb), pinned the same way
(:data:`PINNED_VLEK_SHA256`, :func:`load_vlek_chain`). Checked when pinned:
each file's ARK is byte-identical to the ARK of ``ask_ark_<product>.pem``,
and that ARK signs the ASVK (``CN=SEV-VLEK-<Product>``, RSA-PSS as the ASK).
A chain's intermediate is named by its certificate (:func:`intermediate_name`):
the verifier checks a VCEK only through an ASK and a VLEK only through an ASVK.

This is the one module of the SNP verifier that reads files.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import ChainError, FormatError
from .snp_report import PRODUCTS

#: The copies shipped with the package.
SNP_CERTS_DIR = Path(__file__).resolve().parent / "amdcerts" / "snp"

#: SHA-256 of ``ask_ark_<product>.pem`` as published by AMD's key server
PINNED_SHA256: dict[str, str] = {
    "milan": "22e62f8d2c21a156470145fc75f7b5a377cb053ced3e97f0bd3f8d8ca5941ce6",
    "genoa": "e6ecc853fa56d3170a624d40851f98a1036f974b50204ea69e6aec91d777aca3",
    "turin": "cc9a52fbed3fbc6e4a0a50149a541a75938f975658909c2a6084767829b36e85",
}

#: SHA-256 of ``asvk_ark_<product>.pem``: AMD's key server ``/vlek/v1/<Product>/cert_chain`` (ASVK, ARK)
PINNED_VLEK_SHA256: dict[str, str] = {
    "milan": "3098f7e90ee7049b8cf116448d1bdf33b08847b4250bd99507cf73b5c49d3467",
    "genoa": "95f8b0deab936fe5d44a7cd6ed32590ad360581da2858a27dc2e59ac6eacb2e8",
    "turin": "5928f39615a10790e4c3d985fbe5b025524eab50c0801c2b69d2031e476cdfe5",
}

#: the intermediate of a chain: AMD's ASK signs VCEKs, its ASVK signs VLEKs
ASK = "ASK"
ASVK = "ASVK"
#: AMD names its ASVKs ``SEV-VLEK-<Product>`` (its ASKs ``SEV-<Product>``)
_ASVK_CN_PREFIX = "SEV-VLEK-"


@dataclass(frozen=True)
class SnpChain:
    """An ASK (or ASVK) and the ARK above it; ``source`` says where they came from (for messages).

    ``intermediate`` names what ``ask`` holds: ``ASK`` (signs VCEKs) or ``ASVK`` (signs VLEKs)."""

    ask: x509.Certificate
    ark: x509.Certificate
    source: str
    intermediate: str = ASK


def intermediate_name(cert: x509.Certificate) -> str:
    """``ASVK`` when ``cert``'s common name is AMD's ASVK's (``SEV-VLEK-<Product>``), else ``ASK``.

    The name is part of what the ARK signed, so with a pinned ARK it is AMD's word."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    vlek = any(str(attr.value).startswith(_ASVK_CN_PREFIX) for attr in names)
    return ASVK if vlek else ASK


def _load_der_or_pem(data: bytes, what: str) -> list[x509.Certificate]:
    """Certificates in ``data`` (PEM, one or more; or one DER).

    AMD's VCEKs as served by the key server may carry a serial number that
    is not positive (the go-sev-guest test VCEK does); ``cryptography``
    warns about it and still loads it. The warning says nothing about the
    key, so it is silenced here and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*serial number.*")
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                return x509.load_pem_x509_certificates(data)
            return [x509.load_der_x509_certificate(data)]
        except ValueError as exc:
            raise FormatError(f"{what} is not an X.509 certificate (PEM or DER): {exc}") from exc


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def split_chain(data: bytes, source: str) -> SnpChain:
    """ASK (or ASVK) and ARK from a ``cert_chain`` body: two certificates, the ARK being the self-issued one."""
    certs = _load_der_or_pem(data, source)
    if len(certs) != 2:
        raise ChainError(f"{source} holds {len(certs)} certificates, expected two (ASK and ARK)")
    roots = [c for c in certs if c.subject == c.issuer]
    if len(roots) != 1:
        raise ChainError(f"{source}: expected one self-issued ARK and one ASK, found {len(roots)} self-issued")
    ark = roots[0]
    ask = next(c for c in certs if c is not ark)
    return SnpChain(ask, ark, source, intermediate_name(ask))


def _load_pinned(product: str, certs_dir: Path | str, prefix: str, what: str, pins: dict[str, str]) -> SnpChain:
    """``<prefix>_<product>.pem`` from *certs_dir*, refused unless byte-identical to the pinned file."""
    if product not in PRODUCTS:
        raise ChainError(f"unknown SNP product {product!r}: expected one of {', '.join(PRODUCTS)}")
    path = Path(certs_dir) / f"{prefix}_{product}.pem"
    data = _read(path, f"{product} {what}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != pins[product]:
        raise ChainError(f"{path} is not AMD's published {product} {what} (sha256 {digest}, pinned {pins[product]})")
    return split_chain(data, f"AMD's {product} {what}")


def load_product_chain(product: str, certs_dir: Path | str = SNP_CERTS_DIR) -> SnpChain:
    """AMD's ASK and ARK of ``product`` from the package, byte-identical to the pinned file."""
    return _load_pinned(product, certs_dir, "ask_ark", "ASK/ARK", PINNED_SHA256)


def load_vlek_chain(product: str, certs_dir: Path | str = SNP_CERTS_DIR) -> SnpChain:
    """AMD's ASVK and ARK of ``product`` from the package, byte-identical to the pinned file (its
    ``intermediate`` is ASVK: the pinned ASVKs are named ``SEV-VLEK-<Product>``, :func:`intermediate_name`)."""
    return _load_pinned(product, certs_dir, "asvk_ark", "ASVK/ARK", PINNED_VLEK_SHA256)


def pinned_chains(signing_key: str, products: list[str] | None = None,
                  certs_dir: Path | str = SNP_CERTS_DIR) -> dict[str, SnpChain]:
    """Product -> AMD's chain for a report signed by ``signing_key``: the ASVK/ARK for ``VLEK``, else the ASK/ARK."""
    load = load_vlek_chain if signing_key == "VLEK" else load_product_chain
    return {product: load(product, certs_dir) for product in (products or list(PRODUCTS))}


def pinned_arks(certs_dir: Path | str = SNP_CERTS_DIR) -> dict[str, x509.Certificate]:
    """Product -> AMD's ARK: the only anchors an SNP chain is verified to."""
    return {product: load_product_chain(product, certs_dir).ark for product in PRODUCTS}


def read_chain_file(path: Path | str) -> SnpChain:
    """A ``cert_chain`` file (ASK or ASVK, and ARK, PEM); whether its ARK is AMD's is checked when verifying."""
    return split_chain(_read(path, "chain file"), f"chain file {path}")


def read_vcek(path: Path | str) -> x509.Certificate:
    """One VCEK (or VLEK) certificate, DER as AMD's key server serves it, or PEM."""
    certs = _load_der_or_pem(_read(path, "VCEK file"), f"VCEK file {path}")
    if len(certs) != 1:
        raise FormatError(f"VCEK file {path} holds {len(certs)} certificates, expected one")
    return certs[0]


__all__ = ["SNP_CERTS_DIR", "PINNED_SHA256", "PINNED_VLEK_SHA256", "ASK", "ASVK", "SnpChain", "intermediate_name",
           "load_product_chain", "load_vlek_chain", "pinned_chains", "pinned_arks", "read_chain_file", "read_vcek",
           "split_chain"]
