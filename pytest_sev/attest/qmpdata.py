"""Bytes out of QMP's base64 fields, or a FormatError naming the field.

QEMU hands every SEV blob (``pdh``, ``cert-chain``, the launch measurement,
the attestation report) to QMP clients as base64 text; the parsers accept
either that text or the raw bytes, and one decoder says which field was bad.
"""

from __future__ import annotations

import base64
import binascii

from .errors import FormatError


def qmp_bytes(data: bytes | str, what: str) -> bytes:
    """*data* as bytes: base64 text is decoded strictly, bytes pass through."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what} is not valid base64: {exc}") from exc
