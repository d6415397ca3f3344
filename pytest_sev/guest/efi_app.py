"""Run one EFI test program as a guest: OVMF boots it from a FAT disk, it ends QEMU.

Why not :class:`pytest_sev.guest.guest.Guest`: a kvm-unit-tests program
(``amd_sev.efi``) is not a Linux guest with a shell to sync with; it prints
its checks on the serial port and ends QEMU through the isa-debug-exit
device, so QEMU's exit status *is* its verdict (pytest_sev.sev.kut).  What it
shares with every guest: the spec (machine, OVMF, the SEV object of the
launch, virtio with ``iommu_platform`` under SEV) rendered by
:mod:`pytest_sev.qemu.argv`, QEMU started from an argv list by
:class:`~pytest_sev.qemu.process.QemuProcess`, a private (0700) directory
for the disk, the variable store and the logs, and a teardown on every path.

The program sits at ``EFI/BOOT/BOOTX64.EFI`` of a directory QEMU shows as a
read-only FAT disk, where OVMF's boot manager looks (kvm-unit-tests'
x86/efi/run does the same, writable).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.deadline import Deadline
from pytest_sev.model.spec import Disk, GuestSpec
from pytest_sev.qemu.accel import AccelChoice
from pytest_sev.qemu.argv import efi_app_argv
from pytest_sev.qemu.binary import qemu_version, resolve_qemu
from pytest_sev.qemu.firmware import vars_store
from pytest_sev.qemu.process import QemuProcess

log = logging.getLogger(__name__)

#: where OVMF's boot manager finds a removable medium's program
BOOT_PATH = ("EFI", "BOOT", "BOOTX64.EFI")
#: a stopped QEMU is looked for once per this many seconds of the wait
_SLICE = 1.0


@dataclass(frozen=True)
class EfiRun:
    """One run of one program: what ran, what it printed, how QEMU ended."""

    program: str
    argv: tuple[str, ...]
    output: str               # the serial console
    stderr: str               # QEMU's own output
    exit_code: int | None     # QEMU's exit status (-N: signal N; None: it had to be stopped)
    timed_out: bool
    frozen: str | None        # why QEMU could not run on (stopped), when that ended the wait
    seconds: float
    timeout: float
    logs: dict[str, Path]


def make_esp(directory: Path, program: Path) -> Path:
    """*directory*/esp holding *program* as the boot program; the esp's path."""
    esp = directory / "esp"
    target = esp.joinpath(*BOOT_PATH)
    target.parent.mkdir(parents=True, mode=0o700)
    shutil.copyfile(program, target)
    return esp


def esp_disk(esp: Path) -> Disk:
    """The esp as the guest's one disk: virtio 1.0 with ``iommu_platform`` on
    every launch, as an SEV guest must have it, so the plain control reads its
    program the way the SEV guests do (through OVMF's DMA mapping)."""
    return Disk(esp, format="vvfat", readonly=True, iommu_platform=True, disable_legacy=True)


def run_efi_program(spec: GuestSpec, *, program: str, workdir: Path, qemu: str, accel: AccelChoice,
                    timeout: float) -> EfiRun:
    """Boot *spec* (its disk: an esp from :func:`make_esp`) and wait for QEMU to end.

    Never waits past *timeout*; QEMU is stopped on every path (a timeout,
    an exception, Ctrl-C).  A stopped (SIGSTOP) QEMU ends the wait within a
    second, named."""
    workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs = {"console log": workdir / "console.log", "qemu stderr": workdir / "qemu-stderr.log"}
    binary = resolve_qemu(qemu)
    vars_path, _ = vars_store(spec.firmware, workdir / "OVMF_VARS.fd")
    argv = efi_app_argv(spec, qemu=binary, accel=accel.name, qemu_version=qemu_version(binary)[:2],
                        serial_log=logs["console log"], vars_path=vars_path)
    (workdir / "qemu-argv.txt").write_text("\n".join(argv) + "\n")
    proc = QemuProcess(argv, name=spec.name, cwd=workdir, output=logs["qemu stderr"])
    deadline = Deadline(timeout)
    frozen: str | None = None
    start = time.monotonic()
    try:
        proc.start()
        while not proc.wait(min(_SLICE, deadline.remaining(floor=0.0))):
            frozen = proc.frozen()
            if frozen is not None or deadline.expired:
                break
        ended = not proc.alive
    finally:
        stage = proc.stop()
    seconds = round(time.monotonic() - start, 2)
    code = proc.returncode if ended else None
    log.info("%s: %s ended (%s) after %.1f s: QEMU exit %s", spec.name, program, stage, seconds, code)
    return EfiRun(program, tuple(argv), _read(logs["console log"]), _read(logs["qemu stderr"]), code,
                  timed_out=not ended and frozen is None, frozen=frozen, seconds=seconds, timeout=timeout,
                  logs=logs)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
