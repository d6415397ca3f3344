"""Turn a RunConfig (and the host report) into guest specs.

Plain guests use the default guest (or ``--guest-kernel``/``--guest-initrd``)
with the configured firmware; SEV guests always use OVMF, ``-cpu EPYC``, the
host's C-bit and the policy launch-qemu.sh would compute for the mode (or
``--sev-policy``).
"""

from __future__ import annotations

from .config import RunConfig
from .default_guest import default_guest_spec, ovmf_firmware
from .sev.policy import policy_for
from .spec import GuestSpec, SevLaunch, SpecError


def plain_spec(cfg: RunConfig, *, firmware: str | None = None, with_fio: bool = False,
               **fields) -> GuestSpec:
    fw = firmware or cfg.guest_firmware
    ovmf = ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars) if fw == "ovmf" else None
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    return default_guest_spec(firmware=fw, with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd, ovmf=ovmf, **fields)


def sev_launch(cfg: RunConfig, mode: str, cbitpos: int | None) -> SevLaunch:
    if cbitpos is None:
        raise SpecError("the host report has no C-bit position: cannot launch an SEV guest")
    policy = cfg.sev_policy if cfg.sev_policy is not None else policy_for(mode, cfg.allow_debug)
    return SevLaunch(mode=mode, policy=policy, cbitpos=cbitpos)


def sev_spec(cfg: RunConfig, mode: str, cbitpos: int | None, *, with_fio: bool = False,
             **fields) -> GuestSpec:
    """An SEV or SEV-ES guest of the default kind (OVMF, direct kernel boot)."""
    fields.setdefault("boot_timeout", cfg.guest_timeout)
    fields.setdefault("name", mode)
    return default_guest_spec(firmware="ovmf", with_fio=with_fio, kernel=cfg.guest_kernel,
                              initrd=cfg.guest_initrd,
                              ovmf=ovmf_firmware(cfg.ovmf_code, cfg.ovmf_vars),
                              sev=sev_launch(cfg, mode, cbitpos), **fields)
