"""AMD's SEV certificate format (SEV API spec, appendix C.1): PDH, PEK, OCA, CEK.

Why: QMP ``query-sev-capabilities`` hands the platform's PDH and its
certificate chain over as base64 of these 2084-byte records, and QEMU's
``dh-cert-file`` wants the owner's Diffie-Hellman key in the same record.
This module only converts between bytes and a typed view; it verifies
nothing (see :mod:`.sigverify` and :mod:`.chain`).

Layout (all integers little-endian)::

    0x000 u32 version (1)       0x004 u8 api_major   0x005 u8 api_minor
    0x006 u16 reserved          0x008 u32 pubkey_usage   0x00C u32 pubkey_algo
    0x010 pubkey[0x404]         -- the signed body ends at 0x414
    0x414 u32 sig1_usage  0x418 u32 sig1_algo  0x41C sig1[0x200]
    0x61C u32 sig2_usage  0x620 u32 sig2_algo  0x624 sig2[0x200]   (0x824 total)

An ECC public key is ``u32 curve, qx[72], qy[72]`` (little-endian, zero
padded); an ECDSA signature is ``r[72], s[72]``; an RSA key is
``u32 modulus_bits, pubexp[512], modulus[512]`` and an RSA signature 512
bytes, all little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import FormatError

CERT_SIZE = 0x824
BODY_SIZE = 0x414
PUBKEY_SIZE = 0x404
SIG_SIZE = 0x200
ECC_COORD = 72

# Key usages.
USAGE_ARK = 0x0000
USAGE_ASK = 0x0013
USAGE_INVALID = 0x1000
USAGE_OCA = 0x1001
USAGE_PEK = 0x1002
USAGE_PDH = 0x1003
USAGE_CEK = 0x1004
USAGE_NAMES = {USAGE_ARK: "ARK", USAGE_ASK: "ASK", USAGE_OCA: "OCA", USAGE_PEK: "PEK",
               USAGE_PDH: "PDH", USAGE_CEK: "CEK", USAGE_INVALID: "INVALID"}

# Algorithms.
ALGO_NONE = 0x0000
ALGO_RSA_SHA256 = 0x0001
ALGO_ECDSA_SHA256 = 0x0002
ALGO_ECDH_SHA256 = 0x0003
ALGO_RSA_SHA384 = 0x0101
ALGO_ECDSA_SHA384 = 0x0102
ALGO_ECDH_SHA384 = 0x0103
RSA_ALGOS = (ALGO_RSA_SHA256, ALGO_RSA_SHA384)
ECDSA_ALGOS = (ALGO_ECDSA_SHA256, ALGO_ECDSA_SHA384)
ECDH_ALGOS = (ALGO_ECDH_SHA256, ALGO_ECDH_SHA384)
SIG_ALGOS = RSA_ALGOS + ECDSA_ALGOS

# ECC curves.
CURVE_P256 = 1
CURVE_P384 = 2
_CURVES: dict[int, ec.EllipticCurve] = {CURVE_P256: ec.SECP256R1(), CURVE_P384: ec.SECP384R1()}


def usage_name(usage: int) -> str:
    """``0x1002`` -> ``"PEK"``; unknown values as hex so they stay visible."""
    return USAGE_NAMES.get(usage, f"usage {usage:#x}")


@dataclass(frozen=True)
class SevSignature:
    """One of a certificate's two signature slots."""

    usage: int
    algo: int
    raw: bytes  # 0x200 bytes as stored

    @property
    def empty(self) -> bool:
        """A slot is empty unless it names a signing usage and a signature algorithm."""
        return self.usage not in (USAGE_ARK, USAGE_ASK, USAGE_OCA, USAGE_PEK, USAGE_CEK) \
            or self.algo not in SIG_ALGOS


@dataclass(frozen=True)
class SevCert:
    """A parsed SEV certificate; ``raw`` is the exact 0x824 bytes."""

    version: int
    api_major: int
    api_minor: int
    usage: int
    algo: int
    pubkey: bytes  # 0x404 bytes
    sigs: tuple[SevSignature, SevSignature]
    raw: bytes

    @property
    def body(self) -> bytes:
        """The signed part: version through public key."""
        return self.raw[:BODY_SIZE]

    @property
    def name(self) -> str:
        return usage_name(self.usage)

    def signatures(self) -> list[SevSignature]:
        """The non-empty signature slots."""
        return [s for s in self.sigs if not s.empty]


def parse_sev_cert(data: bytes, what: str = "SEV certificate") -> SevCert:
    """Parse one SEV certificate; :class:`FormatError` names ``what`` on bad input."""
    if len(data) != CERT_SIZE:
        raise FormatError(f"{what}: {len(data)} bytes, an SEV certificate has {CERT_SIZE}")
    version, major, minor, _res, usage, algo = struct.unpack_from("<IBBHII", data, 0)
    if version != 1:
        raise FormatError(f"{what}: version {version}, only version 1 is defined")
    sigs = []
    for off in (BODY_SIZE, BODY_SIZE + 8 + SIG_SIZE):
        su, sa = struct.unpack_from("<II", data, off)
        sigs.append(SevSignature(su, sa, bytes(data[off + 8: off + 8 + SIG_SIZE])))
    return SevCert(version, major, minor, usage, algo, bytes(data[0x10: 0x10 + PUBKEY_SIZE]),
                   (sigs[0], sigs[1]), bytes(data))


def split_certs(blob: bytes, what: str = "certificate chain") -> list[SevCert]:
    """Split concatenated SEV certificates (QMP ``cert-chain``: PEK, OCA, CEK)."""
    if not blob or len(blob) % CERT_SIZE:
        raise FormatError(f"{what}: {len(blob)} bytes is not a multiple of {CERT_SIZE}")
    return [parse_sev_cert(blob[i: i + CERT_SIZE], f"{what}[{i // CERT_SIZE}]")
            for i in range(0, len(blob), CERT_SIZE)]


# --------------------------------------------------------------------------
# public keys


def _le_int(b: bytes) -> int:
    return int.from_bytes(b, "little")


def public_key(cert: SevCert) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The certificate's public key as a ``cryptography`` object."""
    if cert.algo in RSA_ALGOS:
        bits = struct.unpack_from("<I", cert.pubkey, 0)[0]
        if bits not in (2048, 4096):
            raise FormatError(f"{cert.name}: RSA modulus size {bits} bits is not 2048 or 4096")
        n = bits // 8
        e = _le_int(cert.pubkey[4: 4 + n])
        mod = _le_int(cert.pubkey[4 + 512: 4 + 512 + n])
        try:
            return rsa.RSAPublicNumbers(e, mod).public_key()
        except ValueError as exc:
            raise FormatError(f"{cert.name}: invalid RSA public key: {exc}") from exc
    if cert.algo in ECDSA_ALGOS + ECDH_ALGOS:
        curve_id = struct.unpack_from("<I", cert.pubkey, 0)[0]
        curve = _CURVES.get(curve_id)
        if curve is None:
            raise FormatError(f"{cert.name}: unknown ECC curve id {curve_id}")
        size = (curve.key_size + 7) // 8
        x = _le_int(cert.pubkey[4: 4 + size])
        y = _le_int(cert.pubkey[4 + ECC_COORD: 4 + ECC_COORD + size])
        try:
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        except ValueError as exc:
            raise FormatError(f"{cert.name}: public key is not a point on the curve: {exc}") from exc
    raise FormatError(f"{cert.name}: unknown public key algorithm {cert.algo:#x}")


def encode_ec_pubkey(key: ec.EllipticCurvePublicKey) -> bytes:
    """A P-256/P-384 public key in the certificate's 0x404-byte key field."""
    curve_id = {"secp256r1": CURVE_P256, "secp384r1": CURVE_P384}.get(key.curve.name)
    if curve_id is None:
        raise FormatError(f"curve {key.curve.name} cannot be put in an SEV certificate")
    nums = key.public_numbers()
    out = (struct.pack("<I", curve_id) + nums.x.to_bytes(ECC_COORD, "little")
           + nums.y.to_bytes(ECC_COORD, "little"))
    return out + bytes(PUBKEY_SIZE - len(out))


def encode_body(usage: int, algo: int, pubkey: bytes, api_major: int = 0, api_minor: int = 0) -> bytes:
    """The signed body (0x414 bytes) of a version-1 certificate."""
    if len(pubkey) != PUBKEY_SIZE:
        raise FormatError(f"public key field is {len(pubkey)} bytes, expected {PUBKEY_SIZE}")
    return struct.pack("<IBBHII", 1, api_major, api_minor, 0, usage, algo) + pubkey


def encode_sig_slot(usage: int = USAGE_INVALID, algo: int = ALGO_NONE, sig: bytes = b"") -> bytes:
    """One signature slot; the default is the empty slot (usage INVALID, algorithm none)."""
    if len(sig) > SIG_SIZE:
        raise FormatError(f"signature of {len(sig)} bytes does not fit {SIG_SIZE}")
    return struct.pack("<II", usage, algo) + sig + bytes(SIG_SIZE - len(sig))


def encode_cert(body: bytes, sig1: bytes | None = None, sig2: bytes | None = None) -> bytes:
    """A whole certificate from its body and (encoded) signature slots."""
    if len(body) != BODY_SIZE:
        raise FormatError(f"body is {len(body)} bytes, expected {BODY_SIZE}")
    return body + (sig1 or encode_sig_slot()) + (sig2 or encode_sig_slot())


def ecdsa_sig_to_slot_bytes(r: int, s: int) -> bytes:
    """``r``, ``s`` as the format stores them (72 bytes each, little-endian)."""
    return r.to_bytes(ECC_COORD, "little") + s.to_bytes(ECC_COORD, "little")


def ecdsa_sig_from_slot_bytes(raw: bytes) -> tuple[int, int]:
    return _le_int(raw[:ECC_COORD]), _le_int(raw[ECC_COORD: 2 * ECC_COORD])
