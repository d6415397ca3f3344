"""Kernel configuration: the base config and AMD's SEV-ES edits.

build.sh starts from the running host's ``/boot/config-$(uname -r)`` and
edits it with the kernel's ``scripts/config``.  The edits are data here
(:data:`SEV_ES_EDITS`) so the same list drives the real tool (argv for
``scripts/config``) and a pure-Python equivalent used to check results on
recorded configs when no kernel tree is at hand.

Base config specs (``base_config`` in the sources file):

- ``auto`` (default): the host's ``/boot/config-$(uname -r)``, else the
  provisioned distro guest kernel's config (``<cache>/kernels/*/config``)
- ``host`` / ``provisioned``: only that one
- ``make:TARGET``: a kernel make target, e.g. ``make:tinyconfig``
- a path to a config file
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.build.errors import SourcesError
from pytest_sev.kconfig import parse_config

#: AMD build.sh (sev-es branch) ``scripts/config`` edits, in its order.
SEV_ES_EDITS: tuple[tuple[str, str, str], ...] = (
    ("set-str", "LOCALVERSION", "-sev-es"),
    ("disable", "LOCALVERSION_AUTO", ""),
    ("enable", "AMD_MEM_ENCRYPT", ""),
    ("enable", "AMD_MEM_ENCRYPT_ACTIVE_BY_DEFAULT", ""),
    ("enable", "CRYPTO_DEV_CCP", ""),
    ("disable", "HW_RANDOM_VIRTIO", ""),
    ("disable", "CRYPTO_DEV_VIRTIO", ""),
    ("enable", "CRYPTO_DEV_SP_CCP", ""),
    ("module", "CRYPTO_DEV_CCP_DD", ""),
    ("module", "KVM_AMD", ""),
    ("enable", "KVM_AMD_SEV", ""),
    ("enable", "X86_CPUID", ""),
    ("enable", "DEBUG_INFO_REDUCED", ""),
)

#: Symbols without which the result is not an SEV-ES guest kernel at all:
#: ``make olddefconfig`` dropping one of them fails the build.
REQUIRED = {"AMD_MEM_ENCRYPT": "y"}

#: what the guest owner's launch secret needs in the guest kernel
#: (fixtures/kernel/efi-secret.config): EFI_COCO_SECRET is a bool of the core
#: kernel, so no module can add it later; EFI_SECRET built in, because a
#: kernel built here boots with the distro kernel's initramfs modules.
SECRET_SYMBOLS = ("EFI_COCO_SECRET", "EFI_SECRET")

#: what an SEV-SNP guest needs to fetch its own attestation report
#: (:mod:`pytest_sev.proofs.snp_attest`): SEV_GUEST (drivers/virt/coco/sev-guest, in the
#: VIRT_DRIVERS menu, depends on AMD_MEM_ENCRYPT) gives /dev/sev-guest and, from Linux 6.7,
#: selects TSM_REPORTS (configfs-tsm, a tristate without a prompt), which selects CONFIGFS_FS.
#: Built in, not =m: a kernel built here boots with the harness's busybox initramfs, whose
#: modules are the distro kernel's. On a tree before 6.7 there is no TSM_REPORTS: make
#: olddefconfig drops it and the build notes it ("not in final config").
SNP_GUEST_EDITS: tuple[tuple[str, str, str], ...] = (
    ("enable", "VIRT_DRIVERS", ""),
    ("enable", "CONFIGFS_FS", ""),
    ("enable", "SEV_GUEST", ""),
    ("enable", "TSM_REPORTS", ""),
)
#: the kernel recipe's ``scripts/config`` edits: AMD's SEV-ES list, then the SNP guest's
KERNEL_EDITS = SEV_ES_EDITS + SNP_GUEST_EDITS
SNP_REPORT_SYMBOLS = ("SEV_GUEST", "TSM_REPORTS", "CONFIGFS_FS")

@dataclass(frozen=True)
class BaseConfig:
    """A resolved base: a file to copy, or a make target to run."""

    file: Path | None = None
    make_target: str | None = None

    def describe(self) -> str:
        return f"make {self.make_target}" if self.make_target else str(self.file)


def _provisioned_config() -> Path | None:
    from pytest_sev.images.provision import provisioned_kernel
    kernel = provisioned_kernel()
    if kernel is None:
        return None
    cfg = kernel.vmlinuz.parent / "config"
    return cfg if cfg.is_file() else None


def host_config() -> Path | None:
    cfg = Path("/boot") / f"config-{os.uname().release}"
    return cfg if cfg.is_file() else None


def resolve_base(spec: str) -> BaseConfig:
    spec = spec or "auto"
    if spec.startswith("make:"):
        target = spec[len("make:"):]
        if not re.fullmatch(r"[\w.-]+config", target):
            raise SourcesError(f"base_config {spec!r}: not a kernel config target (e.g. make:tinyconfig)")
        return BaseConfig(make_target=target)
    if spec in ("auto", "host", "provisioned"):
        found = None
        if spec in ("auto", "host"):
            found = host_config()
        if found is None and spec in ("auto", "provisioned"):
            found = _provisioned_config()
        if found is None:
            raise SourcesError(
                f"base_config {spec!r}: no /boot/config-{os.uname().release} and no provisioned "
                "guest kernel config (run `python -m pytest_sev provision`, or give a file or make:TARGET)")
        return BaseConfig(file=found)
    path = Path(spec)
    if not path.is_file():
        raise SourcesError(f"base_config {spec!r}: no such file")
    return BaseConfig(file=path)


def scripts_config_args(edits=KERNEL_EDITS) -> list[str]:
    """Arguments for ``scripts/config --file .config ...`` (one invocation)."""
    args: list[str] = []
    for op, sym, value in edits:
        args += [f"--{op}", sym] + ([value] if op == "set-str" else [])
    return args


def expected_value(op: str, value: str) -> str:
    return {"enable": "y", "disable": "n", "module": "m"}.get(op, f'"{value}"')


def apply_edits_text(text: str, edits=KERNEL_EDITS) -> str:
    """What ``scripts/config`` does to a config's text, in Python. Pure.

    A set symbol's line is replaced in place; a new one is appended, as the
    kernel's tool does.
    """
    lines = text.splitlines()
    for op, sym, value in edits:
        new = (f"# CONFIG_{sym} is not set" if op == "disable"
               else f"CONFIG_{sym}={expected_value(op, value)}")
        pat = re.compile(rf"^(CONFIG_{sym}=.*|# CONFIG_{sym} is not set)$")
        for i, line in enumerate(lines):
            if pat.match(line):
                lines[i] = new
                break
        else:
            lines.append(new)
    return "\n".join(lines) + "\n"


def unhonoured(config_text: str, edits=KERNEL_EDITS) -> list[str]:
    """Edits a final config does not carry (olddefconfig drops symbols whose
    dependencies are off, e.g. ``KVM_AMD`` in a guest-only config)."""
    cfg = parse_config(config_text)
    missing = []
    for op, sym, value in edits:
        want = expected_value(op, value)
        have = cfg.get(sym, "n")
        if have != want:
            missing.append(f"{sym}={want} (have {have})")
    return missing


def missing_required(config_text: str) -> list[str]:
    cfg = parse_config(config_text)
    return [f"CONFIG_{s}={v}" for s, v in REQUIRED.items() if cfg.get(s) != v]


#: config symbols whose build draws on randomness or the build machine: the
#: image differs on every build unless their input is pinned (a note each).
_NONDETERMINISTIC = (
    ("MODULE_SIG_KEY", '"certs/signing_key.pem"',
     "module signing key generated per build (pin a key file to reproduce)"),
    ("RANDSTRUCT_FULL", "y", "RANDSTRUCT seed generated per build"),
    ("GCC_PLUGIN_RANDSTRUCT", "y", "RANDSTRUCT seed generated per build"),
    ("IKHEADERS", "y", "kheaders archive records file mtimes"),
)


def nondeterministic_config(text: str) -> list[str]:
    """Notes on set symbols that make a kernel unreproducible. Pure.

    ``MODULE_SIG_KEY`` only counts with ``MODULE_SIG`` set (the default key
    path is then generated by the build)."""
    cfg = parse_config(text)
    notes = []
    for sym, value, why in _NONDETERMINISTIC:
        if cfg.get(sym) != value:
            continue
        if sym == "MODULE_SIG_KEY" and cfg.get("MODULE_SIG") != "y":
            continue
        notes.append(f"not reproducible: CONFIG_{sym} ({why})")
    return notes


def secret_notes(cfg: Mapping[str, str]) -> list[str]:
    """A note when a guest kernel config (:func:`parse_config`'s) cannot show a
    launch secret in ``<securityfs>/secrets/coco`` (efi_secret). Pure."""
    have = {sym: cfg.get(sym, "n") for sym in SECRET_SYMBOLS}
    if have["EFI_SECRET"] == "y":
        return []
    why = ("efi_secret is a module: the harness's initramfs carries the distro kernel's modules"
           if have["EFI_SECRET"] == "m" else "no efi_secret")
    return [f"no launch secret in the guest: CONFIG_EFI_SECRET={have['EFI_SECRET']} "
            f"(EFI_COCO_SECRET={have['EFI_COCO_SECRET']}): {why} (fixtures/kernel/efi-secret.config)"]


def snp_report_notes(cfg: Mapping[str, str]) -> list[str]:
    """A note when a guest kernel config (:func:`parse_config`'s) cannot fetch an SNP report
    over configfs-tsm, the one way the harness's busybox guest can ask. Pure."""
    have = {sym: cfg.get(sym, "n") for sym in SNP_REPORT_SYMBOLS}
    if all(v == "y" for v in have.values()):
        return []
    state = ", ".join(f"CONFIG_{s}={v}" for s, v in have.items())
    if have["SEV_GUEST"] == "n":
        why = "no sev-guest driver: neither /dev/sev-guest nor configfs-tsm"
    elif have["TSM_REPORTS"] == "n":
        why = ("no configfs-tsm (Linux >= 6.7); /dev/sev-guest alone needs an SNP_GET_REPORT ioctl tool, "
               "which the busybox guest has not")
    else:
        why = ("built as modules, which the harness's initramfs does not load (it loads its fixed list, "
               "images/modules.DEFAULT_GUEST_MODULES)")
    return [f"no SNP report from the guest: {state}: {why}"]
