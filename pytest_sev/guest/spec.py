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
from pytest_sev.sev.policy import es_mismatch

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
    format: Literal["raw", "qcow2"] = "raw"
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
        if self.format not in ("raw", "qcow2"):
            raise SpecError(f"unknown disk format {self.format!r} (raw or qcow2)")


FirmwareKind = Literal["seabios", "ovmf", "amdsev"]
#: the firmware kinds that boot SEV and SEV-ES guests (UEFI with the SEV code)
UEFI_KINDS = ("ovmf", "amdsev")


@dataclass(frozen=True)
class Firmware:
    """SeaBIOS (QEMU's default); OVMF from pflash: read-only CODE plus a
    per-guest VARS copy, made once from ``vars_template`` and then reused; or
    ``amdsev``: the one-file OVMF of ``OvmfPkg/AmdSev/AmdSevX64.dsc`` as
    ``-bios`` (variables live in memory), which has the launch-secret page and
    checks QEMU's kernel hashes, as a guest owner's attested launch needs."""

    kind: FirmwareKind = "seabios"
    code: Path | None = None
    vars_template: Path | None = None
    vars_path: Path | None = None  # None: a copy in the guest's run directory

    def __post_init__(self) -> None:
        if self.kind not in ("seabios", *UEFI_KINDS):
            raise SpecError(f"unknown firmware kind {self.kind!r} (seabios, ovmf or amdsev)")
        if self.kind == "ovmf" and (self.code is None or self.vars_template is None):
            raise SpecError("OVMF needs both its CODE and VARS files")
        if self.kind == "amdsev" and self.code is None:
            raise SpecError("the AmdSev OVMF needs its image (OVMF.amdsev.fd)")


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
        for path in (self.kernel, self.initrd):
            if path is not None and not Path(path).is_file():
                raise SpecError(f"{path}: no such file")

    def with_(self, **changes: Any) -> GuestSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
