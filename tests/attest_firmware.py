"""A firmware-side double of the SEV PSP for the attest tests (self-consistency, not known-answer).

Why: session creation, the attestation report and launch secrets have no
outside vectors in the shared kat, so the tests play the firmware's part as
the SEV API spec describes it: it owns a PDH key pair (signed PEK <- OCA and
PEK <- CEK, all generated here), unwraps the owner's TEK/TIK from the
session with its PDH private key, answers LAUNCH_MEASURE, signs attestation
reports with its PEK and opens LAUNCH_SECRET packets. Its cryptography is
written here directly on ``cryptography``/``hmac`` (not imported from the
code under test); only the certificate byte layout is shared, and that
layout is pinned separately by the real Naples/Rome certificates.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pytest_sev.attest import sevcert as sc


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _kdf16(key: bytes, label: bytes, ctx: bytes) -> bytes:
    return _hmac(key, struct.pack("<I", 1) + label + b"\0" + ctx + struct.pack("<I", 128))[:16]


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    return c.update(data) + c.finalize()


def _sign_slot(signer_key: ec.EllipticCurvePrivateKey, signer_usage: int, body: bytes) -> bytes:
    r, s = decode_dss_signature(signer_key.sign(body, ec.ECDSA(hashes.SHA256())))
    return sc.encode_sig_slot(signer_usage, sc.ALGO_ECDSA_SHA256, sc.ecdsa_sig_to_slot_bytes(r, s))


def _cert(key: ec.EllipticCurvePrivateKey, usage: int, algo: int, signers: list[tuple[ec.EllipticCurvePrivateKey, int]],
          api: tuple[int, int]) -> bytes:
    body = sc.encode_body(usage, algo, sc.encode_ec_pubkey(key.public_key()), *api)
    slots = [_sign_slot(k, u, body) for k, u in signers]
    return sc.encode_cert(body, *(slots + [None] * (2 - len(slots))))


class LaunchRejected(Exception):
    """What the firmware would answer with an error status."""


@dataclass
class GuestContext:
    tek: bytes
    tik: bytes
    policy: int


class FirmwareDouble:
    """One platform: OCA, CEK, PEK, PDH keys and the guest contexts it launched."""

    def __init__(self, api: tuple[int, int] = (1, 49), build: int = 6) -> None:
        self.api, self.build = api, build
        curve = ec.SECP384R1()
        self.oca_key, self.cek_key = ec.generate_private_key(curve), ec.generate_private_key(curve)
        self.pek_key, self.pdh_key = ec.generate_private_key(curve), ec.generate_private_key(curve)
        self.oca = _cert(self.oca_key, sc.USAGE_OCA, sc.ALGO_ECDSA_SHA256, [(self.oca_key, sc.USAGE_OCA)], api)
        self.cek = _cert(self.cek_key, sc.USAGE_CEK, sc.ALGO_ECDSA_SHA256, [], api)
        self.pek = _cert(self.pek_key, sc.USAGE_PEK, sc.ALGO_ECDSA_SHA256,
                         [(self.oca_key, sc.USAGE_OCA), (self.cek_key, sc.USAGE_CEK)], api)
        self.pdh = _cert(self.pdh_key, sc.USAGE_PDH, sc.ALGO_ECDH_SHA256, [(self.pek_key, sc.USAGE_PEK)], api)

    # -- QMP query-sev-capabilities
    def capabilities(self) -> dict[str, str]:
        return {"pdh": base64.b64encode(self.pdh).decode(),
                "cert-chain": base64.b64encode(self.pek + self.oca + self.cek).decode()}

    # -- LAUNCH_START
    def launch_start(self, godh_b64: str, session_b64: str, policy: int) -> GuestContext:
        godh = base64.b64decode(godh_b64, validate=True)
        sess = base64.b64decode(session_b64, validate=True)
        if len(godh) != 0x824 or len(sess) != 0x80:
            raise LaunchRejected(f"bad lengths {len(godh)}/{len(sess)}")
        usage, algo, curve = struct.unpack_from("<III", godh, 8)
        if usage != sc.USAGE_PDH or algo != sc.ALGO_ECDH_SHA256 or curve != sc.CURVE_P384:
            raise LaunchRejected("owner certificate is not an ECDH P-384 PDH")
        x = int.from_bytes(godh[0x14:0x14 + 72], "little")
        y = int.from_bytes(godh[0x14 + 72:0x14 + 144], "little")
        peer = ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
        z = self.pdh_key.exchange(ec.ECDH(), peer)
        nonce, wrap_tk, wrap_iv, wrap_mac, policy_mac = sess[0:16], sess[16:48], sess[48:64], sess[64:96], sess[96:128]
        master = _kdf16(z, b"sev-master-secret", nonce)
        kek, kik = _kdf16(master, b"sev-kek", b""), _kdf16(master, b"sev-kik", b"")
        if not hmac.compare_digest(_hmac(kik, wrap_tk), wrap_mac):
            raise LaunchRejected("WRAP_MAC does not verify (BAD_MEASUREMENT)")
        keys = _ctr(kek, wrap_iv, wrap_tk)
        tek, tik = keys[:16], keys[16:]
        if not hmac.compare_digest(_hmac(tik, struct.pack("<I", policy)), policy_mac):
            raise LaunchRejected("POLICY_MAC does not verify: policy differs from the owner's")
        return GuestContext(tek, tik, policy)

    # -- LAUNCH_MEASURE (as QMP query-sev-launch-measure 'data')
    def launch_measure(self, ctx: GuestContext, digest: bytes, mnonce: bytes) -> str:
        msg = bytes([4, self.api[0], self.api[1], self.build]) + struct.pack("<I", ctx.policy) + digest + mnonce
        return base64.b64encode(_hmac(ctx.tik, msg) + mnonce).decode()

    # -- ATTESTATION (as QMP query-sev-attestation-report 'data')
    def attestation_report(self, digest: bytes, policy: int, mnonce: bytes) -> str:
        signed = mnonce + digest + struct.pack("<I", policy)
        r, s = decode_dss_signature(self.pek_key.sign(signed, ec.ECDSA(hashes.SHA256())))
        rep = signed + struct.pack("<III", sc.USAGE_PEK, sc.ALGO_ECDSA_SHA256, 0) + \
            r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return base64.b64encode(rep).decode()

    # -- LAUNCH_SECRET (the firmware checks the MAC, then decrypts into the guest)
    def launch_secret(self, ctx: GuestContext, measure_blob_b64: str, header_b64: str, secret_b64: str) -> bytes:
        header, ct = base64.b64decode(header_b64), base64.b64decode(secret_b64)
        flags, iv, mac = struct.unpack_from("<I", header, 0)[0], header[4:20], header[20:52]
        measure = base64.b64decode(measure_blob_b64)[:32]
        msg = b"\x01" + struct.pack("<I", flags) + iv + struct.pack("<II", len(ct), len(ct)) + ct + measure
        if not hmac.compare_digest(_hmac(ctx.tik, msg), mac):
            raise LaunchRejected("LAUNCH_SECRET MAC does not verify")
        return _ctr(ctx.tek, iv, ct)
