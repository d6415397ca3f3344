"""The guest owner's LAUNCH_START: the Diffie-Hellman certificate and the session blob.

Why: with ``sev-guest,dh-cert-file=...,session-file=...`` QEMU passes the
owner's key material to the firmware, which then uses the owner's TEK/TIK
instead of keys the hypervisor could know. Only then does the launch
measurement (keyed with the TIK) prove anything to the owner.

Per the SEV API spec (LAUNCH_START, "Establishing a session"):

- the owner makes an ECDH P-384 key pair and puts the public half in an SEV
  certificate (usage PDH, algorithm ECDH-SHA256, no signatures);
- ``Z`` = ECDH(owner private, platform PDH public), the x-coordinate as the
  ECDH primitive returns it (big-endian), as virtee/sev does on real hardware;
- master = KDF(Z, "sev-master-secret", NONCE); KEK = KDF(master, "sev-kek");
  KIK = KDF(master, "sev-kik");
- session (0x80 bytes, little-endian)::

    0x00 NONCE[16]   0x10 WRAP_TK[32] = AES-128-CTR(KEK, WRAP_IV, TEK || TIK)
    0x30 WRAP_IV[16] 0x40 WRAP_MAC[32] = HMAC-SHA256(KIK, WRAP_TK)
    0x60 POLICY_MAC[32] = HMAC-SHA256(TIK, POLICY as u32 le)

Pure: randomness and keys come in as arguments (see :func:`new_owner_key`).
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import SessionError
from .kdf import hmac_sha256, session_keys
from .sevcert import ALGO_ECDH_SHA256, ECDH_ALGOS, USAGE_PDH, SevCert, encode_body, encode_cert, encode_ec_pubkey, public_key

SESSION_SIZE = 0x80


@dataclass(frozen=True)
class SessionBlob:
    """The LAUNCH_START session buffer, field by field."""

    nonce: bytes
    wrap_tk: bytes
    wrap_iv: bytes
    wrap_mac: bytes
    policy_mac: bytes

    def to_bytes(self) -> bytes:
        return self.nonce + self.wrap_tk + self.wrap_iv + self.wrap_mac + self.policy_mac


def parse_session(data: bytes) -> SessionBlob:
    if len(data) != SESSION_SIZE:
        raise SessionError(f"session blob is {len(data)} bytes, expected {SESSION_SIZE}")
    return SessionBlob(data[0:16], data[16:48], data[48:64], data[64:96], data[96:128])


@dataclass(frozen=True)
class LaunchStart:
    """Everything the owner produces for one launch (keep tek/tik secret)."""

    policy: int
    tek: bytes
    tik: bytes
    godh_cert: bytes  #: the owner's DH certificate, 0x824 bytes
    session: SessionBlob

    def dh_cert_b64(self) -> str:
        """Content of QEMU's ``dh-cert-file`` (base64, as QEMU decodes it)."""
        return base64.b64encode(self.godh_cert).decode()

    def session_b64(self) -> str:
        """Content of QEMU's ``session-file``."""
        return base64.b64encode(self.session.to_bytes()).decode()


def new_owner_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDH P-384 key for one launch."""
    return ec.generate_private_key(ec.SECP384R1())


def owner_dh_cert(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The owner's public key as an unsigned SEV certificate (usage PDH, ECDH-SHA256)."""
    return encode_cert(encode_body(USAGE_PDH, ALGO_ECDH_SHA256, encode_ec_pubkey(key.public_key())))


def shared_secret(owner_key: ec.EllipticCurvePrivateKey, pdh: SevCert) -> bytes:
    """``Z``: ECDH of the owner's private key with the platform's PDH."""
    if pdh.usage != USAGE_PDH or pdh.algo not in ECDH_ALGOS:
        raise SessionError(f"the platform key is a {pdh.name} with algorithm {pdh.algo:#x}, not an ECDH PDH")
    peer = public_key(pdh)
    if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != owner_key.curve.name:
        raise SessionError("the PDH is not on the owner's curve (P-384)")
    return owner_key.exchange(ec.ECDH(), peer)


def aes128_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-128-CTR (encryption and decryption are the same operation)."""
    if len(key) != 16 or len(iv) != 16:
        raise SessionError("AES-128-CTR needs a 16-byte key and a 16-byte IV")
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def wrap_session(z: bytes, tek: bytes, tik: bytes, policy: int, nonce: bytes, iv: bytes) -> SessionBlob:
    """The session blob for shared secret ``z`` (pure; the known-answer entry point)."""
    if len(tek) != 16 or len(tik) != 16 or len(nonce) != 16:
        raise SessionError("TEK, TIK and nonce must be 16 bytes each")
    kek, kik = session_keys(z, nonce)
    wrap = aes128_ctr(kek, iv, tek + tik)
    return SessionBlob(nonce, wrap, iv, hmac_sha256(kik, wrap), hmac_sha256(tik, struct.pack("<I", policy)))


def launch_start(pdh: SevCert, policy: int, owner_key: ec.EllipticCurvePrivateKey, tek: bytes,
                 tik: bytes, nonce: bytes, iv: bytes) -> LaunchStart:
    """The owner's LAUNCH_START for platform ``pdh`` (verify its chain first: :mod:`.chain`)."""
    if not 0 <= policy <= 0xFFFFFFFF:
        raise SessionError(f"policy {policy} does not fit 32 bits")
    blob = wrap_session(shared_secret(owner_key, pdh), tek, tik, policy, nonce, iv)
    return LaunchStart(policy, tek, tik, owner_dh_cert(owner_key), blob)


def new_launch_start(pdh: SevCert, policy: int) -> tuple[LaunchStart, ec.EllipticCurvePrivateKey]:
    """:func:`launch_start` with fresh keys, TEK, TIK, nonce and IV from the OS."""
    key = new_owner_key()
    return launch_start(pdh, policy, key, os.urandom(16), os.urandom(16), os.urandom(16),
                        os.urandom(16)), key
