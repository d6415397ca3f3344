"""Render a :class:`~pytest_sev.model.spec.GuestSpec` as QEMU's argv (pure).

One renderer, two shapes of the same spec:

* :func:`build_argv` for guests the harness drives: the serial console and
  QMP on inherited socketpair ends, no display, explicit device ids;
* :func:`launch_argv` for a person (``python -m pytest_sev launch``): the
  shape and order of AMD's ``launch-qemu.sh``, so what the README taught
  carries over (``-nographic``, e1000 user networking, ``maxcpus=64``...).

Both write the firmware, disk devices, SEV object and machine key through
the same helpers below, so a change to how SEV or a virtio disk is expressed
is made once.  Where pytest-sev differs from the script on purpose it says so
(:data:`pytest_sev.sev.launchsh.DOCUMENTED_DIFFERENCES`): QMP instead of HMP,
``confidential-guest-support`` on QEMU >= 6.0, ``readonly=on`` on the OVMF
code.
"""

from __future__ import annotations

import base64
from pathlib import Path

from pytest_sev.errors import SpecError
from pytest_sev.model.spec import (
    ONE_IMAGE_KINDS,
    SNP_MIN_QEMU,
    Disk,
    Firmware,
    GuestSpec,
    Preload,
    SevLaunch,
    SnpLaunch,
)
from pytest_sev.sev.policy import QEMU_DEFAULT_POLICY

#: launch-qemu.sh's kernel command line for ``-kernel`` (AMD's later branches)
DEFAULT_APPEND = "console=ttyS0 earlyprintk=serial root=/dev/sda2"

#: the id of the memfd RAM backend an SNP guest's private memory is set up from
SNP_RAM_ID = "ram1"
#: the CPU model of SNP guests when the spec names none (QEMU's SNP documentation uses it)
SNP_DEFAULT_CPU = "EPYC-v4"


# -- the pieces both shapes share ------------------------------------------------

def machine_key(qemu_version: tuple[int, int]) -> str:
    """How ``-machine`` names the SEV object: QEMU >= 6.0 prefers
    ``confidential-guest-support`` (and then defaults virtio devices to
    ``iommu_platform=on,disable-legacy=on``)."""
    return "confidential-guest-support" if qemu_version >= (6, 0) else "memory-encryption"


def pflash_args(fw: Firmware, vars_path: Path | None) -> list[str]:
    """OVMF as two pflash drives: read-only CODE, the guest's own VARS copy;
    a one-file OVMF (the AmdSev build, or ``bios``: a distribution's ``OVMF.fd``) as ``-bios``."""
    if fw.kind in ONE_IMAGE_KINDS:
        return ["-bios", str(fw.code)]
    if fw.kind != "ovmf":
        return []
    return ["-drive", f"if=pflash,format=raw,unit=0,file={fw.code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_path or fw.vars_path}"]


def sev_object(sev: SevLaunch, policy: str) -> str:
    """The ``sev-guest`` object; *policy* is its rendered ``,policy=...`` (or "").
    An attested launch adds the owner's ``dh-cert-file`` and ``session-file``,
    and with the AmdSev OVMF ``kernel-hashes=on``."""
    session = ""
    if sev.dh_cert_file is not None and sev.session_file is not None:
        session = f",dh-cert-file={sev.dh_cert_file},session-file={sev.session_file}"
    hashes = ",kernel-hashes=on" if sev.kernel_hashes else ""
    return (f"sev-guest,id=sev0{policy},cbitpos={sev.cbitpos},"
            f"reduced-phys-bits={sev.reduced_phys_bits}{session}{hashes}")


def check_snp_qemu(spec: GuestSpec, qemu_version: tuple[int, int]) -> None:
    """An SNP spec on a QEMU without ``sev-snp-guest`` is one start-up line
    (SpecError) instead of QEMU's "invalid object type" after a fork."""
    if spec.snp is not None and tuple(qemu_version[:2]) < SNP_MIN_QEMU:
        have = ".".join(map(str, qemu_version[:2])) if any(qemu_version) else "of unknown version"
        raise SpecError(f"SEV-SNP needs QEMU >= {SNP_MIN_QEMU[0]}.{SNP_MIN_QEMU[1]} (this one is {have})")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def snp_object(snp: SnpLaunch) -> str:
    """The ``sev-snp-guest`` object, upstream QEMU's property names; the byte
    properties base64-encoded as QEMU decodes them."""
    props = [f"sev-snp-guest,id=sev0,policy={snp.policy:#x},cbitpos={snp.cbitpos}",
             f"reduced-phys-bits={snp.reduced_phys_bits}"]
    if snp.kernel_hashes:
        props.append("kernel-hashes=on")
    if snp.host_data is not None:
        props.append(f"host-data={_b64(snp.host_data)}")
    if snp.id_block is not None and snp.id_auth is not None:
        props += [f"id-block={_b64(snp.id_block)}", f"id-auth={_b64(snp.id_auth)}",
                  f"author-key-enabled={'on' if snp.author_key_enabled else 'off'}"]
    return ",".join(props)


def snp_memory_object(memory_mib: int) -> str:
    """The guest's RAM as a memfd backend, as AMD's snp-latest launch-qemu.sh
    gives it (``-machine memory-backend=ram1`` names it): private guest memory
    is set up beside it."""
    return f"memory-backend-memfd,id={SNP_RAM_ID},size={memory_mib}M,share=true,prealloc=false"


def snp_object_args(spec: GuestSpec) -> list[str]:
    """The two ``-object``s of an SNP launch (none without one)."""
    if spec.snp is None:
        return []
    return ["-object", snp_memory_object(spec.memory_mib), "-object", snp_object(spec.snp)]


def virtio_flags(disk: Disk, sev: bool, on: str = "on") -> str:
    """``disable-legacy``/``iommu_platform`` as the spec (or SEV) implies: they
    make virtio use the DMA API, and so SWIOTLB."""
    iommu = disk.iommu_platform if disk.iommu_platform is not None else sev
    legacy_off = disk.disable_legacy if disk.disable_legacy is not None else sev
    return (",disable-legacy=on" if legacy_off else "") + (f",iommu_platform={on}" if iommu else "")


def disk_device_args(disk: Disk, n: int, flags: str, *, named: bool = True) -> list[str]:
    """The ``-device`` arguments of disk *n* (its drive is ``disk{n}``).

    ``named`` adds the ids and SCSI bus the harness refers to; the script
    shape leaves them out, as launch-qemu.sh does."""
    queues = f",num-queues={disk.num_queues}" if disk.num_queues else ""
    if disk.bus == "virtio-blk":
        ident = f",id=vblk{n}" if named else ""
        return ["-device", f"virtio-blk-pci,drive=disk{n}{ident}{queues}{flags}"]
    if disk.bus == "virtio-scsi":
        bus = f",bus=scsi{n}.0" if named else ""
        return ["-device", f"virtio-scsi-pci,id=scsi{n}{queues}{flags}",
                "-device", f"scsi-hd,drive=disk{n}{bus}"]
    return ["-device", f"ide-hd,drive=disk{n},bus=ide.{n}"]


# -- guests the harness drives ---------------------------------------------------

def preload_args(preloads: tuple[Preload, ...]) -> list[str]:
    """QEMU's generic loader, raw bytes at a guest-physical address (at reset)."""
    args: list[str] = []
    for pre in preloads:
        args += ["-device", f"loader,file={pre.path},addr={pre.address:#x},force-raw=on"]
    return args


def disk_args(disks: tuple[Disk, ...], sev: bool) -> list[str]:
    args: list[str] = []
    for n, disk in enumerate(disks):
        if disk.format == "vvfat":  # a directory as a read-only FAT disk
            drive = f"file.driver=vvfat,file.dir={disk.path},if=none,id=disk{n},format=raw"
        else:
            drive = (f"file={disk.path},if=none,id=disk{n},format={disk.format},"
                     f"cache={disk.cache},aio={disk.aio}")
        if disk.readonly:
            drive += ",readonly=on"
        if disk.snapshot:
            drive += ",snapshot=on"
        if disk.throttle_bps:
            drive += f",throttling.bps-total={disk.throttle_bps}"
        args += ["-drive", drive]
        args += disk_device_args(disk, n, virtio_flags(disk, sev))
    return args


def machine_arg(spec: GuestSpec, qemu_version: tuple[int, int]) -> str:
    machine = spec.machine
    if spec.sev is not None:
        machine += f",{machine_key(qemu_version)}=sev0"
    if spec.snp is not None:
        machine += f",confidential-guest-support=sev0,memory-backend={SNP_RAM_ID}"
    return machine


def default_cpu(spec: GuestSpec, accel: str) -> str:
    if spec.cpu:
        return spec.cpu
    if spec.snp is not None:
        return SNP_DEFAULT_CPU
    if spec.sev is not None:
        return "EPYC"
    return "host" if accel == "kvm" else "max"


def build_argv(spec: GuestSpec, *, qemu: str, accel: str, qemu_version: tuple[int, int],
               serial_fd: int, qmp_fd: int, vars_path: Path | None = None) -> list[str]:
    """Full argv; ``serial_fd``/``qmp_fd`` are inherited socketpair ends."""
    argv = _machine_argv(spec, qemu=qemu, accel=accel, qemu_version=qemu_version, vars_path=vars_path)
    argv += ["-chardev", f"socket,id=serial0,fd={serial_fd}", "-serial", "chardev:serial0",
             "-chardev", f"socket,id=qmp0,fd={qmp_fd}", "-mon", "chardev=qmp0,mode=control"]
    argv += list(spec.extra_args)
    return argv


#: kvm-unit-tests' devices (x86/run): its exit-code port and its test device
#: (port 0xe0, which amd_sev's string I/O check writes and reads back)
TEST_DEVICES = ("-device", "pc-testdev", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4")


def efi_app_argv(spec: GuestSpec, *, qemu: str, accel: str, qemu_version: tuple[int, int],
                 serial_log: Path, vars_path: Path | None = None) -> list[str]:
    """A guest that runs one test program and ends QEMU through isa-debug-exit
    (kvm-unit-tests' EFI programs): the same machine, firmware, disks and SEV
    object as :func:`build_argv`, its serial console into *serial_log*, no
    monitor (the program's exit status is QEMU's), and the test devices."""
    argv = _machine_argv(spec, qemu=qemu, accel=accel, qemu_version=qemu_version, vars_path=vars_path)
    argv += ["-chardev", f"file,id=serial0,path={serial_log}", "-serial", "chardev:serial0", *TEST_DEVICES]
    argv += list(spec.extra_args)
    return argv


def _machine_argv(spec: GuestSpec, *, qemu: str, accel: str, qemu_version: tuple[int, int],
                  vars_path: Path | None) -> list[str]:
    """Everything but the console and the monitor."""
    check_snp_qemu(spec, qemu_version)
    argv = [qemu, "-name", spec.name, "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", accel, "-cpu", default_cpu(spec, accel),
            "-machine", machine_arg(spec, qemu_version),
            "-smp", str(spec.vcpus), "-m", str(spec.memory_mib)]
    if spec.no_reboot:
        argv.append("-no-reboot")
    if spec.paused:
        argv.append("-S")
    argv += pflash_args(spec.firmware, vars_path)
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        if spec.append:
            argv += ["-append", spec.append]
    argv += disk_args(spec.disks, spec.sev is not None or spec.snp is not None)
    if spec.sev is not None:
        argv += ["-object", sev_object(spec.sev, f",policy={spec.sev.policy:#x}")]
    argv += snp_object_args(spec)
    argv += preload_args(spec.preloads)
    return argv


# -- the launch-qemu.sh shape, for a person --------------------------------------

def _script_policy(sev: SevLaunch) -> str:
    """Like the script: no ``policy=`` when it is QEMU's own default (plain
    ``-sev``), and printf ``%#x``'s rendering (0 prints as ``0``, 5 as ``0x5``)."""
    if sev.mode == "sev" and sev.policy == QEMU_DEFAULT_POLICY:
        return ""
    return f",policy={sev.policy:#x}" if sev.policy else ",policy=0"


def launch_argv(spec: GuestSpec, *, qemu: str, accel: str, qemu_version: tuple[int, int],
                console: str = "serial", vnc: str | None = None, cdrom: Path | None = None,
                gdb: bool = False, qmp_socket: Path | None = None) -> list[str]:
    """QEMU's argv for *spec* in launch-qemu.sh's shape and order (for SNP,
    the snp-latest branch's: ``-machine confidential-guest-support=sev0,vmport=off``,
    the memfd backend, ``-machine memory-backend=ram1``, the ``sev-snp-guest``)."""
    check_snp_qemu(spec, qemu_version)
    argv = [qemu] + (["-enable-kvm"] if accel == "kvm" else ["-accel", accel])
    argv += ["-cpu", spec.cpu or "EPYC", "-machine", spec.machine,
             "-smp", f"{spec.vcpus},maxcpus=64", "-m", f"{spec.memory_mib}M,slots=5,maxmem=30G"]
    if spec.no_reboot:
        argv += ["-no-reboot"]
    argv += pflash_args(spec.firmware, None)
    if cdrom is not None:
        argv += ["-drive", f"file={cdrom},media=cdrom", "-boot", "d"]
    argv += ["-netdev", "user,id=vmnic", "-device", "e1000,netdev=vmnic,romfile="]
    for n, disk in enumerate(spec.disks):
        if disk.bus == "ide":
            argv += ["-drive", f"file={disk.path},format={disk.format}"]
            continue
        argv += ["-drive", f"file={disk.path},if=none,id=disk{n},format={disk.format}"]
        argv += disk_device_args(disk, n, ",disable-legacy=on,iommu_platform=true", named=False)
    if spec.sev is not None:
        argv += ["-object", sev_object(spec.sev, _script_policy(spec.sev)),
                 "-machine", f"{machine_key(qemu_version)}=sev0,vmport=off"]
    if spec.snp is not None:
        argv += ["-machine", "confidential-guest-support=sev0,vmport=off",
                 "-object", snp_memory_object(spec.memory_mib),
                 "-machine", f"memory-backend={SNP_RAM_ID}", "-object", snp_object(spec.snp)]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel), "-append", spec.append or DEFAULT_APPEND]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
    argv += ["-nographic"] if console == "serial" else ["-vga", console]
    if vnc:
        argv += ["-vnc", f":{vnc}"]
    if qmp_socket is not None:
        argv += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
    if gdb:
        argv += ["-s"]
    argv += list(spec.extra_args)
    return argv
