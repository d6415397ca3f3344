"""Where a report's VCEK/VLEK comes from: the host's certificate table, else the directory, else none and why.

The certificate tables are reconstructed here from the GHCB layout (see
``test_snp_certtable.py``), filled with the real Milan VCEK of
``fixtures/snp-kat`` (go-sev-guest ``verify/testdata/vcek.testcer``) and AMD's
pinned Milan ASK/ARK; the other certificates are made in the test
(``snp_report_forge``). Nothing here touches the network.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import make_forge, make_report, tcb_legacy, tcb_turin

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.snp_report import parse_report
from pytest_sev.attest.snp_roots import load_product_chain, load_vlek_chain, pinned_arks
from pytest_sev.attest.snp_vcek_source import (
    SOURCE_DIR,
    SOURCE_NONE,
    SOURCE_TABLE,
    CertDirError,
    VcekLookup,
    cert_path,
    find_vcek,
    store_vek,
)
from pytest_sev.attest.snp_verify import Expectations, verify_snp_report

KAT = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat" / "reports"
REPORT = parse_report((KAT / "gosev-milan-report.bin").read_bytes())
VCEK_DER = (KAT / "gosev-milan-vcek.der").read_bytes()
_ASK, _ARK = x509.load_pem_x509_certificates((KAT / "ask_ark_milan.pem").read_bytes())
ASK_DER, ARK_DER = _ASK.public_bytes(Encoding.DER), _ARK.public_bytes(Encoding.DER)
ASVK_DER = load_vlek_chain("milan").ask.public_bytes(Encoding.DER)
CHIP_HEX = REPORT.chip_id.hex()
TCB_FILE = "4405000000000002.der"  # the report's REPORTED_TCB, 16 hex digits

VCEK = "63da758d-e664-4564-adc5-f4b93be8accd"
VLEK = "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
ASK = "4ab7b379-bbac-4fe4-a02f-05aef327c782"
ARK = "c0b406a4-a803-4952-9743-3fb6014cd0ae"


def table(*certs: tuple[str, bytes]) -> bytes:
    """GHCB certificate table: 24-byte entries (GUID, u32 offset, u32 length), an all-zero one, the certificates."""
    at = 24 * (len(certs) + 1)
    heads, body = b"", b""
    for guid, data in certs:
        heads += bytes.fromhex(guid.replace("-", "")) + struct.pack("<II", at, len(data))
        body += data
        at += len(data)
    return heads + bytes(24) + body


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def same(lookup: VcekLookup, data: bytes) -> bool:
    return lookup.cert is not None and der(lookup.cert) == data


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the certificate table ----------------------------------------------------------

def test_table_vcek_found_and_it_verifies_the_report() -> None:
    lookup = find_vcek(REPORT, cert_table=table((VCEK, VCEK_DER), (ASK, ASK_DER), (ARK, ARK_DER)))
    assert same(lookup, VCEK_DER) and lookup.source == SOURCE_TABLE
    assert lookup.reason == "the VCEK from the host's certificate table"
    verdict = verify_snp_report(REPORT, lookup.cert, {"milan": load_product_chain("milan")}, pinned_arks(),
                                Expectations(allow_debug=True))
    assert verdict.ok, [c.describe() for c in verdict.not_holding]


def test_table_wins_over_the_directory(tmp_path: Path) -> None:
    put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", der(make_forge(bootloader=2, tee=0, snp=5, microcode=68).vcek))
    lookup = find_vcek(REPORT, cert_table=table((VCEK, VCEK_DER)), cert_dir=tmp_path)
    assert same(lookup, VCEK_DER) and lookup.source == SOURCE_TABLE


def test_host_roots_in_the_table_are_noted_and_never_used() -> None:
    """A table whose ASK/ARK are not AMD's: the VCEK is still taken, the roots are not, and the reason says so."""
    forge = make_forge()
    blob = table((VCEK, VCEK_DER), (ASK, der(forge.ask)), (ARK, der(forge.ark)))
    lookup = find_vcek(REPORT, cert_table=blob, product="milan")
    assert same(lookup, VCEK_DER) and lookup.source == SOURCE_TABLE
    assert lookup.reason == ("the VCEK from the host's certificate table; "
                             "the table's ASK is not AMD's pinned milan ASK: ignored (the pinned ASK/ARK decide the "
                             "chain, never the host's); "
                             "the table's ARK is not AMD's pinned milan ARK: ignored (the pinned ASK/ARK decide the "
                             "chain, never the host's)")


def test_pinned_roots_of_another_product_are_noted() -> None:
    """AMD's Genoa ASK/ARK in a table for a Milan report are not the Milan ones: noted as well."""
    genoa = load_product_chain("genoa")
    lookup = find_vcek(REPORT, cert_table=table((VCEK, VCEK_DER), (ASK, der(genoa.ask)), (ARK, der(genoa.ark))),
                       product="milan")
    assert "the table's ASK is not AMD's pinned milan ASK" in lookup.reason
    assert "the table's ARK is not AMD's pinned milan ARK" in lookup.reason
    # without a product (a version-2 report names none), any pinned product's roots are AMD's
    assert find_vcek(REPORT, cert_table=table((VCEK, VCEK_DER), (ASK, der(genoa.ask)), (ARK, der(genoa.ark)))
                     ).reason == "the VCEK from the host's certificate table"


def test_garbage_root_entry_is_noted() -> None:
    lookup = find_vcek(REPORT, cert_table=table((VCEK, VCEK_DER), (ARK, b"not a cert")))
    assert same(lookup, VCEK_DER)
    assert "the table's ARK entry is not a DER X.509 certificate" in lookup.reason and "ignored" in lookup.reason


@pytest.mark.parametrize("blob, note", [
    (table((ASK, ASK_DER), (ARK, ARK_DER)), "the host's certificate table has no VCEK entry (it holds ASK, ARK)"),
    (b"", "the host's certificate table is empty"),
    (bytes(24), "the host's certificate table is empty"),
    (table((VCEK, VCEK_DER))[:24], "the host's certificate table is refused (certificate table"),
    (table((VCEK, b"junk")), "the certificate table's VCEK entry is not a DER X.509 certificate"),
])
def test_table_without_a_usable_vcek_falls_to_the_directory(tmp_path: Path, blob: bytes, note: str) -> None:
    put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", VCEK_DER)
    lookup = find_vcek(REPORT, cert_table=blob, cert_dir=tmp_path)
    assert same(lookup, VCEK_DER) and lookup.source == SOURCE_DIR
    assert note in lookup.reason, lookup.reason
    alone = find_vcek(REPORT, cert_table=blob)
    assert alone.cert is None and alone.source == SOURCE_NONE
    assert alone.reason.startswith("no VCEK found: ") and note in alone.reason
    assert alone.reason.endswith("no certificate directory given")


def test_vcek_of_another_tcb_is_returned_with_the_mismatch_said() -> None:
    other = make_forge(bootloader=2, tee=0, snp=4, microcode=68, hwid=REPORT.chip_id)
    lookup = find_vcek(REPORT, cert_table=table((VCEK, der(other.vcek))))
    assert same(lookup, der(other.vcek)) and lookup.source == SOURCE_TABLE
    assert lookup.reason == ("the VCEK from the host's certificate table does NOT match the report (its snp SPL is 4, "
                             "the report's 5); returned for the verifier's vcek_tcb/vcek_chip_id checks to judge")
    verdict = verify_snp_report(REPORT, lookup.cert, {}, pinned_arks(), product="milan")
    assert verdict.check("vcek_tcb").state == "failed"


def test_vcek_of_another_chip_is_returned_with_the_mismatch_said(tmp_path: Path) -> None:
    other = make_forge(bootloader=2, tee=0, snp=5, microcode=68)  # chip id 01 02 03 ..
    put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", der(other.vcek))
    lookup = find_vcek(REPORT, cert_dir=tmp_path)
    assert lookup.source == SOURCE_DIR and same(lookup, der(other.vcek))
    assert "does NOT match the report (its hwID 0102030405060708.. is not the report's chip id" in lookup.reason


# -- VLEK ------------------------------------------------------------------------------

VLEK_REPORT = parse_report(make_report(signer_info=1 << 2, reported_tcb=tcb_legacy(3, 0, 8, 115)))


def test_vlek_report_takes_the_tables_vlek_not_its_vcek() -> None:
    vlek = make_forge(hwid=None)  # a VLEK names no chip (cspID instead of hwID)
    vcek = make_forge(hwid=VLEK_REPORT.chip_id, bootloader=3, tee=0, snp=8, microcode=115, product_name="Milan-B0")
    both = table((VCEK, der(vcek.vcek)), (VLEK, der(vlek.vcek)))
    lookup = find_vcek(VLEK_REPORT, cert_table=both, product="milan")
    assert same(lookup, der(vlek.vcek)) and lookup.reason == "the VLEK from the host's certificate table"
    missing = find_vcek(VLEK_REPORT, cert_table=table((VCEK, der(vcek.vcek))), product="milan")
    assert missing.cert is None
    assert "no VLEK found: the host's certificate table has no VLEK entry (it holds VCEK)" in missing.reason


def test_vlek_table_asvk_is_compared_with_the_pinned_asvk() -> None:
    vlek = make_forge(hwid=None)
    lookup = find_vcek(VLEK_REPORT, cert_table=table((VLEK, der(vlek.vcek)), (ASK, der(vlek.ask))), product="milan")
    assert same(lookup, der(vlek.vcek))
    assert "the table's ASVK is not AMD's pinned milan ASVK: ignored" in lookup.reason
    amds = find_vcek(VLEK_REPORT, cert_table=table((VLEK, der(vlek.vcek)), (ASK, ASVK_DER), (ARK, ARK_DER)),
                     product="milan")
    assert amds.reason == "the VLEK from the host's certificate table"


def test_vlek_chain_check_is_unknown_naming_the_missing_asvk() -> None:
    """With only an ASK chain given, a VLEK-signed report's chain is never ok: it needs an ASVK."""
    vlek = make_forge(hwid=None)
    signed = parse_report(vlek.sign(make_report(signer_info=1 << 2)))
    verdict = verify_snp_report(signed, vlek.vcek, {"test": vlek.chain()}, vlek.anchors(), product="milan")
    chain = verdict.check("chain")
    assert verdict.check("signature").state == "ok"
    assert chain.state == "unknown" and chain.reason.startswith("no ASVK/ARK given to check the VLEK against")
    assert not verdict.ok


def test_vlek_directory_layout(tmp_path: Path) -> None:
    vlek = make_forge(hwid=None)
    put(tmp_path, "milan/vlek/0000000000000000.der", b"")  # another TCB's slot stays unread
    path = store_vek(tmp_path, VLEK_REPORT, "milan", der(vlek.vcek))
    assert path == tmp_path / "milan" / "vlek" / f"{VLEK_REPORT.reported_tcb.raw:016x}.der"
    lookup = find_vcek(VLEK_REPORT, cert_dir=tmp_path, product="milan")
    assert same(lookup, der(vlek.vcek)) and lookup.source == SOURCE_DIR


# -- the directory ---------------------------------------------------------------------

def test_directory_layout_found_without_a_product(tmp_path: Path) -> None:
    path = put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", VCEK_DER)
    lookup = find_vcek(REPORT, cert_dir=tmp_path)
    assert same(lookup, VCEK_DER) and lookup.source == SOURCE_DIR
    assert lookup.reason == f"the VCEK from the certificate directory ({path}); no certificate table given"


def test_directory_reads_pem_too(tmp_path: Path) -> None:
    from pytest_sev.attest.snp_kds import der_certificate
    put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", der_certificate(VCEK_DER, "vcek").public_bytes(Encoding.PEM))
    assert same(find_vcek(REPORT, cert_dir=tmp_path, product="milan"), VCEK_DER)


def test_directory_of_another_product_or_tcb_is_not_read(tmp_path: Path) -> None:
    put(tmp_path, f"genoa/{CHIP_HEX}/{TCB_FILE}", VCEK_DER)
    put(tmp_path, f"milan/{CHIP_HEX}/4405000000000003.der", VCEK_DER)
    lookup = find_vcek(REPORT, cert_dir=tmp_path, product="milan")
    assert lookup.cert is None and lookup.source == SOURCE_NONE
    assert lookup.reason == (f"no VCEK found: no certificate table given; no VCEK in the certificate directory {tmp_path} "
                             f"(looked for milan/{CHIP_HEX}/{TCB_FILE})")


def test_directory_miss_names_every_product_tried(tmp_path: Path) -> None:
    lookup = find_vcek(REPORT, cert_dir=tmp_path)
    assert lookup.cert is None
    assert f"looked for milan/{CHIP_HEX}/{TCB_FILE}, genoa/{CHIP_HEX}/{TCB_FILE})" in lookup.reason
    assert "turin: no place in the certificate directory: the report's CHIP_ID has bytes after the eighth" in lookup.reason


def test_turin_directory_uses_the_8_byte_hwid(tmp_path: Path) -> None:
    chip = bytes(range(0xA1, 0xA9)) + bytes(56)
    report = parse_report(make_report(reported_tcb=tcb_turin(1, 9, 2, 24, 72), chip_id=chip, version=3,
                                      cpuid=(0x1A, 0x02, 0x00)))
    forge = make_forge(fmc=1, bootloader=9, tee=2, snp=24, microcode=72, product_name="Turin-B0", hwid=chip[:8],
                       hwid_octet_string=True)
    path = store_vek(tmp_path, report, "turin", der(forge.vcek))
    assert path == tmp_path / "turin" / "a1a2a3a4a5a6a7a8" / f"{tcb_turin(1, 9, 2, 24, 72):016x}.der"
    lookup = find_vcek(report, cert_dir=tmp_path)  # the CPUID bytes say Turin
    assert same(lookup, der(forge.vcek)) and "NOT" not in lookup.reason


def test_masked_chip_id_and_missing_directory(tmp_path: Path) -> None:
    masked = parse_report(make_report(chip_id=bytes(64)))
    lookup = find_vcek(masked, cert_dir=tmp_path, product="milan")
    assert lookup.cert is None and "milan: no place in the certificate directory: the report's CHIP_ID is masked" \
        in lookup.reason
    gone = find_vcek(REPORT, cert_dir=tmp_path / "nope")
    assert gone.cert is None and f"the certificate directory {tmp_path / 'nope'} is not a directory" in gone.reason


def test_corrupt_file_in_the_directory_is_named(tmp_path: Path) -> None:
    put(tmp_path, f"milan/{CHIP_HEX}/{TCB_FILE}", b"garbage")
    lookup = find_vcek(REPORT, cert_dir=tmp_path, product="milan")
    assert lookup.cert is None and "is not an X.509 certificate" in lookup.reason


def test_nothing_given() -> None:
    lookup = find_vcek(REPORT)
    assert lookup == VcekLookup(None, SOURCE_NONE,
                                "no VCEK found: no certificate table given; no certificate directory given")


def test_unsigned_report_and_unknown_product() -> None:
    unsigned = parse_report(make_report(signer_info=7 << 2))
    lookup = find_vcek(unsigned, cert_table=table((VCEK, VCEK_DER)))
    assert lookup.cert is None and lookup.reason.startswith("the report is not signed")
    with pytest.raises(CertDirError, match="not signed"):
        cert_path("/tmp", unsigned, "milan")
    with pytest.raises(FormatError, match="unknown SNP product 'rome'"):
        find_vcek(REPORT, product="rome")


def test_store_is_atomic_and_overwrites(tmp_path: Path) -> None:
    first = store_vek(tmp_path, REPORT, "milan", b"old")
    second = store_vek(tmp_path, REPORT, "milan", VCEK_DER)
    assert first == second == tmp_path / "milan" / CHIP_HEX / TCB_FILE
    assert second.read_bytes() == VCEK_DER
    assert sorted(p.name for p in second.parent.iterdir()) == [TCB_FILE]  # no temporary left


def test_store_into_an_unwritable_place_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "milan").write_text("a file where a directory should be")
    with pytest.raises(CertDirError, match="cannot write"):
        store_vek(tmp_path, REPORT, "milan", VCEK_DER)


def test_lookup_is_frozen() -> None:
    lookup = find_vcek(REPORT)
    with pytest.raises(AttributeError):
        lookup.cert = None  # type: ignore[misc]
