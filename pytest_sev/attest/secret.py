"""LAUNCH_SECRET: a GUID-keyed secret table sealed for ``sev-inject-launch-secret``.

Why: after the owner has verified the launch measurement, secrets (a disk
key, say) are sent encrypted with the TEK and bound by the TIK to that very
measurement, so the firmware only injects them into the guest that was
measured. OVMF reserves the area (footer-table GUID
``4c2eb361-...``) and Linux's ``efi_secret`` module reads the table from it.

Table (little-endian), padded with zeros to a multiple of 16::

    header: GUID 1e74f542-71dd-4d66-963e-ef4287ff173b, u32 length (whole table, unpadded)
    entry:  GUID, u32 length (20 + data), data

Packet header (SEV API spec, LAUNCH_SECRET): ``FLAGS u32 || IV[16] || MAC[32]``
with ``MAC = HMAC-SHA256(TIK, 0x01 || FLAGS || IV || GUEST_LENGTH u32 ||
TRANS_LENGTH u32 || ciphertext || MEASURE)``, ``MEASURE`` the first 32 bytes
of the launch measurement blob, ciphertext = AES-128-CTR(TEK, IV, table).
"""

from __future__ import annotations

import base64
import os
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import SecretError
from .kdf import hmac_sha256
from .session import aes128_ctr

SECRET_TABLE_GUID = uuid.UUID("1e74f542-71dd-4d66-963e-ef4287ff173b")
ENTRY_HEADER = 20


def _guid(g: str | uuid.UUID) -> uuid.UUID:
    try:
        return g if isinstance(g, uuid.UUID) else uuid.UUID(g)
    except ValueError as exc:
        raise SecretError(f"{g!r} is not a GUID") from exc


def _entry(guid: uuid.UUID, data: bytes) -> bytes:
    return guid.bytes_le + struct.pack("<I", ENTRY_HEADER + len(data)) + data


def build_secret_table(secrets: Sequence[tuple[str | uuid.UUID, bytes]]) -> bytes:
    """The padded table for ``secrets`` (GUID, value) in the given order."""
    if not secrets:
        raise SecretError("a secret table needs at least one secret")
    guids = [_guid(g) for g, _ in secrets]
    if len(set(guids)) != len(guids):
        raise SecretError("the same GUID appears twice in the secret table")
    body = b"".join(_entry(g, v) for g, (_, v) in zip(guids, secrets, strict=True))
    table = _entry(SECRET_TABLE_GUID, body)
    return table + bytes(-len(table) % 16)


def parse_secret_table(table: bytes) -> dict[uuid.UUID, bytes]:
    """The secrets in a (decrypted) table, as ``efi_secret`` would list them."""
    if len(table) < ENTRY_HEADER or uuid.UUID(bytes_le=table[:16]) != SECRET_TABLE_GUID:
        raise SecretError("not a secret table (header GUID missing)")
    total = struct.unpack_from("<I", table, 16)[0]
    if total > len(table):
        raise SecretError(f"table length {total} exceeds the {len(table)} bytes given")
    out, off = {}, ENTRY_HEADER
    while off + ENTRY_HEADER <= total:
        g = uuid.UUID(bytes_le=table[off:off + 16])
        n = struct.unpack_from("<I", table, off + 16)[0]
        if n < ENTRY_HEADER or off + n > total:
            raise SecretError(f"entry at {off} has bad length {n}")
        out[g] = table[off + ENTRY_HEADER: off + n]
        off += n
    return out


@dataclass(frozen=True)
class LaunchSecret:
    """The packet header and encrypted payload for QMP ``sev-inject-launch-secret``."""

    header: bytes
    payload: bytes

    def qmp_arguments(self, gpa: int | None = None) -> dict[str, object]:
        """Arguments of ``sev-inject-launch-secret``; without ``gpa`` QEMU uses OVMF's area."""
        args: dict[str, object] = {"packet-header": base64.b64encode(self.header).decode(),
                                   "secret": base64.b64encode(self.payload).decode()}
        if gpa is not None:
            args["gpa"] = gpa
        return args


def secret_mac(tik: bytes, flags: int, iv: bytes, guest_length: int, ciphertext: bytes,
               measure: bytes) -> bytes:
    """The LAUNCH_SECRET MAC binding ``ciphertext`` to the launch ``measure``."""
    msg = (b"\x01" + struct.pack("<I", flags) + iv + struct.pack("<II", guest_length, len(ciphertext))
           + ciphertext + measure)
    return hmac_sha256(tik, msg)


def seal_secret(table: bytes, tek: bytes, tik: bytes, launch_measure: bytes, iv: bytes,
                flags: int = 0, area_size: int | None = None) -> LaunchSecret:
    """Encrypt ``table`` for the guest whose measurement blob is ``launch_measure``.

    ``launch_measure``: the 48-byte blob (or its first 32 bytes).
    ``area_size``: the OVMF secret area's size, to refuse a table that does not fit.
    """
    if len(launch_measure) not in (32, 48):
        raise SecretError(f"launch measurement is {len(launch_measure)} bytes, expected 48 (or 32)")
    if len(iv) != 16:
        raise SecretError("the IV must be 16 bytes")
    if len(table) % 16:
        raise SecretError(f"the table is {len(table)} bytes, not a multiple of 16")
    if area_size is not None and len(table) > area_size:
        raise SecretError(f"the table ({len(table)} bytes) does not fit the {area_size}-byte secret area")
    ct = aes128_ctr(tek, iv, table)
    mac = secret_mac(tik, flags, iv, len(table), ct, launch_measure[:32])
    return LaunchSecret(struct.pack("<I", flags) + iv + mac, ct)


def new_launch_secret(table: bytes, tek: bytes, tik: bytes, launch_measure: bytes,
                      area_size: int | None = None) -> LaunchSecret:
    """:func:`seal_secret` with a fresh random IV."""
    return seal_secret(table, tek, tik, launch_measure, os.urandom(16), area_size=area_size)
