"""The SNP extended-report certificate table: well-formed tables read, every malformed one refused by name.

No captured certificate table exists in the public sources read (go-sev-guest's
testdata has the report and the VCEK but no ``auxblob``), so each table here is
reconstructed in the test from the layout of the GHCB specification as go-sev-guest
``abi/abi.go`` and virtee/sev ``CertTableEntry::parse_table`` read it (24-byte
entries: GUID in RFC 4122 byte order, u32 offset, u32 length, little-endian;
an all-zero entry last; offsets from the table's start), filled with the real
Milan VCEK of ``fixtures/snp-kat`` and AMD's pinned Milan ASK/ARK. The builder
below is written from the spec, not from the parser under test.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.snp_certtable import CertTableError, parse_cert_table

KAT = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat" / "reports"
VCEK_DER = (KAT / "gosev-milan-vcek.der").read_bytes()
_ASK, _ARK = x509.load_pem_x509_certificates((KAT / "ask_ark_milan.pem").read_bytes())
ASK_DER, ARK_DER = _ASK.public_bytes(Encoding.DER), _ARK.public_bytes(Encoding.DER)

#: the GUID strings as go-sev-guest abi.go and virtee/sev CertType spell them
VCEK = "63da758d-e664-4564-adc5-f4b93be8accd"
VLEK = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
ASK = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
ARK = "c0b406a4-a803-4952-9743-3fb6014cd0ae"


def entry(guid: str, offset: int, length: int) -> bytes:
    return bytes.fromhex(guid.replace("-", "")) + struct.pack("<II", offset, length)


TERMINATOR = bytes(24)


def table(*certs: tuple[str, bytes], pad: int = 0) -> bytes:
    """Entries, the terminator, then the certificates back to back (each offset from the table's start)."""
    header = 24 * (len(certs) + 1)
    heads, body, at = b"", b"", header
    for guid, data in certs:
        heads += entry(guid, at, len(data))
        body += data
        at += len(data)
    return heads + TERMINATOR + body + bytes(pad)


def test_vcek_ask_ark_read_back_byte_for_byte() -> None:
    blob = table((VCEK, VCEK_DER), (ASK, ASK_DER), (ARK, ARK_DER), pad=4096)
    parsed = parse_cert_table(blob)
    assert parsed.names() == ["VCEK", "ASK", "ARK"]
    assert parsed.get("VCEK").data == VCEK_DER  # type: ignore[union-attr]
    assert parsed.get("ask").data == ASK_DER  # type: ignore[union-attr]
    assert parsed.get(uuid.UUID(ARK)).data == ARK_DER  # type: ignore[union-attr]
    assert parsed.get("VLEK") is None
    first = parsed.entries[0]
    assert (first.offset, first.length) == (96, len(VCEK_DER))
    assert "VCEK (63da758d-e664-4564-adc5-f4b93be8accd) at 0x60" in first.describe()


def test_guid_byte_order_is_rfc4122_not_efi() -> None:
    """The GUID's bytes are the string's hex in order: the EFI mixed-endian form of the VCEK GUID is not the VCEK."""
    efi = uuid.UUID(VCEK).bytes_le.hex()
    blob = table((efi, VCEK_DER))
    parsed = parse_cert_table(blob)
    assert parsed.get("VCEK") is None and parsed.names() == ["unknown"]


def test_vlek_and_unknown_guid() -> None:
    other = "11111111-2222-3333-4444-555555555555"
    parsed = parse_cert_table(table((VLEK, VCEK_DER), (other, b"x")))
    assert parsed.names() == ["VLEK", "unknown"] and parsed.get("VLEK").data == VCEK_DER  # type: ignore[union-attr]
    assert parsed.get(uuid.UUID(other)).data == b"x"  # type: ignore[union-attr]
    with pytest.raises(KeyError, match="no certificate table GUID is named 'PEK'"):
        parsed.get("PEK")


def test_empty_blob_is_an_empty_table_and_terminator_only_too() -> None:
    assert parse_cert_table(b"").entries == ()
    assert parse_cert_table(TERMINATOR).entries == ()


def test_the_error_is_a_format_error() -> None:
    assert issubclass(CertTableError, FormatError)


@pytest.mark.parametrize("blob, words", [
    # the terminator missing: the last entry runs into the end
    (entry(VCEK, 48, 4) + b"abcd", "no all-zero terminator entry in the 28 bytes (1 entries read)"),
    (entry(VCEK, 24, 4), "no all-zero terminator"),
    (b"\0" * 23, "no all-zero terminator entry in the 23 bytes (0 entries read)"),
    # a terminator with a zero GUID but an offset or length
    (entry(VCEK, 48, 1) + bytes(16) + struct.pack("<II", 0, 5) + b"z", "entry 1: zero GUID with offset 0x0 length 5"),
    (bytes(16) + struct.pack("<II", 7, 0), "entry 0: zero GUID with offset 0x7 length 0"),
    # outside the blob
    (entry(VCEK, 48, 2000) + TERMINATOR + VCEK_DER[:100], "entry 0 (VCEK 63da758d-e664-4564-adc5-f4b93be8accd): "
                                                         "bytes 0x30..0x800 lie outside the 148-byte blob"),
    (entry(VCEK, 0xFFFF_FFF0, 0x20) + TERMINATOR, "lie outside the 48-byte blob"),
    # into the table itself (the header is entries plus terminator)
    (entry(VCEK, 24, 4) + TERMINATOR + b"abcd", "offset 0x18 points into the table itself (its entries end at 0x30)"),
    (entry(VCEK, 0, 4) + TERMINATOR + b"abcd", "offset 0x0 points into the table itself"),
    # length 0
    (entry(VCEK, 48, 0) + TERMINATOR, "entry 0 (VCEK 63da758d-e664-4564-adc5-f4b93be8accd): length 0"),
    # two entries sharing bytes
    (entry(VCEK, 72, 10) + entry(ASK, 81, 10) + TERMINATOR + bytes(30),
     "entries 0 (VCEK) and 1 (ASK) overlap: 0x48..0x52 and 0x51..0x5b"),
    (entry(ARK, 90, 4) + entry(VCEK, 72, 20) + TERMINATOR + bytes(30),
     "entries 1 (VCEK) and 0 (ARK) overlap: 0x48..0x5c and 0x5a..0x5e"),
    # the same GUID twice
    (entry(VCEK, 72, 4) + entry(VCEK, 76, 4) + TERMINATOR + bytes(8),
     "entries 0 and 1 share the GUID 63da758d-e664-4564-adc5-f4b93be8accd (VCEK)"),
])
def test_malformed_table_refused_by_name(blob: bytes, words: str) -> None:
    with pytest.raises(CertTableError) as info:
        parse_cert_table(blob)
    assert words in str(info.value), str(info.value)


def test_adjacent_entries_do_not_overlap() -> None:
    """Certificates back to back (end of one == start of the next) are fine: the overlap test is strict."""
    blob = entry(VCEK, 72, 10) + entry(ASK, 82, 10) + TERMINATOR + bytes(20)
    assert [e.length for e in parse_cert_table(blob).entries] == [10, 10]


def test_entry_ending_exactly_at_the_blob_end_is_inside() -> None:
    blob = entry(VCEK, 48, 4) + TERMINATOR + b"abcd"
    assert parse_cert_table(blob).get("VCEK").data == b"abcd"  # type: ignore[union-attr]


def test_entry_at_the_header_end_is_allowed() -> None:
    """Offset == the end of the entries (terminator included) is the first byte after the table."""
    blob = entry(VCEK, 48, 1) + TERMINATOR + b"q"
    assert parse_cert_table(blob).entries[0].offset == 48
