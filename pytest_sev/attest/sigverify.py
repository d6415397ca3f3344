"""Signature checks for AMD's two certificate formats, one function per signer kind.

Why here and not in the parsers: the rules about *which* signature counts
(usage of the slot equals the signer's usage, algorithm equals the signer's
key algorithm, RSA uses PSS with a digest-length salt, ECDSA ``r``/``s`` are
little-endian) are the security-relevant part and are kept in one place.
Every function returns ``None`` on success or a one-line reason.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .cacert import CaCert
from .errors import FormatError
from .sevcert import (
    ALGO_ECDSA_SHA384,
    ALGO_RSA_SHA256,
    ALGO_RSA_SHA384,
    ECDSA_ALGOS,
    RSA_ALGOS,
    SevCert,
    ecdsa_sig_from_slot_bytes,
    public_key,
)


def _hash_for(algo: int) -> hashes.HashAlgorithm:
    return hashes.SHA384() if algo in (ALGO_RSA_SHA384, ALGO_ECDSA_SHA384) else hashes.SHA256()


def pss(h: hashes.HashAlgorithm) -> padding.PSS:
    """RSA-PSS as AMD signs: MGF1 with the same digest, salt as long as the digest."""
    return padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)


def verify_raw(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, algo: int, sig_raw: bytes,
               data: bytes) -> str | None:
    """Check one signature (as stored in a certificate slot or report) over ``data``."""
    h = _hash_for(algo)
    try:
        if algo in ECDSA_ALGOS:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return "ECDSA signature but the signer's key is not an ECC key"
            r, s = ecdsa_sig_from_slot_bytes(sig_raw)
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(h))
        elif algo in RSA_ALGOS:
            if not isinstance(key, rsa.RSAPublicKey):
                return "RSA signature but the signer's key is not an RSA key"
            n = key.key_size // 8
            key.verify(bytes(reversed(sig_raw[:n])), data, pss(h), h)
        else:
            return f"unsupported signature algorithm {algo:#x}"
    except InvalidSignature:
        return "signature does not verify"
    except ValueError as exc:  # e.g. r or s out of range
        return f"signature is malformed: {exc}"
    return None


def verify_sev_by_sev(signer: SevCert, subject: SevCert) -> str | None:
    """Does ``signer`` (an SEV certificate) sign ``subject`` in one of its slots?"""
    try:
        key = public_key(signer)
    except FormatError as exc:
        return str(exc)
    slots = [s for s in subject.signatures() if s.usage == signer.usage]
    if not slots:
        return f"{subject.name} carries no signature by a {signer.name}"
    reasons = []
    for slot in slots:
        if slot.algo != signer.algo:
            reasons.append(f"slot algorithm {slot.algo:#x} differs from the {signer.name} key's {signer.algo:#x}")
            continue
        why = verify_raw(key, slot.algo, slot.raw, subject.body)
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(reasons)


def verify_sev_by_ca(signer: CaCert, subject: SevCert) -> str | None:
    """Does the ASK ``signer`` sign the SEV certificate ``subject`` (the CEK)?"""
    want = ALGO_RSA_SHA256 if signer.modulus_bits == 2048 else ALGO_RSA_SHA384
    slots = [s for s in subject.signatures() if s.usage == signer.usage]
    if not slots:
        return f"{subject.name} carries no signature by the {signer.name}"
    reasons = []
    for slot in slots:
        if slot.algo != want:
            reasons.append(f"slot algorithm {slot.algo:#x}, the {signer.modulus_bits}-bit "
                           f"{signer.name} signs with {want:#x}")
            continue
        why = verify_raw(signer.public_key(), slot.algo, slot.raw, subject.body)
        if why is None:
            return None
        reasons.append(why)
    return "; ".join(reasons)


def verify_ca_by_ca(signer: CaCert, subject: CaCert) -> str | None:
    """Does ``signer`` (ARK) sign ``subject`` (ASK, or itself)?"""
    if subject.certifying_id != signer.key_id:
        return (f"{subject.name} names certifying key {subject.certifying_id.hex()}, "
                f"the {signer.name} is {signer.key_id.hex()}")
    if subject.signature is None:
        return f"{subject.name} carries no signature"
    h = signer.hash_algorithm()
    try:
        signer.public_key().verify(subject.signature, subject.body, pss(h), h)
    except InvalidSignature:
        return "signature does not verify"
    except FormatError as exc:
        return str(exc)
    return None


__all__ = ["verify_raw", "verify_sev_by_sev", "verify_sev_by_ca", "verify_ca_by_ca", "pss"]
