"""Turn a RunConfig (and the host report) into guest specs.

Plain guests use the default guest (or ``--guest-kernel``/``--guest-initrd``)
with the configured firmware; SEV guests always use OVMF, ``-cpu EPYC``, the
host's C-bit and the policy launch-qemu.sh would compute for the mode (or
``--sev-policy``).
"""

from __future__ import annotations

from dataclasses import replace

from .config import RunConfig
from .default_guest import default_guest_spec, ovmf_firmware
from .sev.policy import policy_for
from .spec import GuestSpec, SevLaunch, SpecError


def image_spec(cfg: RunConfig, **fields) -> GuestSpec:
    """``--guest-image``: OVMF -> GRUB (entry by ``--guest-boot-entry``) -> login.

    The image is opened with ``snapshot=on`` so runs never change it."""
    from .diskimage import disk_guest_spec
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    spec = disk_guest_spec(cfg.guest_image, ovmf=ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars),
                           user=cfg.guest_user, password=cfg.guest_password,
                           boot_entry=cfg.guest_boot_entry, **fields)
    return spec.with_(disks=tuple(replace(d, snapshot=True) for d in spec.disks))


def _uses_image(cfg: RunConfig, with_fio: bool, fields: dict) -> bool:
    # the DMA matrix needs fio and its own scratch disk: it keeps the embedded guest
    return cfg.guest_image is not None and not with_fio and "disks" not in fields


def plain_spec(cfg: RunConfig, *, firmware: str | None = None, with_fio: bool = False,
               **fields) -> GuestSpec:
    if _uses_image(cfg, with_fio, fields):
        return image_spec(cfg, **fields)
    fw = firmware or cfg.guest_firmware
    ovmf = ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars) if fw == "ovmf" else None
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    return default_guest_spec(firmware=fw, with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd, ovmf=ovmf, **fields)


def cbitpos_of(report) -> int | None:
    """The C-bit position a HostReport found, or None when it could not tell."""
    value = report.facts.get("cbitpos")
    return int(value) if value not in (None, "", "unknown") else None


def sev_launch(cfg: RunConfig, mode: str, cbitpos: int | None) -> SevLaunch:
    if cbitpos is None:
        raise SpecError("the host report has no C-bit position: cannot launch an SEV guest")
    policy = cfg.sev_policy if cfg.sev_policy is not None else policy_for(mode, cfg.allow_debug)
    return SevLaunch(mode=mode, policy=policy, cbitpos=cbitpos)


def sev_spec(cfg: RunConfig, mode: str, cbitpos: int | None, *, with_fio: bool = False,
             **fields) -> GuestSpec:
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
