"""Build QEMU's argv from a :class:`~pytest_sev.spec.GuestSpec` (pure).

The order follows AMD's launch-qemu.sh where it overlaps (machine, cpu,
smp, memory, firmware, disks, SEV object) so the two can be compared element
by element; where pytest-sev differs on purpose it says so here:
QMP on a socketpair instead of an HMP pty, the serial console on a
socketpair instead of ``-nographic``, ``confidential-guest-support`` on
QEMU >= 6.0, ``readonly=on`` on the OVMF code.
"""

from __future__ import annotations

from pathlib import Path

from .spec import Disk, GuestSpec


def _virtio_flags(disk: Disk, sev: bool) -> str:
    iommu = disk.iommu_platform if disk.iommu_platform is not None else sev
    legacy_off = disk.disable_legacy if disk.disable_legacy is not None else sev
    flags = ""
    if legacy_off:
        flags += ",disable-legacy=on"
    if iommu:
        flags += ",iommu_platform=on"
    return flags


def disk_args(disks: tuple[Disk, ...], sev: bool) -> list[str]:
    args: list[str] = []
    for n, disk in enumerate(disks):
        drive = (f"file={disk.path},if=none,id=disk{n},format={disk.format},"
                 f"cache={disk.cache},aio={disk.aio}")
        if disk.readonly:
            drive += ",readonly=on"
        if disk.snapshot:
            drive += ",snapshot=on"
        if disk.throttle_bps:
            drive += f",throttling.bps-total={disk.throttle_bps}"
        args += ["-drive", drive]
        queues = f",num-queues={disk.num_queues}" if disk.num_queues else ""
        if disk.bus == "virtio-blk":
            args += ["-device", f"virtio-blk-pci,drive=disk{n},id=vblk{n}{queues}{_virtio_flags(disk, sev)}"]
        elif disk.bus == "virtio-scsi":
            args += ["-device", f"virtio-scsi-pci,id=scsi{n}{queues}{_virtio_flags(disk, sev)}",
                     "-device", f"scsi-hd,drive=disk{n},bus=scsi{n}.0"]
        else:
            args += ["-device", f"ide-hd,drive=disk{n},bus=ide.{n}"]
    return args


def machine_arg(spec: GuestSpec, qemu_version: tuple[int, int]) -> str:
    machine = spec.machine
    if spec.sev is not None:
        key = "confidential-guest-support" if qemu_version >= (6, 0) else "memory-encryption"
        machine += f",{key}=sev0"
    return machine


def default_cpu(spec: GuestSpec, accel: str) -> str:
    if spec.cpu:
        return spec.cpu
    if spec.sev is not None:
        return "EPYC"
    return "host" if accel == "kvm" else "max"


def build_argv(spec: GuestSpec, *, qemu: str, accel: str, qemu_version: tuple[int, int],
               serial_fd: int, qmp_fd: int, vars_path: Path | None = None) -> list[str]:
    """Full argv; ``serial_fd``/``qmp_fd`` are inherited socketpair ends."""
    argv = [qemu, "-name", spec.name, "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", accel, "-cpu", default_cpu(spec, accel),
            "-machine", machine_arg(spec, qemu_version),
            "-smp", str(spec.vcpus), "-m", str(spec.memory_mib)]
    if spec.no_reboot:
        argv.append("-no-reboot")
    if spec.firmware.kind == "ovmf":
        argv += ["-drive", f"if=pflash,format=raw,unit=0,file={spec.firmware.code},readonly=on",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_path or spec.firmware.vars_path}"]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        if spec.append:
            argv += ["-append", spec.append]
    argv += disk_args(spec.disks, spec.sev is not None)
    if spec.sev is not None:
        argv += ["-object", (f"sev-guest,id=sev0,policy={spec.sev.policy:#x},"
                             f"cbitpos={spec.sev.cbitpos},reduced-phys-bits={spec.sev.reduced_phys_bits}")]
    argv += ["-chardev", f"socket,id=serial0,fd={serial_fd}", "-serial", "chardev:serial0",
             "-chardev", f"socket,id=qmp0,fd={qmp_fd}", "-mon", "chardev=qmp0,mode=control"]
    argv += list(spec.extra_args)
    return argv
