"""The SEV-SNP extended-report certificate table: the VCEK/VLEK, ASK and ARK a host hands its guest.

Why a parser of its own: a guest that asks for an *extended* report
(``SNP_GET_EXT_REPORT``, or configfs-tsm's ``auxblob``) gets beside the
report the certificates the host chose to supply. That is the cheapest
place to find the VCEK that signed the report (no trip to AMD's key
server), but the bytes come from the host, so the layout is checked before
any certificate is taken out of it: a table without its terminator, an
entry pointing outside the blob or into the table itself, two entries
sharing bytes or a GUID are refused with a :class:`CertTableError` naming
the entry. What a certificate *says* is judged elsewhere (the VCEK by the
report's signature and its KDS extensions, the ASK/ARK never: the pinned
ones of :mod:`.snp_roots` decide).

Layout (AMD GHCB specification 56421, "SNP Extended Guest Request", the
certificate table; as read by google/go-sev-guest ``abi/abi.go``
``ParseSnpCertTableHeader`` / ``CertTable.Unmarshal`` and virtee/sev
``src/firmware/linux/host/types/snp.rs`` ``CertTableEntry::parse_table``)::

    entry i at 24*i:  GUID[16]  OFFSET u32 (little-endian)  LENGTH u32 (little-endian)
    ...               an all-zero entry ends the table
    then the certificates, each at OFFSET from the start of the table, LENGTH bytes

The GUID is stored in RFC 4122 byte order (the string's hex digits in
order: go-sev-guest copies ``uuid.UUID`` bytes, virtee/sev uses
``Uuid::from_bytes``/``into_bytes``), not the mixed-endian EFI GUID layout.
Known GUIDs (go-sev-guest ``abi.go`` ``VcekGUID`` etc., virtee/sev
``CertType``): VCEK ``63da758d-e664-4564-adc5-f4b93be8accd``, VLEK
``a8074bc2-a25a-483e-aae6-39c045a0b8a1``, ASK ``4ab7b379-bbac-4fe4-a02f-05aef327c782``
(also the ASVK of a VLEK chain, per go-sev-guest), ARK
``c0b406a4-a803-4952-9743-3fb6014cd0ae``, CRL ``92f81bc3-5811-4d3d-97ff-d19f88dc67ea``
(virtee/sev). Other GUIDs are kept, named ``unknown``.

An empty blob is an empty table (the host supplied nothing; go-sev-guest
accepts it too). Bytes after the last certificate (the pages the host
filled) are allowed.
"""

from __future__ import annotations

import itertools
import struct
import uuid
from dataclasses import dataclass

from .errors import FormatError

ENTRY_SIZE = 24
_ENTRY = struct.Struct("<16sII")

GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
GUID_CRL = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")

#: GUID -> the name used in messages and by :meth:`CertTable.get`
KNOWN_GUIDS: dict[uuid.UUID, str] = {
    GUID_VCEK: "VCEK", GUID_VLEK: "VLEK", GUID_ASK: "ASK", GUID_ARK: "ARK", GUID_CRL: "CRL",
}
_BY_NAME = {name: guid for guid, name in KNOWN_GUIDS.items()}


class CertTableError(FormatError):
    """A certificate table whose layout does not hold (the entry and the rule are named)."""


@dataclass(frozen=True)
class CertEntry:
    """One certificate of the table: its GUID, where it sat and its bytes."""

    guid: uuid.UUID
    offset: int
    length: int
    data: bytes

    @property
    def name(self) -> str:
        """``VCEK``, ``VLEK``, ``ASK``, ``ARK``, ``CRL`` or ``unknown``."""
        return KNOWN_GUIDS.get(self.guid, "unknown")

    def describe(self) -> str:
        return f"{self.name} ({self.guid}) at {self.offset:#x}, {self.length} bytes"


@dataclass(frozen=True)
class CertTable:
    """Every entry of one table, in table order."""

    entries: tuple[CertEntry, ...]

    def get(self, key: str | uuid.UUID) -> CertEntry | None:
        """The entry named ``VCEK``/``VLEK``/``ASK``/``ARK``/``CRL`` (or with that GUID), or ``None``."""
        guid = key if isinstance(key, uuid.UUID) else _BY_NAME.get(key.upper())
        if guid is None:
            raise KeyError(f"no certificate table GUID is named {key!r} (known: {', '.join(_BY_NAME)})")
        return next((e for e in self.entries if e.guid == guid), None)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def parse_cert_table(blob: bytes) -> CertTable:
    """The entries of ``blob`` (an extended report's certificate area), or a :class:`CertTableError`."""
    if not blob:
        return CertTable(())
    heads: list[tuple[int, uuid.UUID, int, int]] = []
    at = 0
    while True:
        if at + ENTRY_SIZE > len(blob):
            raise CertTableError(f"certificate table: no all-zero terminator entry in the {len(blob)} bytes "
                                 f"({len(heads)} entries read)")
        raw_guid, offset, length = _ENTRY.unpack_from(blob, at)
        index = len(heads)
        at += ENTRY_SIZE
        if not any(raw_guid):
            if offset or length:
                raise CertTableError(f"certificate table entry {index}: zero GUID with offset {offset:#x} "
                                     f"length {length} (a terminator must be all zero)")
            break
        heads.append((index, uuid.UUID(bytes=raw_guid), offset, length))
    header_end = at
    entries: list[CertEntry] = []
    for index, guid, offset, length in heads:
        what = f"certificate table entry {index} ({KNOWN_GUIDS.get(guid, 'unknown')} {guid})"
        if length == 0:
            raise CertTableError(f"{what}: length 0")
        if offset < header_end:
            raise CertTableError(f"{what}: offset {offset:#x} points into the table itself "
                                 f"(its entries end at {header_end:#x})")
        if offset + length > len(blob):
            raise CertTableError(f"{what}: bytes {offset:#x}..{offset + length:#x} lie outside the "
                                 f"{len(blob)}-byte blob")
        entries.append(CertEntry(guid, offset, length, bytes(blob[offset:offset + length])))
    seen: dict[uuid.UUID, int] = {}
    for index, entry in enumerate(entries):
        if entry.guid in seen:
            raise CertTableError(f"certificate table entries {seen[entry.guid]} and {index} share the GUID "
                                 f"{entry.guid} ({entry.name}): which one is meant cannot be told")
        seen[entry.guid] = index
    ordered = sorted(range(len(entries)), key=lambda i: entries[i].offset)
    for first, second in itertools.pairwise(ordered):
        a, b = entries[first], entries[second]
        if a.offset + a.length > b.offset:
            raise CertTableError(f"certificate table entries {first} ({a.name}) and {second} ({b.name}) overlap: "
                                 f"{a.offset:#x}..{a.offset + a.length:#x} and {b.offset:#x}..{b.offset + b.length:#x}")
    return CertTable(tuple(entries))


__all__ = ["ENTRY_SIZE", "GUID_VCEK", "GUID_VLEK", "GUID_ASK", "GUID_ARK", "GUID_CRL", "KNOWN_GUIDS",
           "CertTableError", "CertEntry", "CertTable", "parse_cert_table"]
