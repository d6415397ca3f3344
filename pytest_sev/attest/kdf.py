"""The SEV API's key derivation and MAC primitives.

Why separate: the same two primitives key the session (LAUNCH_START), check
the measurement (LAUNCH_MEASURE) and authenticate secrets (LAUNCH_SECRET);
getting a byte order wrong here breaks all three in the same way, so they
are pinned once by known answers (virtee/sev's unit vectors).

KDF: NIST SP 800-108 counter mode with HMAC-SHA256, as the SEV API spec
defines it: ``K(i) = HMAC(key, [i]_32le || label || 0x00 || context || [L]_32le)``
with ``L`` the output length in bits.
"""

from __future__ import annotations

import hashlib
import hmac


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def kdf(key: bytes, label: str, context: bytes = b"", length: int = 16) -> bytes:
    """``length`` bytes derived from ``key`` for ``label`` and ``context``."""
    out = b""
    i = 1
    lbits = (length * 8).to_bytes(4, "little")
    while len(out) < length:
        out += hmac_sha256(key, i.to_bytes(4, "little") + label.encode() + b"\x00" + context + lbits)
        i += 1
    return out[:length]


def session_keys(shared_secret: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    """``(KEK, KIK)`` from the ECDH shared secret and the session nonce."""
    master = kdf(shared_secret, "sev-master-secret", nonce)
    return kdf(master, "sev-kek"), kdf(master, "sev-kik")
