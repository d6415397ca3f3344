"""Assemble guest specs: the one place that turns a RunConfig (and the host's
C-bit) into a :class:`~pytest_sev.model.spec.GuestSpec`.

Reading one spec's assembly goes down the layers and never back: this module
asks :mod:`pytest_sev.images` for files (the provisioned kernel, the busybox
initramfs, a disk image's format) and :mod:`pytest_sev.qemu.firmware` for
OVMF, and decides everything else here:

- plain guests: the default guest (or ``--guest-kernel``/``--guest-initrd``),
  SeaBIOS or OVMF per ``--guest-firmware``;
- ``--guest-image`` guests: OVMF -> GRUB (entry by ``--guest-boot-entry``) ->
  login, opened with ``snapshot=on`` so runs never change the image;
- SEV and SEV-ES guests: always OVMF, ``-cpu EPYC``, the host's C-bit and the
  policy launch-qemu.sh would compute for the mode (or ``--sev-policy``);
- SEV-SNP guests: the one-image OVMF (``-bios``: the AmdSev build, else
  ``OVMF.fd``), the host's C-bit and reduced-phys-bits, policy 0x30000 (debug
  bit 19 added by ``--allow-debug``), direct kernel boot of the run's kernel;
- attested launches: the AmdSev OVMF (``--ovmf-amdsev`` or an installed one)
  with ``kernel-hashes=on``; the plain-guest secret delivery check boots it
  from a disk image with the secret table preloaded into its secret page.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_sev.build.fio import static_fio
from pytest_sev.config import RunConfig
from pytest_sev.errors import SpecError
from pytest_sev.images.default_kernel import BASE_APPEND, default_kernel, other_kernel
from pytest_sev.images.diskimage import build_disk_image, image_format
from pytest_sev.images.initramfs import build_initramfs
from pytest_sev.model.spec import UEFI_KINDS, Bus, Disk, Firmware, GuestSpec, Login, Preload, SevLaunch, SnpLaunch
from pytest_sev.qemu.firmware import find_amdsev_ovmf, find_ovmf, find_snp_firmware
from pytest_sev.sev.policy import policy_for, snp_policy_for

log = logging.getLogger(__name__)

__all__ = ["BASE_APPEND", "amdsev_firmware", "attested_spec", "cbitpos_of", "default_guest_spec",
           "disk_guest_spec", "image_spec", "ovmf_firmware", "plain_spec", "secret_delivery_spec",
           "reduced_phys_bits_of", "sev_launch", "sev_spec", "snp_firmware", "snp_launch", "snp_spec"]


# -- building blocks --------------------------------------------------------------

def ovmf_firmware(code: Path | None = None, vars_template: Path | None = None) -> Firmware:
    """OVMF from the given files, else the first install found (build prefix, distro)."""
    if code is None or vars_template is None:
        found = find_ovmf()
        if found is None:
            raise SpecError("OVMF not found: install the ovmf package or pass --ovmf-code/--ovmf-vars")
        code, vars_template = code or found[0], vars_template or found[1]
    return Firmware(kind="ovmf", code=Path(code), vars_template=Path(vars_template))


def _guest_fio() -> Path | None:
    """The static fio (pytest_sev.build.fio) for the DMA guests, else None: the host's."""
    fio, how = static_fio()
    log.log(logging.DEBUG if fio else logging.INFO, "guest fio: %s", how if fio else f"the host's fio ({how})")
    return fio


def default_guest_spec(*, firmware: str = "seabios", with_fio: bool = False,
                       kernel: Path | None = None, initrd: Path | None = None,
                       append: str = "", ovmf: Firmware | None = None, **fields: Any) -> GuestSpec:
    """The embedded default guest: distro cloud kernel + busybox initramfs
    (with fio when the DMA suite asks); keyword *fields* override GuestSpec fields.

    Another *kernel* (``--guest-kernel``, a build) without an *initrd* boots the
    same busybox initramfs: without one it has no init and panics ("Unable to
    mount root fs").  Its drivers must be built in; the distro modules in the
    initramfs fail to load harmlessly."""
    if kernel is None or initrd is None:
        gk = default_kernel()
        kernel = kernel or gk.vmlinuz
        initrd = initrd or build_initramfs(gk, with_fio=with_fio, fio_binary=_guest_fio() if with_fio else None).path
    fw = (ovmf or ovmf_firmware()) if firmware == "ovmf" else Firmware()
    cmdline = " ".join(part for part in (BASE_APPEND, append) if part)
    return GuestSpec(kernel=Path(kernel), initrd=Path(initrd) if initrd else None,
                     append=cmdline, firmware=fw, **fields)


def disk_guest_spec(image: Path, *, ovmf: Firmware, user: str, password: str,
                    boot_entry: str | None = None, bus: Bus = "virtio-scsi",
                    vars_path: Path | None = None, snapshot: bool = False, **fields: Any) -> GuestSpec:
    """A guest that boots *image* through OVMF and GRUB to a login.

    ``vars_path``: the UEFI variable store (launch-qemu.sh's ``IMAGE.fd``);
    None keeps one per guest in its run directory, which parallel guests of
    one image need (QEMU locks a writable pflash file).  ``snapshot``: open
    the image with ``snapshot=on`` (a user's or the cache's image is never
    written).  Other GuestSpec fields (``sev``, ``memory_mib``,
    ``boot_timeout``...) pass through.
    """
    if ovmf.kind not in UEFI_KINDS:
        raise SpecError("a disk-image guest boots through OVMF (UEFI GRUB)")
    fw = (ovmf if ovmf.kind == "amdsev"
          else Firmware("ovmf", ovmf.code, ovmf.vars_template, vars_path=vars_path))
    fields.setdefault("name", Path(image).stem)
    return GuestSpec(kernel=None, firmware=fw,
                     disks=(Disk(Path(image), bus=bus, format=image_format(Path(image)),  # type: ignore[arg-type]
                                 snapshot=snapshot),),
                     login=Login(user, password), boot_entry=boot_entry, **fields)


def cbitpos_of(report: Any) -> int | None:
    """The C-bit position a HostReport found, or None when it could not tell."""
    value = report.facts.get("cbitpos")
    return int(value) if value not in (None, "", "unknown") else None


def reduced_phys_bits_of(report: Any) -> int | None:
    """The physical address bits a HostReport says encryption takes away, or None."""
    value = report.facts.get("reduced_phys_bits")
    return int(value) if value not in (None, "", "unknown") else None


def snp_firmware(cfg: RunConfig) -> Firmware:
    """The one firmware image an SNP guest boots (``-bios``): ``--ovmf-amdsev``,
    else an installed AmdSev build, else a one-file ``OVMF.fd``.  QEMU refuses
    pflash (OVMF_CODE/VARS) for SNP, so there is no fallback to those."""
    if cfg.ovmf_amdsev is not None:
        return Firmware("amdsev", code=Path(cfg.ovmf_amdsev))
    found = find_snp_firmware()
    if found is None:
        raise SpecError("no firmware for an SEV-SNP guest: it boots one -bios image (OVMF.amdsev.fd or OVMF.fd), "
                        "QEMU refuses pflash; pass --ovmf-amdsev or build --components ovmf-amdsev=build")
    kind, path = found
    return Firmware("amdsev" if kind == "amdsev" else "bios", code=path)


def snp_launch(cfg: RunConfig, cbitpos: int | None, reduced_phys_bits: int | None = None) -> SnpLaunch:
    """The ``sev-snp-guest`` launch: the host's C-bit (and reduced-phys-bits,
    QEMU's 1 when the host report could not tell), the default SNP policy."""
    if cbitpos is None:
        raise SpecError("the host report has no C-bit position: cannot launch an SEV-SNP guest")
    return SnpLaunch(cbitpos=cbitpos, policy=snp_policy_for(cfg.allow_debug),
                     reduced_phys_bits=1 if reduced_phys_bits is None else reduced_phys_bits)


def sev_launch(cfg: RunConfig, mode: str, cbitpos: int | None) -> SevLaunch:
    if cbitpos is None:
        raise SpecError("the host report has no C-bit position: cannot launch an SEV guest")
    policy = cfg.sev_policy if cfg.sev_policy is not None else policy_for(mode, cfg.allow_debug)  # type: ignore[arg-type]
    return SevLaunch(mode=mode, policy=policy, cbitpos=cbitpos)  # type: ignore[arg-type]


# -- what the fixtures and suites ask for ----------------------------------------------

def image_spec(cfg: RunConfig, **fields: Any) -> GuestSpec:
    """``--guest-image``: OVMF -> GRUB (entry by ``--guest-boot-entry``) -> login,
    opened with ``snapshot=on`` so runs never change it."""
    assert cfg.guest_image is not None
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    return disk_guest_spec(cfg.guest_image, ovmf=ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars),
                           user=cfg.guest_user, password=cfg.guest_password,
                           boot_entry=cfg.guest_boot_entry, snapshot=True, **fields)


def _uses_image(cfg: RunConfig, with_fio: bool, fields: dict[str, Any]) -> bool:
    # the DMA matrix needs fio and its own scratch disk: it keeps the embedded guest
    return cfg.guest_image is not None and not with_fio and "disks" not in fields


def plain_spec(cfg: RunConfig, *, firmware: str | None = None, with_fio: bool = False,
               **fields: Any) -> GuestSpec:
    """A plain (control) guest as the run is configured."""
    if _uses_image(cfg, with_fio, fields):
        return image_spec(cfg, **fields)
    fw = firmware or cfg.guest_firmware
    ovmf = ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars) if fw == "ovmf" else None
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    return default_guest_spec(firmware=fw, with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd, ovmf=ovmf, **fields)


def sev_spec(cfg: RunConfig, mode: str, cbitpos: int | None, *, with_fio: bool = False,
             **fields: Any) -> GuestSpec:
    """An SEV or SEV-ES guest: ``--guest-image`` when given, else the default
    guest (OVMF, direct kernel boot)."""
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    fields.setdefault("name", mode)
    if _uses_image(cfg, with_fio, fields):
        return image_spec(cfg, sev=sev_launch(cfg, mode, cbitpos), **fields)
    return default_guest_spec(firmware="ovmf", with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd,
                              ovmf=ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars),
                              sev=sev_launch(cfg, mode, cbitpos), **fields)


def snp_spec(cfg: RunConfig, cbitpos: int | None, reduced_phys_bits: int | None = None, *,
             with_fio: bool = False, **fields: Any) -> GuestSpec:
    """An SEV-SNP guest: the default guest (or ``--guest-kernel``) booted
    directly from the one-image SNP firmware.  ``--guest-image`` is not used
    for SNP guests yet (its GRUB path is built on split OVMF CODE/VARS, which
    QEMU refuses for SNP): the embedded guest proves SNP as well."""
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    fields.setdefault("name", "sev-snp")
    launch = snp_launch(cfg, cbitpos, reduced_phys_bits)
    return default_guest_spec(firmware="ovmf", with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd, ovmf=snp_firmware(cfg), snp=launch, **fields)


# -- the guest owner's launches ------------------------------------------------------

def amdsev_firmware(cfg: RunConfig) -> Firmware | None:
    """``--ovmf-amdsev`` (or ``--components ovmf-amdsev=...``), else an installed
    ``OVMF.amdsev.fd``; None when there is none (Debian 12 ships none)."""
    path = cfg.ovmf_amdsev or find_amdsev_ovmf()
    return Firmware("amdsev", code=Path(path)) if path else None


def attested_spec(cfg: RunConfig, mode: str, cbitpos: int | None, amdsev: Firmware | None,
                  **fields: Any) -> GuestSpec:
    """An SEV or SEV-ES guest for the owner's attested launch, started paused:
    on the AmdSev OVMF with ``kernel-hashes=on`` when there is one (the kernel,
    initrd and command line then enter the measurement), else on the run's OVMF."""
    spec = sev_spec(cfg, mode, cbitpos, paused=True, **fields)
    if amdsev is None or spec.kernel is None:
        return spec
    assert spec.sev is not None
    return spec.with_(firmware=amdsev, sev=replace(spec.sev, kernel_hashes=True))


def secret_delivery_spec(cfg: RunConfig, amdsev: Firmware, table: Path, secret_base: int,
                         kernel: Path | None = None, **fields: Any) -> GuestSpec:
    """A plain guest on the AmdSev OVMF with *table* preloaded into its secret
    page, booted from a disk image (OVMF -> GRUB -> *kernel*, the run's guest
    kernel by default): the AmdSev OVMF boots ``-kernel`` only against QEMU's
    kernel hashes, which QEMU writes for SEV guests alone, while from a disk it
    boots as any UEFI."""
    vmlinuz = kernel or cfg.guest_kernel
    guest_kernel = other_kernel(vmlinuz) if vmlinuz else default_kernel()
    image = build_disk_image(guest_kernel)
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    fields.setdefault("name", "secret-delivery")
    # the cached image is shared: opened with snapshot=on, never written
    return disk_guest_spec(image.raw, ovmf=amdsev, user=image.user, password=image.password,
                           bus="virtio-blk", snapshot=True, preloads=(Preload(Path(table), secret_base),),
                           **fields)


# -- one EFI test program (kvm-unit-tests) ---------------------------------------------

#: the memory and vCPUs kvm-unit-tests' x86/efi/run gives an EFI program
#: (UEFI leaves ~42 MiB of one region at 128 MiB; its programs run on one vCPU)
EFI_PROGRAM_MEMORY_MIB = 256


def efi_program_spec(cfg: RunConfig, kind: str, esp_disk: Disk, cbitpos: int | None) -> GuestSpec:
    """An EFI program's guest as *kind* ("plain", "sev" or "sev-es"): OVMF
    (``--ovmf-code``/``--ovmf-vars`` or the installed one) boots it from
    *esp_disk*; SEV and SEV-ES launch with the run's policy and the host's C-bit."""
    if kind not in ("plain", "sev", "sev-es"):
        raise SpecError(f"an EFI program runs as plain, sev or sev-es (not {kind!r}): SEV-SNP needs -bios firmware")
    sev = sev_launch(cfg, kind, cbitpos) if kind != "plain" else None
    return GuestSpec(name=f"efi-{kind}", memory_mib=EFI_PROGRAM_MEMORY_MIB, vcpus=1,
                     firmware=ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars), disks=(esp_disk,), sev=sev,
                     boot_timeout=cfg.guest_timeout)
