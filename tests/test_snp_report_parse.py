"""The SNP attestation report parser: the real Milan report's fields are kat.json's, bad reports are refused.

Known answers: ``snp-kat/kat.json`` ``reports`` records the version, policy,
reported TCB, measurement and chip id read from google/go-sev-guest's real
Milan report; the parser must read the same values. Versions: 2, 3, 4 and 5
are accepted (go-sev-guest ``abi.MinSupportedReportVersion``/``Max...``,
virtee/sev ``ReportVariant``), others refused, and each version's own fields
(CPUID from 3, mitigation vectors from 5) are reserved (must be zero) before it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from snp_report_forge import make_report, tcb_legacy, tcb_turin

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.snp_report import REPORT_SIZE, TcbVersion, check_policy, parse_report

_HERE = Path(__file__).resolve()
KAT_DIR = _HERE.parents[1] / "fixtures" / "snp-kat"  # copied unchanged from shared/data/snp-kat
KAT_REPORTS = json.loads((KAT_DIR / "kat.json").read_text())["reports"]


@pytest.mark.parametrize("case", KAT_REPORTS, ids=lambda c: c["file"])
def test_real_report_fields_are_the_known_answers(case: dict) -> None:
    report = parse_report((KAT_DIR / case["file"]).read_bytes())
    assert report.version == case["version"]
    assert report.policy.raw == int(case["policy"], 16)
    assert report.reported_tcb.raw == int(case["reported_tcb"], 16)
    assert report.measurement.hex() == case["measurement"]
    assert report.chip_id.hex() == case["chip_id"]


def test_real_milan_report_decoded() -> None:
    """Policy 0xB0000 is SMT + reserved bit 17 + DEBUG; TCB 0x4405000000000002 is bl 2, tee 0, snp 5, ucode 0x44."""
    report = parse_report((KAT_DIR / "reports" / "gosev-milan-report.bin").read_bytes())
    assert (report.policy.smt, report.policy.debug, report.policy.migrate_ma, report.policy.single_socket) == \
        (True, True, False, False)
    assert (report.policy.abi_major, report.policy.abi_minor) == (0, 0)
    assert report.reported_tcb.components("milan") == {"bootloader": 2, "tee": 0, "snp": 5, "microcode": 0x44}
    assert report.vmpl == 0 and report.signature_algo == 1
    assert report.signer.signing_key == "VCEK" and not report.signer.mask_chip_key
    assert report.report_data[:5] == bytes([1, 2, 3, 4, 5]) and not any(report.report_data[5:])
    assert report.cpuid_fms is None and report.launch_mit_vector is None
    assert report.current_version == (1, 0x31, 3)
    assert len(report.signed_bytes) == 0x2A0
    assert report.signature_r.to_bytes(72, "little") == report.raw[0x2A0:0x2E8]


def test_hex_text_reads_like_raw() -> None:
    raw = (KAT_DIR / "reports" / "gosev-milan-report.bin").read_bytes()
    text = "0x" + "\n".join(raw.hex()[i:i + 64] for i in range(0, len(raw) * 2, 64)) + "\n"
    assert parse_report(text.encode()) == parse_report(raw)
    assert parse_report(raw.hex().upper()) == parse_report(raw)


@pytest.mark.parametrize("data, words", [
    (bytes(100), "0x4a0 bytes"),
    (bytes(REPORT_SIZE + 1), "got 1185 bytes"),
    ("zz" * REPORT_SIZE, "not hex"),
])
def test_wrong_size_or_text_refused(data: bytes | str, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        parse_report(data)


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_known_versions_accepted(version: int) -> None:
    assert parse_report(make_report(version=version)).version == version


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_unknown_versions_refused(version: int) -> None:
    with pytest.raises(FormatError, match=f"report version {version} is not supported"):
        parse_report(make_report(version=version))


def test_version_3_reads_cpuid_version_2_refuses_it() -> None:
    """The CPUID bytes at 0x188 exist from version 3; in a version-2 report they are reserved."""
    v3 = parse_report(make_report(version=3, cpuid=(0x19, 0x11, 0x01)))
    assert v3.cpuid_fms == (0x19, 0x11, 0x01) and v3.product_from_cpuid() == "genoa"
    assert parse_report(make_report(version=3, cpuid=(0x19, 0x01, 0x01))).product_from_cpuid() == "milan"
    assert parse_report(make_report(version=3, cpuid=(0x1A, 0x02, 0x00))).product_from_cpuid() == "turin"
    assert parse_report(make_report(version=3, cpuid=(0x17, 0x31, 0x00))).product_from_cpuid() is None
    with pytest.raises(FormatError, match="0x188..0x1a0 .*version 2 has no CPUID"):
        parse_report(make_report(version=2, cpuid=(0x19, 0x11, 0x01)))


def test_version_5_reads_mitigation_vectors_version_4_refuses_them() -> None:
    v5 = parse_report(make_report(version=5, cpuid=(0x1A, 0x02, 0x00), mit_vectors=(0x3, 0x7)))
    assert (v5.launch_mit_vector, v5.current_mit_vector) == (3, 7)
    assert parse_report(make_report(version=3)).launch_mit_vector is None
    with pytest.raises(FormatError, match="version 4 has no mitigation vectors"):
        parse_report(make_report(version=4, mit_vectors=(0x3, 0x7)))


@pytest.mark.parametrize("policy, words", [
    (0x10000, "reserved bit 17 must be 1"),
    (0x30000 | 1 << 26, "reserved bits 26..63"),
])
def test_policy_the_firmware_cannot_launch_refused(policy: int, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        parse_report(make_report(policy=policy))
    with pytest.raises(FormatError, match=words):
        check_policy(policy)


def test_policy_bits_named() -> None:
    p = check_policy(0x30000 | 1 << 18 | 1 << 19 | 1 << 20 | 0x0155)
    assert (p.smt, p.migrate_ma, p.debug, p.single_socket) == (True, True, True, True)
    assert (p.abi_major, p.abi_minor) == (1, 0x55)
    assert check_policy(0x20000).flags() == dict.fromkeys(p.flags(), False)


@pytest.mark.parametrize("signer_info, words", [
    (2 << 2, "SIGNING_KEY 2 is reserved"),
    (1 << 5, "reserved bits 5..31"),
])
def test_signer_info_reserved_refused(signer_info: int, words: str) -> None:
    with pytest.raises(FormatError, match=words):
        parse_report(make_report(signer_info=signer_info))


def test_signer_info_decoded() -> None:
    r = parse_report(make_report(signer_info=1 | 2 | 1 << 2))
    assert (r.signer.author_key_en, r.signer.mask_chip_key, r.signer.signing_key) == (True, True, "VLEK")
    assert parse_report(make_report(signer_info=7 << 2)).signer.signing_key == "none"


def test_bytes_after_the_ecdsa_signature_must_be_zero() -> None:
    raw = bytearray(make_report())
    raw[0x4A0 - 1] = 1
    with pytest.raises(FormatError, match="after the ECDSA signature"):
        parse_report(bytes(raw))


def test_tcb_layouts_per_product() -> None:
    """Milan/Genoa: bytes 0, 1, 6, 7; Turin: FMC in byte 0 and bootloader, TEE, SNP in 1, 2, 3."""
    legacy = TcbVersion(tcb_legacy(bootloader=9, tee=1, snp=22, microcode=0xD5))
    assert legacy.components("milan") == legacy.components("genoa") == \
        {"bootloader": 9, "tee": 1, "snp": 22, "microcode": 0xD5}
    turin = TcbVersion(tcb_turin(fmc=1, bootloader=4, tee=2, snp=3, microcode=0x48))
    assert turin.components("turin") == {"fmc": 1, "bootloader": 4, "tee": 2, "snp": 3, "microcode": 0x48}
    assert TcbVersion(0x4405000000000002).raw.to_bytes(8, "little") == bytes([2, 0, 0, 0, 0, 0, 5, 0x44])
    with pytest.raises(FormatError, match="no TCB layout"):
        legacy.components("rome")


def test_report_fields_at_their_offsets() -> None:
    """Every field read from the offset the forge wrote it at (the forge spells offsets out itself)."""
    raw = bytearray(make_report(version=5, policy=0x31234, vmpl=2, report_data=bytes(range(64)),
                                cpuid=(0x1A, 2, 1), mit_vectors=(5, 6)))
    raw[0x10:0x20] = b"F" * 16
    raw[0x20:0x30] = b"I" * 16
    raw[0xC0:0xE0] = b"H" * 32
    raw[0xE0:0x110] = b"K" * 48
    raw[0x110:0x140] = b"A" * 48
    raw[0x140:0x160] = b"R" * 32
    raw[0x160:0x180] = b"M" * 32
    struct.pack_into("<Q", raw, 0x40, 0x25)
    r = parse_report(bytes(raw))
    assert (r.family_id, r.image_id, r.host_data, r.id_key_digest, r.author_key_digest, r.report_id, r.report_id_ma) \
        == (b"F" * 16, b"I" * 16, b"H" * 32, b"K" * 48, b"A" * 48, b"R" * 32, b"M" * 32)
    assert (r.policy.raw, r.vmpl, r.platform_info, r.guest_svn) == (0x31234, 2, 0x25, 1)
    assert r.report_data == bytes(range(64)) and r.measurement == bytes(range(48))


@pytest.mark.parametrize("bit, name", [(16, "smt"), (18, "migrate_ma"), (19, "debug"), (20, "single_socket"),
                                       (21, "cxl_allow"), (22, "mem_aes_256_xts"), (23, "rapl_dis"),
                                       (24, "ciphertext_hiding"), (25, "page_swap_disable")])
def test_report_policy_flags_use_the_launch_table_names(bit, name):
    """A report and a launch (sev/policy.SNP_POLICY_BITS) name each policy bit alike."""
    flags = check_policy(0x20000 | 1 << bit).flags()
    assert flags[name] is True
    assert [k for k, v in flags.items() if v] == [name]


@pytest.mark.parametrize("bit", [26, 40, 63])
def test_report_policy_bits_the_table_does_not_name_are_refused(bit):
    with pytest.raises(FormatError, match="must be zero"):
        check_policy(0x30000 | 1 << bit)
