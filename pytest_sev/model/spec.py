"""Typed description of a guest: what to boot and how, nothing about running it.

A :class:`GuestSpec` is validated when it is made, so an impossible request
(no kernel and no disk, a negative memory size, SEV-ES on SeaBIOS) fails at
start-up with one line instead of as a boot timeout minutes later.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pytest_sev.errors import SpecError
from pytest_sev.sev.policy import SNP_DEFAULT_POLICY, describe_snp_policy, es_mismatch, snp_policy_problem

Bus = Literal["virtio-blk", "virtio-scsi", "ide"]
SevMode = Literal["sev", "sev-es"]


@dataclass(frozen=True)
class Disk:
    """One disk and the bus it hangs on.

    ``iommu_platform``/``disable_legacy`` make virtio use the DMA API (and
    so SWIOTLB); an SEV guest needs them, a plain control sets them to be
    a faithful stand-in.  ``None`` means "as the launch mode implies".
    """

    path: Path
    bus: Bus = "virtio-blk"
    #: ``vvfat``: *path* is a directory QEMU shows the guest as a read-only
    #: FAT disk (an EFI system partition holding one program, for OVMF to boot)
    format: Literal["raw", "qcow2", "vvfat"] = "raw"
    iommu_platform: bool | None = None
    disable_legacy: bool | None = None
    num_queues: int | None = None
    cache: str = "none"
    aio: str = "threads"
    readonly: bool = False
    #: QEMU I/O throttling (bytes/s): requests wait in QEMU while their DMA
    #: buffers stay mapped in the guest, like a real device's latency.
    throttle_bps: int | None = None
    #: QEMU ``snapshot=on``: writes go to a temporary overlay QEMU deletes, so
    #: the user's image is never changed and parallel guests can share it.
    snapshot: bool = False

    def __post_init__(self) -> None:
        if self.throttle_bps is not None and self.throttle_bps <= 0:
            raise SpecError(f"throttle_bps {self.throttle_bps} must be positive")
        if self.bus not in ("virtio-blk", "virtio-scsi", "ide"):
            raise SpecError(f"unknown disk bus {self.bus!r} (virtio-blk, virtio-scsi or ide)")
        if self.format not in ("raw", "qcow2", "vvfat"):
            raise SpecError(f"unknown disk format {self.format!r} (raw, qcow2 or vvfat)")
        if self.format == "vvfat" and not self.readonly:
            raise SpecError(f"a vvfat disk ({self.path}) is read-only: give readonly=True")
        if "," in str(self.path):
            raise SpecError(f"disk path {self.path}: QEMU's option syntax cannot take a ',' in it")


FirmwareKind = Literal["seabios", "ovmf", "amdsev", "bios"]
#: the firmware kinds that boot SEV and SEV-ES guests (UEFI with the SEV code)
UEFI_KINDS = ("ovmf", "amdsev")
#: the one-image firmware kinds, given to QEMU as ``-bios``: the only way an
#: SEV-SNP guest gets its firmware (QEMU refuses pflash for SNP)
ONE_IMAGE_KINDS = ("amdsev", "bios")


@dataclass(frozen=True)
class Firmware:
    """SeaBIOS (QEMU's default); OVMF from pflash: read-only CODE plus a
    per-guest VARS copy, made once from ``vars_template`` and then reused; or
    ``amdsev``: the one-file OVMF of ``OvmfPkg/AmdSev/AmdSevX64.dsc`` as
    ``-bios`` (variables live in memory), which has the launch-secret page and
    checks QEMU's kernel hashes, as a guest owner's attested launch needs;
    or ``bios``: any other one-file OVMF (a distribution's ``OVMF.fd``) as
    ``-bios``, which an SEV-SNP guest boots from when there is no AmdSev build
    (it carries the SNP metadata, but no kernel-hashes table)."""

    kind: FirmwareKind = "seabios"
    code: Path | None = None
    vars_template: Path | None = None
    vars_path: Path | None = None  # None: a copy in the guest's run directory

    def __post_init__(self) -> None:
        if self.kind not in ("seabios", *UEFI_KINDS, "bios"):
            raise SpecError(f"unknown firmware kind {self.kind!r} (seabios, ovmf, amdsev or bios)")
        if self.kind == "ovmf" and (self.code is None or self.vars_template is None):
            raise SpecError("OVMF needs both its CODE and VARS files")
        if self.kind == "amdsev" and self.code is None:
            raise SpecError("the AmdSev OVMF needs its image (OVMF.amdsev.fd)")
        if self.kind == "bios" and self.code is None:
            raise SpecError("a one-file firmware (bios) needs its image (OVMF.fd)")


@dataclass(frozen=True)
class Preload:
    """A file QEMU's generic loader copies to a guest-physical address at reset.

    Why: on an SEV host the PSP and QEMU put the kernel-hashes table and the
    launch secret into OVMF's reserved pages; on a plain guest this puts the
    same bytes there, so the *guest's* side of an attested launch (OVMF's
    hash check, Linux's ``efi_secret``) runs for real without SEV hardware."""

    path: Path
    address: int

    def __post_init__(self) -> None:
        if not 0 <= self.address < 1 << 52:
            raise SpecError(f"preload address {self.address:#x} is not a guest-physical address")
        if not Path(self.path).is_file():
            raise SpecError(f"preload {self.path}: no such file")


@dataclass(frozen=True)
class SevLaunch:
    """The ``sev-guest`` object: mode, policy and the host's C-bit."""

    mode: SevMode
    policy: int
    cbitpos: int
    reduced_phys_bits: int = 1
    #: the guest owner's LAUNCH_START files (pytest_sev.attest.owner.prepare), or None
    dh_cert_file: Path | None = None
    session_file: Path | None = None
    #: QEMU ``kernel-hashes=on`` (6.2+): the hashes of -kernel/-initrd/-append go
    #: into the AmdSev OVMF's table and so into the launch measurement
    kernel_hashes: bool = False

    def with_session(self, dh_cert_file: Path, session_file: Path) -> SevLaunch:
        """This launch with the owner's DH certificate and session (an attested launch)."""
        return replace(self, dh_cert_file=Path(dh_cert_file), session_file=Path(session_file))

    def __post_init__(self) -> None:
        if self.mode not in ("sev", "sev-es"):
            raise SpecError(f"unknown SEV mode {self.mode!r}")
        if not 0 <= self.policy <= 0xFFFFFFFF:
            raise SpecError(f"SEV policy {self.policy:#x} out of range")
        problem = es_mismatch(self.policy, self.mode)
        if problem:
            raise SpecError(f"policy {self.policy:#x} {problem}")


#: sizes QEMU's ``sev-snp-guest`` requires of its base64 properties (bytes, decoded)
SNP_HOST_DATA_BYTES = 32
SNP_ID_BLOCK_BYTES = 96
SNP_ID_AUTH_BYTES = 4096
#: properties AMD's snp-latest launch-qemu.sh passes that exist only in AMD's QEMU fork
AMD_FORK_ONLY = ("certs-path",)


def _exact_size(name: str, value: bytes | None, size: int) -> None:
    if value is not None and len(value) != size:
        raise SpecError(f"SNP {name} is {len(value)} bytes; QEMU's sev-snp-guest needs exactly {size}")


#: the first upstream QEMU with ``sev-snp-guest`` (qapi/qom.json SevSnpGuestProperties, "Since: 9.1")
SNP_MIN_QEMU = (9, 1)


@dataclass(frozen=True)
class SnpLaunch:
    """The ``sev-snp-guest`` object (upstream QEMU >= 9.1): policy, C-bit, and
    the launch inputs the attestation report will carry (host data, ID block).

    A separate type from :class:`SevLaunch` because nothing of SEV's launch
    session (DH certificate, session blob) applies: an SNP guest proves itself
    with its own attestation report.  Byte fields hold raw bytes; the renderer
    base64-encodes them as QEMU reads them."""

    #: the host's C-bit position (CPUID 0x8000001F EBX[5:0])
    cbitpos: int
    policy: int = SNP_DEFAULT_POLICY
    reduced_phys_bits: int = 1
    #: QEMU ``kernel-hashes=on``: -kernel/-initrd/-append hashed into the firmware's table
    kernel_hashes: bool = False
    #: 32 bytes the host binds into the report (HOST_DATA)
    host_data: bytes | None = None
    #: the guest owner's ID block (96 bytes) and its signature block (4096 bytes)
    id_block: bytes | None = None
    id_auth: bytes | None = None
    author_key_enabled: bool = False

    @property
    def mode(self) -> str:
        return "sev-snp"

    def describe(self) -> str:
        return f"sev-snp, policy {describe_snp_policy(self.policy)}"

    def __post_init__(self) -> None:
        problem = snp_policy_problem(self.policy)
        if problem:
            raise SpecError(problem)
        _exact_size("host-data", self.host_data, SNP_HOST_DATA_BYTES)
        _exact_size("id-block", self.id_block, SNP_ID_BLOCK_BYTES)
        _exact_size("id-auth", self.id_auth, SNP_ID_AUTH_BYTES)
        if (self.id_block is None) != (self.id_auth is None):
            raise SpecError("SNP id-block and id-auth go together: the ID block is checked against its signature")
        if self.author_key_enabled and self.id_block is None:
            raise SpecError("SNP author-key-enabled needs an id-block and id-auth (the author key signs the ID key)")


@dataclass(frozen=True)
class Login:
    """Serial-console login for disk-image guests."""

    user: str
    password: str
    login_prompt: str = r"login: ?$"
    password_prompt: str = r"[Pp]assword: ?$"


@dataclass(frozen=True)
class GuestSpec:
    name: str = "guest"
    memory_mib: int = 1024
    vcpus: int = 2
    machine: str = "q35"
    cpu: str | None = None  # None: "EPYC" for SEV, "host" under KVM, "max" under TCG
    firmware: Firmware = field(default_factory=Firmware)
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    disks: tuple[Disk, ...] = ()
    sev: SevLaunch | None = None
    #: an SEV-SNP launch instead of ``sev`` (the two exclude each other)
    snp: SnpLaunch | None = None
    no_reboot: bool = True
    extra_args: tuple[str, ...] = ()
    #: regex the console prints when the guest is up (before any login)
    ready_pattern: str = r"pytest-sev: guest ready"
    login: Login | None = None
    #: regex of a boot-menu entry to pick (GRUB over serial), or None
    boot_entry: str | None = None
    boot_timeout: float = 180.0
    #: start QEMU with ``-S``: the guest waits (SEV state ``launch-secret``) until
    #: the guest owner has measured it; the launcher's before-boot step sends ``cont``
    paused: bool = False
    #: files copied into guest memory at reset (see :class:`Preload`)
    preloads: tuple[Preload, ...] = ()

    def __post_init__(self) -> None:
        if self.memory_mib < 64:
            raise SpecError(f"memory {self.memory_mib} MiB is too small to boot (>= 64)")
        if not 1 <= self.vcpus <= 64:
            raise SpecError(f"vcpus {self.vcpus} out of range 1..64")
        if self.kernel is None and not self.disks:
            raise SpecError("a guest needs a kernel or a disk to boot from")
        if self.initrd is not None and self.kernel is None:
            raise SpecError("an initrd needs a kernel (-kernel)")
        if self.sev is not None and self.firmware.kind not in UEFI_KINDS:
            raise SpecError("SEV and SEV-ES guests need OVMF: SeaBIOS cannot boot them")
        self._check_snp()
        for path in (self.kernel, self.initrd):
            if path is not None and not Path(path).is_file():
                raise SpecError(f"{path}: no such file")

    def _check_snp(self) -> None:
        """SNP's own rules: one launch kind, and the firmware as one ``-bios`` image."""
        if self.snp is None:
            return
        if self.sev is not None:
            raise SpecError("a guest is launched as SEV/SEV-ES or as SEV-SNP, not both (sev and snp given)")
        if self.firmware.kind not in ONE_IMAGE_KINDS:
            raise SpecError(f"SEV-SNP needs the firmware as one -bios image (OVMF.fd or OVMF.amdsev.fd): "
                            f"QEMU refuses pflash for SNP guests, and {self.firmware.kind!r} is "
                            + ("split CODE/VARS pflash" if self.firmware.kind == "ovmf" else "not UEFI"))
        if self.snp.kernel_hashes and self.firmware.kind != "amdsev":
            raise SpecError("SNP kernel-hashes=on needs the AmdSev OVMF (OVMF.amdsev.fd): only it has the "
                            f"kernel-hashes table, {self.firmware.code} does not")

    def with_(self, **changes: Any) -> GuestSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
