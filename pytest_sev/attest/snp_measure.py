"""Expected SEV-SNP launch digests (and id-blocks), computed with virtee's ``sev-snp-measure``.

Why: QEMU gives no launch measurement for SNP guests, so the only proof of
what was launched is the MEASUREMENT field of the guest's attestation
report, and the owner must know in advance which value to expect. The PSP
chains a SHA-384 over every page QEMU hands it with SNP_LAUNCH_UPDATE: the
OVMF image placed so that it ends at 4 GiB (QEMU's ``-bios``), the pages
OVMF's SEV metadata lists (zero pages, the secrets page, the CPUID page, the
kernel-hashes page of an AmdSev build started with ``kernel-hashes=on``),
then one VMSA per vCPU whose SEV_FEATURES word is the guest features.
sev-snp-measure is an independent, widely used implementation of that
layout; this module chooses its inputs and refuses inputs that no SNP
launch can have (a file that is not an SNP-capable OVMF, features without
SNPActive, a kernel without a kernel-hashes page).

VMM types: QEMU, AWS EC2 and Google GCE start vCPUs with slightly different
register state (EC2 and GCE put a fixed 0x600 in RDX instead of the vCPU
signature, GCE leaves the SNP_SEC_MEM pages unmeasured, EC2 adds the CPUID
page last), so the same OVMF gives a different digest per VMM.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

from sevsnpmeasure import guest as _guest
from sevsnpmeasure import id_block as _id_block
from sevsnpmeasure.ovmf import OVMF
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vmm_types import VMMType

from .errors import MeasureError
from .measure import load_ovmf, vcpu_signature

VmmType = Literal["qemu", "ec2", "gce"]
VMM_TYPES: tuple[str, ...] = ("qemu", "ec2", "gce")
_VMM_OF: dict[str, VMMType] = {"qemu": VMMType.QEMU, "ec2": VMMType.ec2, "gce": VMMType.gce}

PAGE = 4096
DIGEST_LEN = 48  #: SHA-384
SNP_ACTIVE = 0x1  #: SEV_FEATURES bit 0: every SNP vCPU has it
#: SEV_FEATURES bits of the VMSA (SEV_STATUS MSR bits 2.. in the guest: bit n here is bit n+2 there)
GUEST_FEATURE_BITS: dict[int, str] = {
    0: "SNPActive", 1: "vTOM", 2: "ReflectVC", 3: "RestrictedInjection", 4: "AlternateInjection",
    5: "DebugSwap", 6: "PreventHostIBS", 7: "BTBIsolation", 8: "VmplSSS", 9: "SecureTSC",
    10: "VmgexitParameter", 12: "IbsVirtualization", 14: "VmsaRegProt", 15: "SmtProtection",
}
#: what the library raises for a kernel on an OVMF without a kernel-hashes page
KERNEL_HASHES_HINT = ("QEMU cannot measure a -kernel/-initrd/-append into this OVMF; "
                      "measured direct boot needs the AmdSevX64 OVMF build")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+")


def parse_guest_features(text: str) -> int:
    """The guest-features word from its hex spelling (``0x1``, ``0x21``).

    Why strict: ``21`` could mean 0x21 or decimal 21 (0x15: SNPActive plus
    ReflectVC and AlternateInjection), two different digests; only the
    ``0x`` spelling is taken, and a word without SNPActive is refused because
    no SNP vCPU starts without it.
    """
    if not _HEX.fullmatch(text.strip()):
        raise MeasureError(f"guest features must be hex with a 0x prefix, e.g. 0x1 or 0x21: got {text!r}")
    features = int(text.strip(), 16)
    check_guest_features(features)
    return features


def check_guest_features(features: int) -> None:
    """Refuse a SEV_FEATURES word that no SNP vCPU can have."""
    if not 0 <= features < 1 << 64:
        raise MeasureError(f"guest features {features:#x} do not fit the 64-bit SEV_FEATURES word")
    if not features & SNP_ACTIVE:
        raise MeasureError(f"guest features {features:#x} lack bit 0 (SNPActive), which every SNP vCPU has")


def describe_guest_features(features: int) -> str:
    """``0x21 (SNPActive, DebugSwap)``: the word with the names of its bits."""
    names = [GUEST_FEATURE_BITS.get(bit, f"bit {bit}") for bit in range(64) if features >> bit & 1]
    return f"{features:#x} ({', '.join(names) or 'none'})"


def vmm_type_of(name: str) -> VmmType:
    """``qemu``/``ec2``/``gce`` from any capitalisation (kat.json says ``QEMU`` and ``ec2``)."""
    key = name.strip().lower()
    if key not in VMM_TYPES:
        raise MeasureError(f"unknown VMM type {name!r}: expected one of {', '.join(VMM_TYPES)}")
    return key  # type: ignore[return-value]


@dataclass(frozen=True)
class SnpLaunchInputs:
    """What an SNP launch measures; every field enters the digest (``vcpu_type`` only under QEMU)."""

    ovmf: str
    vcpus: int = 1
    vcpu_type: str | None = "EPYC"
    guest_features: int = SNP_ACTIVE
    vmm_type: VmmType = "qemu"
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    vcpu_sig: int | None = None  #: overrides the signature of ``vcpu_type``
    ovmf_hash: bytes | None = None  #: the OVMF pages' digest given instead of hashing the file

    def signature_measured(self) -> bool:
        """Only QEMU puts the vCPU signature into the VMSA (RDX); EC2 and GCE put 0x600."""
        return self.vmm_type == "qemu"

    def signature(self) -> int:
        if self.vcpu_sig is not None:
            return self.vcpu_sig
        if self.vcpu_type:
            return vcpu_signature(self.vcpu_type)
        if self.signature_measured():
            raise MeasureError("under QEMU each VMSA carries the vCPU signature: give a vCPU type or signature")
        return 0

    def describe_vcpus(self) -> str:
        if not self.signature_measured():
            return f"{self.vcpus} vCPU(s), {self.vmm_type} VMM (RDX 0x600: the vCPU type is not measured)"
        return f"{self.vcpus} x {self.vcpu_type or 'custom'} (signature {self.signature():#x}), {self.vmm_type} VMM"

    def describe_kernel(self) -> str:
        if not self.kernel:
            return "none"
        return f"kernel {self.kernel} initrd {self.initrd or '(none)'} append {self.append or ''!r}"


@dataclass(frozen=True)
class MetadataSection:
    """One entry of OVMF's SEV metadata: a range SNP_LAUNCH_UPDATE measures in its own way."""

    kind: str  #: SNP_SEC_MEM, SNP_SECRETS, CPUID, SVSM_CAA, SNP_KERNEL_HASHES
    gpa: int
    size: int

    def describe(self) -> str:
        return f"{self.kind} {self.gpa:#x}+{self.size:#x}"


@dataclass(frozen=True)
class SnpOvmfFacts:
    """What an OVMF image offers to SNP launches: its size, reset vector and metadata sections."""

    path: str
    size: int
    sha256: str
    ap_reset_eip: int
    sections: tuple[MetadataSection, ...]

    @property
    def kernel_hashes(self) -> bool:
        return any(s.kind == "SNP_KERNEL_HASHES" for s in self.sections)

    def describe(self) -> str:
        return (f"{self.path}: {self.size} bytes sha256 {self.sha256}; AP reset vector {self.ap_reset_eip:#x}; "
                f"kernel-hashes page {'yes' if self.kernel_hashes else 'no'}; "
                f"SEV metadata: {', '.join(s.describe() for s in self.sections)}")


def snp_ovmf_facts(path: str) -> SnpOvmfFacts:
    """Read ``path`` as an SNP-capable OVMF, or say why it is not one.

    Why refuse early: sev-snp-measure would hash any file of whole pages,
    but QEMU cannot finish an SNP launch without the metadata that places
    the secrets and CPUID pages, nor start the other vCPUs without the SEV-ES
    reset block, so a digest for such a file would match no launch.
    """
    ovmf = load_ovmf(path)
    if ovmf.size() == 0 or ovmf.size() % PAGE:
        raise MeasureError(f"{path} is not an OVMF image: {ovmf.size()} bytes, not whole 4 KiB pages")
    try:
        eip = ovmf.sev_es_reset_eip()
    except RuntimeError:
        raise MeasureError(f"{path} is not an OVMF that can start SNP vCPUs: its footer table "
                           "has no SEV-ES reset block") from None
    sections = _metadata_sections(ovmf, path)
    if not sections:
        raise MeasureError(f"OVMF {path} has no SEV metadata (the 'ASEV' section list that places the "
                           "secrets and CPUID pages): it cannot launch an SNP guest")
    return SnpOvmfFacts(path, ovmf.size(), hashlib.sha256(ovmf.data()).hexdigest(), eip, sections)


def _metadata_sections(ovmf: OVMF, path: str) -> tuple[MetadataSection, ...]:
    try:
        return tuple(MetadataSection(d.section_type().name, d.gpa, d.size) for d in ovmf.metadata_items())
    except ValueError as exc:
        raise MeasureError(f"OVMF {path}: unknown SEV metadata section ({exc})") from exc


def snp_ovmf_hash(path: str) -> bytes:
    """The launch digest after the OVMF pages alone (sev-snp-measure's ``snp:ovmf-hash``).

    Why: a fleet that ships one OVMF publishes this value once; the digest of
    each launch then needs only the OVMF's footer, not the whole image.
    """
    snp_ovmf_facts(path)
    return bytes(_guest.calc_snp_ovmf_hash(path))


def snp_launch_digest(inputs: SnpLaunchInputs) -> bytes:
    """The 48-byte SNP launch digest the PSP computes for ``inputs`` (the report's MEASUREMENT)."""
    _check_inputs(inputs)
    facts = snp_ovmf_facts(inputs.ovmf)
    try:
        digest = _guest.calc_launch_digest(
            SevMode.SEV_SNP, inputs.vcpus, inputs.signature(), inputs.ovmf, inputs.kernel, inputs.initrd,
            inputs.append, inputs.guest_features, inputs.ovmf_hash.hex() if inputs.ovmf_hash else "",
            _VMM_OF[inputs.vmm_type])
    except OSError as exc:
        raise MeasureError(f"cannot read an input: {exc}") from exc
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise MeasureError(f"{exc}{_kernel_hint(inputs, facts)}") from exc
    return bytes(digest)


def _kernel_hint(inputs: SnpLaunchInputs, facts: SnpOvmfFacts) -> str:
    return f" ({facts.path}: {KERNEL_HASHES_HINT})" if inputs.kernel and not facts.kernel_hashes else ""


def _check_inputs(inputs: SnpLaunchInputs) -> None:
    if inputs.vcpus < 1:
        raise MeasureError(f"vcpus must be at least 1, got {inputs.vcpus}")
    if (inputs.initrd or inputs.append) and not inputs.kernel:
        raise MeasureError("an initrd or a command line is only measured together with a kernel")
    if inputs.vmm_type not in VMM_TYPES:
        raise MeasureError(f"unknown VMM type {inputs.vmm_type!r}: expected one of {', '.join(VMM_TYPES)}")
    check_guest_features(inputs.guest_features)
    if inputs.ovmf_hash is not None and len(inputs.ovmf_hash) != DIGEST_LEN:
        raise MeasureError(f"an OVMF hash is {DIGEST_LEN} bytes (SHA-384), got {len(inputs.ovmf_hash)}")


def parse_ovmf_hash(text: str) -> bytes:
    """A precomputed OVMF hash from its 96 hex digits."""
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        raise MeasureError(f"an OVMF hash is {DIGEST_LEN * 2} hex digits, got {text!r}") from None
    if len(value) != DIGEST_LEN:
        raise MeasureError(f"an OVMF hash is {DIGEST_LEN} bytes (SHA-384), got {len(value)}")
    return value


@dataclass(frozen=True)
class SnpIdBlock:
    """An id-block and id-auth for QEMU's ``sev-snp-guest``, with the key digests a report carries.

    Why: with an id-block the PSP refuses to launch unless the digest equals
    the one the owner signed, so a wrong OVMF fails at launch, not only at
    attestation. The id-block's policy is sev-snp-measure's fixed 0x30000
    (QEMU's default policy): a launch with another policy is refused.
    """

    qemu_properties: str  #: ``id-block=...,id-auth=...`` (base64)
    id_key_digest: str  #: base64 SHA-384 of the id key (report ID_KEY_DIGEST)
    author_key_digest: str  #: base64 SHA-384 of the author key (report AUTHOR_KEY_DIGEST)

    def lines(self) -> list[str]:
        return [self.qemu_properties, f"id_key_hash: {self.id_key_digest}",
                f"author_key: {self.author_key_digest}"]


def snp_id_block(digest: bytes, id_key: str, author_key: str) -> SnpIdBlock:
    """Sign ``digest`` into an id-block with the P-384 keys in PEM files ``id_key`` and ``author_key``."""
    if len(digest) != DIGEST_LEN:
        raise MeasureError(f"an SNP launch digest is {DIGEST_LEN} bytes, got {len(digest)}")
    try:
        text = _id_block.snp_calc_id_block(digest, id_key, author_key)
    except OSError as exc:
        raise MeasureError(f"cannot read a key: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise MeasureError(f"id-block keys must be unencrypted P-384 EC private keys in PEM: {exc}") from exc
    props, id_line, author_line = text.splitlines()
    return SnpIdBlock(props, id_line.split(": ", 1)[1], author_line.split(": ", 1)[1])
