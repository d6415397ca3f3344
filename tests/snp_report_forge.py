"""Test-made SNP signers: an "ARK", "ASK" (RSA-PSS) and "VCEK" (P-384) made here, and reports they sign.

Why: the negative cases (a forged signature, a wrong nonce, the debug bit,
a rolled-back TCB, a wrong VMPL, each report version) need reports no AMD
chip signed. Each is built field by field at the offsets of the SNP ABI
(written out here, not taken from the parser under test), signed with a key
made here, and verified against these roots passed as the trusted anchors;
against AMD's pinned anchors the same chain must be refused.
"""

from __future__ import annotations

import datetime
import functools
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from pytest_sev.attest.snp_roots import SnpChain

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
CHIP_ID = bytes(range(1, 65))
KDS = "1.3.6.1.4.1.3704.1"
#: a Milan-layout TCB: bootloader 3, tee 0, snp 8, microcode 115 (byte 0, 1, 6, 7)
MILAN_TCB = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}


def tcb_legacy(bootloader: int, tee: int, snp: int, microcode: int) -> int:
    """Milan/Genoa TCB_VERSION: bytes 0 bootloader, 1 TEE, 6 SNP, 7 microcode."""
    return int.from_bytes(bytes([bootloader, tee, 0, 0, 0, 0, snp, microcode]), "little")


def tcb_turin(fmc: int, bootloader: int, tee: int, snp: int, microcode: int) -> int:
    """Turin TCB_VERSION: bytes 0 FMC, 1 bootloader, 2 TEE, 3 SNP, 7 microcode."""
    return int.from_bytes(bytes([fmc, bootloader, tee, snp, 0, 0, 0, microcode]), "little")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test")])


def _der_int(v: int) -> bytes:
    return bytes([2, 1, v]) if v < 128 else bytes([2, 2, 0, v])


def _ext(oid: str, value: bytes) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)


def _cert(subject: str, issuer: str, public_key: object, signer: rsa.RSAPrivateKey,
          extensions: tuple[x509.UnrecognizedExtension, ...] = ()) -> x509.Certificate:
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(public_key).serial_number(x509.random_serial_number())  # type: ignore[arg-type]
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650)))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(signer, hashes.SHA384(), rsa_padding=PSS)


@dataclass(frozen=True)
class Forge:
    """A test ARK/ASK/VCEK; :meth:`sign` puts the VCEK's signature (or another key's) on a report."""

    ark: x509.Certificate
    ask: x509.Certificate
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey

    def chain(self) -> SnpChain:
        return SnpChain(self.ask, self.ark, "the test chain")

    def anchors(self) -> dict[str, x509.Certificate]:
        return {"test": self.ark}

    def chain_pem(self) -> bytes:
        return self.ask.public_bytes(Encoding.PEM) + self.ark.public_bytes(Encoding.PEM)

    def sign(self, raw: bytes, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """``raw`` with R and S (little-endian, 72 bytes each) at 0x2A0/0x2E8 over bytes 0..0x2A0."""
        r, s = decode_dss_signature((key or self.vcek_key).sign(raw[:0x2A0], ec.ECDSA(hashes.SHA384())))
        return raw[:0x2A0] + r.to_bytes(72, "little") + s.to_bytes(72, "little") + bytes(0x4A0 - 0x2A0 - 144)


@functools.cache
def make_forge(bootloader: int = 3, tee: int = 0, snp: int = 8, microcode: int = 115, fmc: int | None = None,
               product_name: str = "Milan-B0", hwid: bytes | None = CHIP_ID, hwid_octet_string: bool = False) -> Forge:
    """An ARK (self-signed), an ASK it signs and a VCEK with KDS extensions the ASK signs."""
    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark = _cert("ARK-Test", "ARK-Test", ark_key.public_key(), ark_key)
    ask = _cert("SEV-Test", "ARK-Test", ask_key.public_key(), ark_key)
    exts = [_ext(f"{KDS}.1", _der_int(0)),
            _ext(f"{KDS}.2", bytes([0x16, len(product_name)]) + product_name.encode()),
            _ext(f"{KDS}.3.1", _der_int(bootloader)), _ext(f"{KDS}.3.2", _der_int(tee)),
            _ext(f"{KDS}.3.3", _der_int(snp)), _ext(f"{KDS}.3.8", _der_int(microcode))]
    if fmc is not None:
        exts.append(_ext(f"{KDS}.3.9", _der_int(fmc)))
    if hwid is not None:
        exts.append(_ext(f"{KDS}.4", bytes([4, len(hwid)]) + hwid if hwid_octet_string else hwid))
    vcek = _cert("SEV-VCEK", "SEV-Test", vcek_key.public_key(), ask_key, tuple(exts))
    return Forge(ark, ask, vcek, vcek_key)


def make_report(*, version: int = 2, policy: int = 0x30000, vmpl: int = 0, report_data: bytes = bytes(64),
                measurement: bytes = bytes(range(48)), reported_tcb: int = tcb_legacy(3, 0, 8, 115),
                chip_id: bytes = CHIP_ID, cpuid: tuple[int, int, int] | None = None,
                mit_vectors: tuple[int, int] | None = None, signer_info: int = 0, sig_algo: int = 1) -> bytes:
    """An unsigned report, every field written at its SNP ABI offset (bytes 0x2A0.. left zero)."""
    raw = bytearray(0x4A0)
    struct.pack_into("<IIQ", raw, 0x00, version, 1, policy)
    struct.pack_into("<II", raw, 0x30, vmpl, sig_algo)
    struct.pack_into("<QQI", raw, 0x38, reported_tcb, 0, signer_info)
    raw[0x50:0x90] = report_data
    raw[0x90:0xC0] = measurement
    struct.pack_into("<Q", raw, 0x180, reported_tcb)
    if cpuid is not None:
        raw[0x188:0x18B] = bytes(cpuid)
    raw[0x1A0:0x1E0] = chip_id
    struct.pack_into("<Q", raw, 0x1E0, reported_tcb)
    struct.pack_into("<Q", raw, 0x1F0, reported_tcb)
    if mit_vectors is not None:
        struct.pack_into("<QQ", raw, 0x1F8, *mit_vectors)
    return bytes(raw)


# -- a VLEK chain: ARK -> ASVK -> VLEK (and an ASK beside it, as AMD's ARK signs both) --------------------------

@dataclass(frozen=True)
class VlekForge:
    """A test ARK signing an ASK and an ASVK (``CN=SEV-VLEK-Test``); the ASK signs a VCEK, the ASVK a VLEK.

    The VLEK names no chip (a cspID instead of a hwID), as AMD's do. The signer keys are kept so a test
    can issue a crossed certificate (:meth:`issue`: a VLEK the ASK signed, a VCEK the ASVK signed)."""

    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate
    vcek: x509.Certificate
    vcek_key: ec.EllipticCurvePrivateKey
    vlek: x509.Certificate
    vlek_key: ec.EllipticCurvePrivateKey
    ask_key: rsa.RSAPrivateKey
    asvk_key: rsa.RSAPrivateKey

    def ask_chain(self) -> SnpChain:
        return SnpChain(self.ask, self.ark, "the test ASK chain")

    def asvk_chain(self) -> SnpChain:
        return SnpChain(self.asvk, self.ark, "the test ASVK chain", "ASVK")

    def anchors(self) -> dict[str, x509.Certificate]:
        return {"test": self.ark}

    def asvk_chain_pem(self) -> bytes:
        return self.asvk.public_bytes(Encoding.PEM) + self.ark.public_bytes(Encoding.PEM)

    def sign(self, raw: bytes, key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
        """``raw`` signed by the VLEK's key (or ``key``), as :meth:`Forge.sign`."""
        return Forge(self.ark, self.asvk, self.vlek, key or self.vlek_key).sign(raw)

    def issue(self, subject: str, key: ec.EllipticCurvePrivateKey, by: str) -> x509.Certificate:
        """A certificate for ``key`` with the VLEK's extensions, signed by the ``ASK`` or the ``ASVK``."""
        signer, issuer = (self.ask_key, "SEV-Test") if by == "ASK" else (self.asvk_key, "SEV-VLEK-Test")
        return _cert(subject, issuer, key.public_key(), signer, _vlek_exts())


def _vlek_exts(bootloader: int = 3, tee: int = 0, snp: int = 8, microcode: int = 115,
               product_name: str = "Milan-B0") -> tuple[x509.UnrecognizedExtension, ...]:
    """A VLEK's KDS extensions: structVersion, productName, the TCB, a cspID (``.5``), no hwID."""
    csp = b"test-csp"
    return (_ext(f"{KDS}.1", _der_int(0)),
            _ext(f"{KDS}.2", bytes([0x16, len(product_name)]) + product_name.encode()),
            _ext(f"{KDS}.3.1", _der_int(bootloader)), _ext(f"{KDS}.3.2", _der_int(tee)),
            _ext(f"{KDS}.3.3", _der_int(snp)), _ext(f"{KDS}.3.8", _der_int(microcode)),
            _ext(f"{KDS}.5", bytes([0x16, len(csp)]) + csp))


@functools.cache
def make_vlek_forge(seed: int = 0) -> VlekForge:
    """A fresh ARK -> ASK -> VCEK and ARK -> ASVK -> VLEK (Milan layout, TCB 3/0/8/115); ``seed`` only tells
    cached ones apart (another seed: other keys throughout)."""
    ark_key, ask_key, asvk_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
    vcek_key, vlek_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ark = _cert("ARK-Test", "ARK-Test", ark_key.public_key(), ark_key)
    ask = _cert("SEV-Test", "ARK-Test", ask_key.public_key(), ark_key)
    asvk = _cert("SEV-VLEK-Test", "ARK-Test", asvk_key.public_key(), ark_key)
    vcek = _cert("SEV-VCEK", "SEV-Test", vcek_key.public_key(), ask_key,
                 (*_vlek_exts()[:-1], _ext(f"{KDS}.4", CHIP_ID)))
    vlek = _cert("SEV-VLEK", "SEV-VLEK-Test", vlek_key.public_key(), asvk_key, _vlek_exts())
    return VlekForge(ark, ask, asvk, vcek, vcek_key, vlek, vlek_key, ask_key, asvk_key)
