"""RunConfig: every knob of a run, validated once at start-up.

Options come from the command line, then the ini file
(``[tool.pytest.ini_options]`` / ``pytest.ini``), then defaults.  Anything
that cannot work (a missing kernel, an unknown mode, ``swiotlb=-1``, a policy
that contradicts the mode) raises :class:`ConfigError` with one line; the
plugin turns it into ``pytest.UsageError`` before any guest boots.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.errors import ConfigError
from pytest_sev.modes import RUN_MODES
from pytest_sev.sev.policy import es_mismatch

ACCELS = ("auto", "kvm", "tcg")
FIRMWARES = ("seabios", "ovmf")
LAUNCHERS = ("qemu", "libvirt")


@dataclass(frozen=True)
class RunConfig:
    mode: str = "auto"
    qemu: str = "qemu-system-x86_64"
    accel: str = "auto"
    launcher: str = "qemu"  # "libvirt": guests are transient libvirtd domains
    ovmf_code: Path | None = None
    ovmf_vars: Path | None = None
    guest_kernel: Path | None = None
    guest_initrd: Path | None = None
    guest_image: Path | None = None
    guest_firmware: str = "seabios"  # for plain guests; SEV guests always use OVMF
    guest_timeout: float = 300.0
    guest_user: str = "root"
    guest_password: str = ""
    guest_boot_entry: str | None = None
    sev_policy: int | None = None
    allow_debug: bool = False
    dma_sizes: tuple[str, ...] = ()
    log_dir: Path = Path("reports/guest-logs")
    extra: dict = field(default_factory=dict)

    @property
    def wants_sev(self) -> bool:
        return self.mode in ("sev", "sev-es")


def _existing(name: str, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name} {value}: no such file")
    return path.resolve()  # QEMU runs in the guest's own directory


def resolve_mode(sev_es: bool, sev: bool, sev_mode: str | None) -> str:
    """Fold ``--sev-es``, ``--sev`` and ``--sev-mode`` into one mode."""
    if sev_mode is not None and sev_mode not in RUN_MODES:
        raise ConfigError(f"--sev-mode {sev_mode!r} is not one of {', '.join(RUN_MODES)}")
    flags = [m for m, on in (("sev-es", sev_es), ("sev", sev)) if on]
    if len(flags) > 1:
        raise ConfigError("--sev-es and --sev are exclusive: pick the mode the host must support")
    if flags and sev_mode is not None and sev_mode != flags[0]:
        raise ConfigError(f"--{flags[0]} contradicts --sev-mode={sev_mode}")
    return flags[0] if flags else (sev_mode or "auto")


def parse_policy(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise ConfigError(f"--sev-policy {text!r} is not a number (e.g. 0x5)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise ConfigError(f"--sev-policy {text} is outside 0..0xffffffff")
    return value


def check_policy_against_mode(policy: int | None, mode: str) -> None:
    """An explicit policy must agree with the mode on the ES bit (0x4)."""
    if policy is None:
        return
    problem = es_mismatch(policy, mode)
    if problem:
        raise ConfigError(f"--sev-policy {policy:#x} {problem}")


def build_config(get) -> RunConfig:
    """Build a RunConfig from ``get(name) -> str|bool|None`` (option, then ini)."""
    mode = resolve_mode(bool(get("sev_es")), bool(get("sev")), get("sev_mode"))
    accel = get("accel") or "auto"
    if accel not in ACCELS:
        raise ConfigError(f"--accel {accel!r} is not one of {', '.join(ACCELS)}")
    launcher = get("launcher") or "qemu"
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    firmware = get("guest_firmware") or "seabios"
    if firmware not in FIRMWARES:
        raise ConfigError(f"--guest-firmware {firmware!r} is not one of {', '.join(FIRMWARES)}")
    try:
        timeout = float(get("guest_timeout") or 300)
    except ValueError:
        raise ConfigError(f"--guest-timeout {get('guest_timeout')!r} is not a number of seconds") from None
    if timeout <= 0:
        raise ConfigError(f"--guest-timeout {timeout:g} must be positive")
    policy = parse_policy(get("sev_policy"))
    check_policy_against_mode(policy, mode)
    kernel = _existing("--guest-kernel", get("guest_kernel"))
    initrd = _existing("--guest-initrd", get("guest_initrd"))
    if initrd and not kernel:
        raise ConfigError("--guest-initrd needs --guest-kernel")
    sizes = get("dma_sizes") or ""
    sizes_t = tuple(s for s in sizes.replace(",", " ").split() if s)
    if sizes_t:
        from pytest_sev.dma.sizes import parse_size  # raises ValueError with one line
        for s in sizes_t:
            try:
                parse_size(s)
            except ValueError as exc:
                raise ConfigError(f"--dma-sizes: {exc}") from None
    qemu = get("qemu")
    if qemu is not None and not shutil.which(qemu):
        raise ConfigError(f"--qemu {qemu}: not an executable QEMU binary")
    return RunConfig(
        mode=mode, qemu=qemu or "qemu-system-x86_64", accel=accel, launcher=launcher,
        ovmf_code=_existing("--ovmf-code", get("ovmf_code")),
        ovmf_vars=_existing("--ovmf-vars", get("ovmf_vars")),
        guest_kernel=kernel, guest_initrd=initrd,
        guest_image=_existing("--guest-image", get("guest_image")),
        guest_firmware=firmware, guest_timeout=timeout,
        guest_user=get("guest_user") or "root", guest_password=get("guest_password") or "",
        guest_boot_entry=get("guest_boot_entry") or None,
        sev_policy=policy, allow_debug=bool(get("allow_debug")), dma_sizes=sizes_t,
        log_dir=Path(get("guest_log_dir") or "reports/guest-logs"),
    )
