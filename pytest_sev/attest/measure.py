"""Expected SEV / SEV-ES launch digests, computed with virtee's ``sev-snp-measure``.

Why: the PSP firmware measures exactly what QEMU hands it during launch:
the OVMF code volume, for an OVMF built from ``OvmfPkg/AmdSev/AmdSevX64.dsc``
started with ``kernel-hashes=on`` the table of kernel/initrd/cmdline hashes
QEMU writes into it, and for SEV-ES the initial VMSA page of every vCPU
(which carries the vCPU signature of the ``-cpu`` model in RDX and the
SEV-ES reset vector from OVMF's footer table). The owner recomputes that
digest from the same inputs; sev-snp-measure is an independent, widely used
implementation of the layout, so this module only chooses its inputs.

VMSA generations: QEMU >= 9.1 on a kernel with ``KVM_SEV_INIT2`` (Linux 6.10+)
puts the x87/SSE reset values (FCW 0x37f, MXCSR 0x1f80) into each VMSA before
it is measured; older QEMU (7.2 here) and kernels use ``KVM_SEV_ES_INIT`` and
leave them zero. ``vmsa="init2"`` is sev-snp-measure's (and virtee/sev's)
QEMU layout; ``vmsa="legacy"`` zeroes those two fields (virtee/sevctl's
vectors). :func:`candidate_digests` yields both so a verdict can say which
one the firmware measured.

SEV-SNP digests (a chained SHA-384 over pages, metadata sections and VMSAs,
with guest features and VMM types) live in :mod:`pytest_sev.attest.snp_measure`.
"""

from __future__ import annotations

import ctypes
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sevsnpmeasure import guest as _guest
from sevsnpmeasure.ovmf import OVMF, OvmfFooterTableEntry
from sevsnpmeasure.sev_hashes import SevHashes
from sevsnpmeasure.sev_mode import SevMode
from sevsnpmeasure.vcpu_types import CPU_SIGS, cpu_sig
from sevsnpmeasure.vmm_types import VMMType
from sevsnpmeasure.vmsa import VMSA

from pytest_sev.cache import file_digest

from .errors import MeasureError

Mode = Literal["sev", "sev-es"]
VmsaKind = Literal["init2", "legacy"]
MODES: tuple[str, ...] = ("sev", "sev-es")
VMSA_KINDS: tuple[str, ...] = ("init2", "legacy")

#: OVMF footer-table entry of the launch-secret area (base u32, size u32),
#: as QEMU's ``sev-inject-launch-secret`` looks it up.
SEV_SECRET_GUID = "4c2eb361-7d9b-4cc3-8081-127c90d3d294"


@dataclass(frozen=True)
class LaunchInputs:
    """What the harness launches; every field enters the digest."""

    ovmf: str
    vcpus: int = 1
    vcpu_type: str = "EPYC"
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    vcpu_sig: int | None = None  #: overrides the signature of ``vcpu_type``
    vmsa: VmsaKind = "init2"

    def signature(self) -> int:
        return self.vcpu_sig if self.vcpu_sig is not None else vcpu_signature(self.vcpu_type)

    def describe(self) -> str:
        k = "none" if not self.kernel else f"kernel={self.kernel} initrd={self.initrd or '-'} append={self.append!r}"
        return (f"ovmf={self.ovmf} vcpus={self.vcpus} vcpu-type={self.vcpu_type} "
                f"(signature {self.signature():#x}) vmsa={self.vmsa} kernel-hashes: {k}")


def vcpu_signature(model: str) -> int:
    """CPUID(1).EAX signature QEMU reports for the ``-cpu`` model ``model``."""
    try:
        return CPU_SIGS[model]
    except KeyError:
        raise MeasureError(f"unknown vCPU type {model!r}: known are {', '.join(CPU_SIGS)}") from None


def signature_of(family: int, model: int, stepping: int) -> int:
    """Signature for an explicit family/model/stepping (AMD CPUID spec, Fn0000_0001_EAX)."""
    return cpu_sig(family, model, stepping)


@dataclass(frozen=True)
class OvmfFacts:
    """What an OVMF binary offers to SEV launches, read from its footer table."""

    path: str
    size: int
    sha256: str
    sev_es_reset_eip: int | None
    kernel_hashes: bool
    secret_area: tuple[int, int] | None  #: (gpa, size), ``None`` when absent or empty

    def describe(self) -> str:
        eip = f"{self.sev_es_reset_eip:#x}" if self.sev_es_reset_eip is not None else "none (no SEV-ES)"
        sec = f"{self.secret_area[0]:#x}+{self.secret_area[1]:#x}" if self.secret_area else "none"
        return (f"{self.path}: {self.size} bytes sha256 {self.sha256}; SEV-ES reset vector {eip}; "
                f"kernel-hashes table {'yes' if self.kernel_hashes else 'no'}; launch-secret area {sec}")


def load_ovmf(path: str) -> OVMF:
    """sev-snp-measure's view of an OVMF image, its read/parse failures as :class:`MeasureError`."""
    try:
        return OVMF(path)
    except OSError as exc:
        raise MeasureError(f"cannot read OVMF {path}: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        raise MeasureError(f"OVMF {path}: {exc}") from exc


#: OVMF images are whole 4 KiB flash pages
OVMF_PAGE = 4096


def not_an_ovmf(ovmf: OVMF) -> str | None:
    """Why *ovmf* is no OVMF image (None: it is one): whole 4 KiB pages, and
    the GUIDed footer table where sev-snp-measure reads it (the entry header
    32 bytes before the end).  sev-snp-measure takes any file without that
    footer as an OVMF with an empty table and hashes it, so ``/etc/passwd``
    would get a digest that no launch can match."""
    size = ovmf.size()
    if size == 0 or size % OVMF_PAGE:
        return f"{size} bytes, not whole 4 KiB pages"
    header = ctypes.sizeof(OvmfFooterTableEntry)
    footer = OvmfFooterTableEntry.from_buffer_copy(ovmf.data()[size - 32 - header:size - 32])
    if bytes(footer.guid) != uuid.UUID(OVMF.OVMF_TABLE_FOOTER_GUID).bytes_le:
        return f"no OVMF footer table (GUID {OVMF.OVMF_TABLE_FOOTER_GUID} {32 + header} bytes before its end)"
    return None


def ovmf_facts(path: str) -> OvmfFacts:
    """Read the SEV-relevant entries of ``path``'s OVMF footer table; a file
    that is not an OVMF image (:func:`not_an_ovmf`) is a :class:`MeasureError`."""
    ovmf = load_ovmf(path)
    problem = not_an_ovmf(ovmf)
    if problem:
        raise MeasureError(f"{path} is not an OVMF image: {problem}")
    try:
        eip: int | None = ovmf.sev_es_reset_eip()
    except RuntimeError:
        eip = None
    secret = None
    try:
        entry = ovmf.table_item(SEV_SECRET_GUID)
        base, size = int.from_bytes(entry[0:4], "little"), int.from_bytes(entry[4:8], "little")
        if base and size:
            secret = (base, size)
    except KeyError:
        pass
    return OvmfFacts(path, ovmf.size(), hashlib.sha256(ovmf.data()).hexdigest(), eip,
                     ovmf.is_sev_hashes_table_supported(), secret)


def vmsa_pages(ovmf_path: str, vcpus: int, signature: int, vmsa: VmsaKind = "init2") -> list[bytes]:
    """The initial VMSA page of each vCPU, in launch order (BSP first)."""
    if vmsa not in VMSA_KINDS:
        raise MeasureError(f"unknown VMSA kind {vmsa!r}: expected one of {', '.join(VMSA_KINDS)}")
    ovmf = load_ovmf(ovmf_path)
    try:
        eip = ovmf.sev_es_reset_eip()
    except RuntimeError as exc:
        raise MeasureError(f"OVMF {ovmf_path} cannot start SEV-ES vCPUs: {exc}") from exc
    builder = VMSA(SevMode.SEV_ES, eip, signature, 0x0, VMMType.QEMU)
    if vmsa == "legacy":
        for area in (builder.bsp_save_area, getattr(builder, "ap_save_area", None)):
            if area is not None:
                area.mxcsr = 0
                area.x87_fcw = 0
    return list(builder.pages(vcpus))


def kernel_hashes_table(kernel: str, initrd: str | None, append: str | None) -> bytes:
    """The padded table QEMU writes into an AmdSev OVMF with ``kernel-hashes=on``."""
    try:
        return SevHashes(kernel, initrd or "", append or "").construct_table()
    except OSError as exc:
        raise MeasureError(f"cannot hash kernel/initrd: {exc}") from exc


def launch_digest(inputs: LaunchInputs, mode: Mode) -> bytes:
    """The 32-byte launch digest the firmware computes for ``inputs`` in ``mode``."""
    if mode not in MODES:
        raise MeasureError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    if inputs.vcpus < 1:
        raise MeasureError(f"vcpus must be at least 1, got {inputs.vcpus}")
    if (inputs.initrd or inputs.append) and not inputs.kernel:
        raise MeasureError("an initrd or a command line is only measured together with a kernel")
    if mode == "sev-es" and inputs.vmsa == "legacy":
        return _seves_legacy(inputs)
    sev_mode = SevMode.SEV if mode == "sev" else SevMode.SEV_ES
    sig = inputs.signature() if mode == "sev-es" else 0
    try:
        return _guest.calc_launch_digest(sev_mode, inputs.vcpus, sig, inputs.ovmf, inputs.kernel,
                                         inputs.initrd, inputs.append, 0x0)
    except OSError as exc:
        raise MeasureError(f"cannot read an input: {exc}") from exc
    except (RuntimeError, ValueError) as exc:
        raise MeasureError(str(exc)) from exc


def _seves_legacy(inputs: LaunchInputs) -> bytes:
    ovmf = load_ovmf(inputs.ovmf)
    h = hashlib.sha256(ovmf.data())
    if inputs.kernel:
        if not ovmf.is_sev_hashes_table_supported():
            raise MeasureError("Kernel specified but OVMF doesn't support kernel/initrd/cmdline measurement")
        h.update(kernel_hashes_table(inputs.kernel, inputs.initrd, inputs.append))
    for page in vmsa_pages(inputs.ovmf, inputs.vcpus, inputs.signature(), "legacy"):
        h.update(page)
    return h.digest()


@dataclass(frozen=True)
class Candidate:
    """One expected digest and the inputs that produce it."""

    mode: Mode
    vmsa: VmsaKind | None  #: ``None`` for SEV (no VMSA is measured)
    digest: bytes
    inputs: LaunchInputs = field(compare=False)
    summary: str = field(default="", compare=False)  #: the inputs, hashed, for a person

    @property
    def label(self) -> str:
        return self.mode if self.vmsa is None else f"{self.mode} ({self.vmsa} VMSA)"


def candidate_digests(inputs: LaunchInputs, vmsa_kinds: tuple[VmsaKind, ...] = ("init2", "legacy")
                      ) -> list[Candidate]:
    """The SEV digest and the SEV-ES digests (per VMSA kind) for the same inputs.

    SEV-ES candidates are skipped (not raised) when the OVMF has no SEV-ES
    reset vector, because that OVMF simply cannot run SEV-ES.
    """
    facts = ovmf_facts(inputs.ovmf)
    out = [Candidate("sev", None, launch_digest(inputs, "sev"), inputs, inputs_summary(inputs, "sev", facts))]
    if facts.sev_es_reset_eip is None:
        return out
    for kind in vmsa_kinds:
        per = LaunchInputs(inputs.ovmf, inputs.vcpus, inputs.vcpu_type, inputs.kernel, inputs.initrd,
                           inputs.append, inputs.vcpu_sig, kind)
        out.append(Candidate("sev-es", kind, launch_digest(per, "sev-es"), per,
                             inputs_summary(per, "sev-es", facts)))
    return out


def inputs_summary(inputs: LaunchInputs, mode: Mode, facts: OvmfFacts | None = None) -> str:
    """The measured inputs by hash, so a mismatch report says exactly what was tried."""
    facts = facts or ovmf_facts(inputs.ovmf)
    parts = [f"OVMF {inputs.ovmf} sha256 {facts.sha256[:16]}..."]
    if mode == "sev-es":
        parts.append(f"{inputs.vcpus} vCPU(s) {inputs.vcpu_type} signature {inputs.signature():#x} "
                     f"{inputs.vmsa} VMSA")
    if inputs.kernel:
        try:
            k = file_digest(Path(inputs.kernel))[:16]
            i = file_digest(Path(inputs.initrd))[:16] if inputs.initrd else "(none)"
        except OSError as exc:
            raise MeasureError(f"cannot hash kernel/initrd: {exc}") from exc
        parts.append(f"kernel hashes: kernel {k}... initrd {i}... cmdline {inputs.append or ''!r}")
    else:
        parts.append("no kernel hashes")
    return ", ".join(parts)
