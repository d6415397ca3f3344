"""KNOWN-ANSWER tests for SEV-SNP launch digests: every SNP case of snp-kat/kat.json, reproduced exactly.

The expected digests come from virtee/sev-snp-measure's own test suite
(commit 8f2b337, ``tests/test_guest.py``) and are read from kat.json here,
never recomputed by the code under test. The OVMF inputs are the kat's
4 KiB footers (``ovmf_*_suffix.bin``), fed as whole OVMF images: the
upstream cases measure exactly that file, placed so it ends at 4 GiB. A
kernel/initrd of "empty" is a zero-length file (/dev/null), ``null`` none.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from pytest_sev.attest.errors import MeasureError
from pytest_sev.attest.snp_measure import (
    SnpLaunchInputs,
    describe_guest_features,
    parse_guest_features,
    parse_ovmf_hash,
    snp_id_block,
    snp_launch_digest,
    snp_ovmf_facts,
    snp_ovmf_hash,
    vmm_type_of,
)

_HERE = Path(__file__).resolve()
#: the known answers, in the checkout
KAT_DIR = _HERE.parents[1] / "fixtures" / "snp-kat"  # copied unchanged from shared/data/snp-kat
KAT = json.loads((KAT_DIR / "kat.json").read_text())
SNP_CASES = [c for c in KAT["digests"]["cases"] if c["mode"] == "snp"]
AMDSEV = str(KAT_DIR / "ovmf_AmdSev_suffix.bin")
OVMFX64 = str(KAT_DIR / "ovmf_OvmfX64_suffix.bin")


def _file(value: str | None) -> str | None:
    """kat.json's "empty" is a zero-length file; ``null`` is no file at all."""
    return "/dev/null" if value == "empty" else value


def case_inputs(case: dict, *, with_ovmf_hash: bool = True) -> SnpLaunchInputs:
    """The launch a kat.json case describes, in this package's terms."""
    given = case.get("snp_ovmf_hash") if with_ovmf_hash else None
    return SnpLaunchInputs(str(KAT_DIR / case["ovmf"]), case["vcpus"], case["vcpu_type"],
                           int(case["guest_features"], 16), vmm_type_of(case["vmm_type"]),
                           _file(case["kernel"]), _file(case["initrd"]), case["append"],
                           ovmf_hash=bytes.fromhex(given) if given else None)


# ---------------------------------------------------------------- the known answers


@pytest.mark.parametrize("case", SNP_CASES, ids=[c["name"] for c in SNP_CASES])
def test_snp_launch_digest(case: dict) -> None:
    """Known-answer: sev-snp-measure's upstream digest for the case (QEMU, EC2 and GCE VMM types),
    or, for OvmfX64 with a kernel, its refusal with the upstream reason."""
    if "expect_error" in case:
        with pytest.raises(MeasureError, match=re.escape(case["expect_error"])) as refused:
            snp_launch_digest(case_inputs(case))
        assert "AmdSevX64" in str(refused.value)  # and says which OVMF build can
    else:
        assert snp_launch_digest(case_inputs(case)).hex() == case["digest"]


@pytest.mark.parametrize("case", [c for c in SNP_CASES if c.get("snp_ovmf_hash")],
                         ids=[c["name"] for c in SNP_CASES if c.get("snp_ovmf_hash")])
def test_snp_ovmf_hash_of_the_file(case: dict) -> None:
    """Known-answer: the OVMF-pages digest upstream computed from the same footer file; measuring
    the file itself then gives the case's digest too (the given hash is not needed)."""
    assert snp_ovmf_hash(str(KAT_DIR / case["ovmf"])).hex() == case["snp_ovmf_hash"]
    assert snp_launch_digest(case_inputs(case, with_ovmf_hash=False)).hex() == case["digest"]


def test_id_block() -> None:
    """Known-answer: the id-block for kat.json's launch digest with the test keys (the id-auth
    signatures use a random nonce: only the id-block and the key digests are fixed)."""
    kat = KAT["id_block"]
    block = snp_id_block(base64.b64decode(kat["launch_digest_b64"]), str(KAT_DIR / kat["id_key"]),
                         str(KAT_DIR / kat["author_key"]))
    text = "\n".join(block.lines())
    for expected in kat["expect_contains"]:
        assert expected in text
    assert block.qemu_properties.startswith("id-block=") and ",id-auth=" in block.qemu_properties


def test_every_snp_case_is_covered() -> None:
    """kat.json holds the 17 SNP cases this file runs, with each VMM type and the one refusal."""
    assert len(SNP_CASES) == 17 and len({c["name"] for c in SNP_CASES}) == 17
    assert {vmm_type_of(c["vmm_type"]) for c in SNP_CASES} == {"qemu", "ec2", "gce"}
    assert sum("expect_error" in c for c in SNP_CASES) == 1


# ---------------------------------------------------------------- what the digest depends on


def _default_case() -> dict:
    return next(c for c in SNP_CASES if c["name"] == "test_snp_default")


def test_one_flipped_ovmf_byte_changes_the_digest(tmp_path: Path) -> None:
    """The OVMF pages are measured, not only its footer: a byte flipped in the code area (before the
    footer table) leaves the file a valid OVMF but no longer gives the known digest."""
    data = bytearray(Path(AMDSEV).read_bytes())
    data[16] ^= 0x01
    changed = tmp_path / "ovmf.bin"
    changed.write_bytes(bytes(data))
    case = _default_case()
    inputs = case_inputs(case)
    snp_ovmf_facts(str(changed))
    moved = SnpLaunchInputs(str(changed), inputs.vcpus, inputs.vcpu_type, inputs.guest_features,
                            inputs.vmm_type, inputs.kernel, inputs.initrd, inputs.append)
    assert snp_launch_digest(moved).hex() != case["digest"]


def test_ovmf_facts_of_the_two_builds() -> None:
    """The AmdSev footer lists a kernel-hashes page, the OvmfX64 one does not; both have the
    secrets and CPUID pages and an AP reset vector."""
    amdsev, x64 = snp_ovmf_facts(AMDSEV), snp_ovmf_facts(OVMFX64)
    assert amdsev.kernel_hashes and not x64.kernel_hashes
    for facts in (amdsev, x64):
        assert {"SNP_SECRETS", "CPUID", "SNP_SEC_MEM"} <= {s.kind for s in facts.sections}
        assert facts.ap_reset_eip and facts.size == 4096


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("path, text", [
    ("/etc/passwd", "is not an OVMF image"),
    ("/nonexistent/OVMF.fd", "cannot read OVMF"),
])
def test_not_an_ovmf(path: str, text: str) -> None:
    with pytest.raises(MeasureError, match=text):
        snp_launch_digest(SnpLaunchInputs(path, 1, "EPYC-v4", 0x1))


def test_pages_without_footer_table(tmp_path: Path) -> None:
    """Whole pages of zeros: no footer table, so no SEV-ES reset block to start the APs from."""
    blank = tmp_path / "blank.fd"
    blank.write_bytes(bytes(8192))
    with pytest.raises(MeasureError, match="no SEV-ES reset block"):
        snp_ovmf_facts(str(blank))


def test_ovmf_without_sev_metadata(tmp_path: Path) -> None:
    """An OVMF whose footer table lacks the SEV metadata entry (its GUID overwritten) is refused:
    QEMU could not place the secrets and CPUID pages."""
    data = Path(AMDSEV).read_bytes()
    guid = bytes.fromhex("666588dc4a989847a75e5585a7bf67cc")  # dc886566-984a-4798-a75e-5585a7bf67cc, little-endian
    assert data.count(guid) == 1
    stripped = tmp_path / "nometa.fd"
    stripped.write_bytes(data.replace(guid, bytes(16)))
    with pytest.raises(MeasureError, match="no SEV metadata"):
        snp_ovmf_facts(str(stripped))


@pytest.mark.parametrize("text, message", [
    ("21", "0x prefix"), ("0xZZ", "0x prefix"), ("", "0x prefix"), ("0x20", "SNPActive"),
    ("0x1" + "0" * 16, "64-bit"),
])
def test_guest_features_refused(text: str, message: str) -> None:
    with pytest.raises(MeasureError, match=message):
        parse_guest_features(text)


def test_guest_features_named() -> None:
    assert parse_guest_features("0x21") == 0x21 and parse_guest_features(" 0X1 ") == 0x1
    assert describe_guest_features(0x21) == "0x21 (SNPActive, DebugSwap)"


@pytest.mark.parametrize("change, message", [
    ({"vcpus": 0}, "at least 1"),
    ({"kernel": None, "initrd": "/dev/null"}, "only measured together with a kernel"),
    ({"guest_features": 0x20}, "SNPActive"),
    ({"vcpu_type": None}, "vCPU signature"),
    ({"vcpu_type": "Pentium"}, "unknown vCPU type"),
    ({"ovmf_hash": b"\x00" * 32}, "48 bytes"),
    ({"kernel": "/nonexistent/vmlinuz"}, "cannot read an input"),
])
def test_inputs_refused(change: dict, message: str) -> None:
    fields = dict(ovmf=AMDSEV, vcpus=1, vcpu_type="EPYC-v4", guest_features=0x1, kernel="/dev/null")
    fields.update(change)
    with pytest.raises(MeasureError, match=message):
        snp_launch_digest(SnpLaunchInputs(**fields))  # type: ignore[arg-type]


def test_unknown_vmm_type_and_bad_hash_text() -> None:
    with pytest.raises(MeasureError, match="unknown VMM type"):
        vmm_type_of("xen")
    with pytest.raises(MeasureError, match="96 hex digits"):
        parse_ovmf_hash("zz")
    assert vmm_type_of("QEMU") == "qemu"


def test_id_block_refuses_wrong_digest_and_keys(tmp_path: Path) -> None:
    kat = KAT["id_block"]
    with pytest.raises(MeasureError, match="48 bytes"):
        snp_id_block(bytes(32), str(KAT_DIR / kat["id_key"]), str(KAT_DIR / kat["author_key"]))
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("not a key\n")
    with pytest.raises(MeasureError, match="P-384"):
        snp_id_block(bytes(48), str(not_a_key), str(KAT_DIR / kat["author_key"]))
