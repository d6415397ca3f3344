"""AMD's CA certificate format (SEV API spec, appendix B): the ARK and ASK.

Why: the CEK is signed by AMD's ASK, which AMD's ARK signs; both are
published by AMD per EPYC generation in this RSA format, not X.509.

Layout (little-endian)::

    0x00 u32 version (1)    0x04 key_id[16]    0x14 certifying_id[16]
    0x24 u32 key_usage (ARK 0x0, ASK 0x13)     0x28 reserved[16]
    0x38 u32 pubexp_bits    0x3C u32 modulus_bits
    0x40 pubexp[pubexp_bits/8]  modulus[modulus_bits/8]   -- signed body ends here
         signature[modulus_bits/8] (RSA-PSS; SHA-256 for 2048-bit keys, SHA-384 for 4096)

The Naples ARK AMD distributed for years ends after the modulus: it carries
no self-signature (AMDESE/AMDSEV issue 17). It is parsed with
``signature=None``; an ARK is a pinned trust anchor, so a missing
self-signature loses nothing once its bytes match the pinned ARK.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import FormatError
from .sevcert import USAGE_ARK, USAGE_ASK, usage_name

PREAMBLE_SIZE = 0x40


@dataclass(frozen=True)
class CaCert:
    """A parsed AMD CA certificate; ``signature`` is big-endian, or ``None`` when absent."""

    key_id: bytes
    certifying_id: bytes
    usage: int
    modulus_bits: int
    body: bytes
    signature: bytes | None
    raw: bytes

    @property
    def name(self) -> str:
        return usage_name(self.usage)

    @property
    def self_signed(self) -> bool:
        return self.key_id == self.certifying_id

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        """The digest this key signs with: SHA-256 (2048-bit) or SHA-384 (4096-bit)."""
        return hashes.SHA256() if self.modulus_bits == 2048 else hashes.SHA384()

    def public_key(self) -> rsa.RSAPublicKey:
        n = self.modulus_bits // 8
        e = int.from_bytes(self.body[PREAMBLE_SIZE: PREAMBLE_SIZE + n], "little")
        mod = int.from_bytes(self.body[PREAMBLE_SIZE + n: PREAMBLE_SIZE + 2 * n], "little")
        try:
            return rsa.RSAPublicNumbers(e, mod).public_key()
        except ValueError as exc:
            raise FormatError(f"{self.name}: invalid RSA public key: {exc}") from exc


def parse_ca_cert(data: bytes, what: str = "AMD CA certificate") -> CaCert:
    """Parse an ARK or ASK; :class:`FormatError` names ``what`` on bad input."""
    if len(data) < PREAMBLE_SIZE:
        raise FormatError(f"{what}: {len(data)} bytes is shorter than the {PREAMBLE_SIZE}-byte preamble")
    version = struct.unpack_from("<I", data, 0)[0]
    if version != 1:
        raise FormatError(f"{what}: version {version}, only version 1 is defined")
    key_id, cert_id = bytes(data[4:20]), bytes(data[20:36])
    usage = struct.unpack_from("<I", data, 0x24)[0]
    pbits, mbits = struct.unpack_from("<II", data, 0x38)
    if usage not in (USAGE_ARK, USAGE_ASK):
        raise FormatError(f"{what}: key usage {usage:#x} is neither ARK (0x0) nor ASK (0x13)")
    if pbits != mbits or mbits not in (2048, 4096):
        raise FormatError(f"{what}: key sizes {pbits}/{mbits} bits; expected equal 2048 or 4096")
    n = mbits // 8
    body_end = PREAMBLE_SIZE + 2 * n
    if len(data) == body_end:
        sig = None
    elif len(data) == body_end + n:
        sig = bytes(reversed(data[body_end:]))
    else:
        raise FormatError(f"{what}: {len(data)} bytes; a {mbits}-bit certificate has "
                          f"{body_end + n} (or {body_end} without signature)")
    return CaCert(key_id, cert_id, usage, mbits, bytes(data[:body_end]), sig, bytes(data))
