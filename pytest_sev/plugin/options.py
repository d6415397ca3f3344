"""Command-line options and ini keys of the plugin (one table, two views).

Every option can also be set in ``[tool.pytest.ini_options]`` under the same
name with dashes turned into underscores (``sev_mode = "sev-es"``); the
command line wins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.config import ACCELS, FIRMWARES, LAUNCHERS, ConfigError, RunConfig, build_config, check_writable_dir
from pytest_sev.modes import RUN_MODES

#: (flag, dest, help, is_flag)
OPTIONS = (
    ("--sev-snp", "sev_snp", "expect an SEV-SNP capable host: boot SEV-SNP guests (SEV-ES and SEV where the "
     "host can), fail if it cannot run SNP guests", True),
    ("--sev-es", "sev_es", "expect an SEV-ES capable host: boot SEV-ES guests, fail if the host cannot", True),
    ("--sev", "sev", "expect an SEV capable host: boot SEV guests, fail if the host cannot", True),
    ("--sev-mode", "sev_mode", f"host expectation: {'|'.join(RUN_MODES)} (default auto)", False),
    ("--qemu", "qemu", "QEMU binary (default qemu-system-x86_64 on PATH)", False),
    ("--launcher", "launcher", f"who starts guests: {'|'.join(LAUNCHERS)} (libvirt: transient libvirtd domains)", False),
    ("--accel", "accel", f"accelerator: {'|'.join(ACCELS)} (auto: KVM only if usable)", False),
    ("--ovmf-code", "ovmf_code", "OVMF_CODE.fd (default: a build prefix, then the distro's)", False),
    ("--ovmf-vars", "ovmf_vars", "OVMF_VARS.fd template copied per guest", False),
    ("--ovmf-amdsev", "ovmf_amdsev", "OVMF.amdsev.fd (OvmfPkg/AmdSev) for attested launches "
     "(default: an installed one; build: --components ovmf-amdsev=build)", False),
    ("--sev-cek", "sev_cek", "AMD's signed CEK of this chip (AMD's key server, by chip id) for attested launches "
     "whose platform chain carries the firmware's unsigned CEK", False),
    ("--guest-kernel", "guest_kernel", "kernel for the default guest (default: provisioned distro kernel)", False),
    ("--guest-initrd", "guest_initrd", "initrd for --guest-kernel (default: the built busybox initramfs)", False),
    ("--guest-image", "guest_image", "disk image (qcow2/raw) to boot through GRUB with a login", False),
    ("--guest-firmware", "guest_firmware", f"firmware of plain guests: {'|'.join(FIRMWARES)}", False),
    ("--guest-timeout", "guest_timeout", "seconds a guest may take to boot (default 300)", False),
    ("--guest-user", "guest_user", "login user of --guest-image guests (default root)", False),
    ("--guest-password", "guest_password", "login password of --guest-image guests", False),
    ("--guest-boot-entry", "guest_boot_entry", "regex of the GRUB entry to boot (the SEV-ES kernel)", False),
    ("--sev-policy", "sev_policy", "explicit SEV guest policy (e.g. 0x5); must agree with the mode", False),
    ("--allow-debug", "allow_debug", "clear NODBG in the computed policy, as launch-qemu.sh -allow-debug", True),
    ("--dma-sizes", "dma_sizes", "SWIOTLB pool sizes for the DMA matrix, e.g. '1M 8M 64M 512M auto'", False),
    ("--max-guests", "max_guests", "guests at once on this host across xdist workers and runs "
     "(default: what its CPUs and memory hold; SEV/SEV-ES guests are also bounded by free ASIDs)", False),
    ("--dma-baseline", "dma_baseline", "JSON baseline of SEV/SEV-ES DMA outcomes to compare to", False),
    ("--dma-record-baseline", "dma_record_baseline", "write this run's SEV/SEV-ES DMA outcomes to FILE", False),
    ("--guest-log-dir", "guest_log_dir", "where logs of failed guests are kept (default reports/guest-logs)", False),
    ("--snp-cert-dir", "snp_cert_dir", "directory of VCEK certificates for SEV-SNP reports "
     "(DIR/<product>/<hwid>/<tcb>.der, as `snp-report fetch-vcek` stores them), used when the host gives none", False),
    ("--snp-min-tcb", "snp_min_tcb", "minimum REPORTED_TCB of SEV-SNP reports, as the CLI's --min-tcb: "
     "bootloader=N,tee=N,snp=N,microcode=N (fmc=N on Turin) or a raw TCB_VERSION", False),
)


#: options whose empty value is a mistake, not "use the default"
GIVEN_EMPTY_IS_REFUSED = ("dma_sizes",)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("sev", "pytest-sev: AMD SEV/SEV-ES guests under QEMU")
    for flag, dest, help_, is_flag in OPTIONS:
        if is_flag:
            group.addoption(flag, dest=dest, action="store_true", default=None, help=help_)
            parser.addini(dest, help_, type="bool", default=None)
        else:
            group.addoption(flag, dest=dest, default=None, help=help_)
            parser.addini(dest, help_, default=None)
    parser.addini("sev_ledger", "check that each guest-booting test leaves the host as it found it "
                  "(QEMU, budget slots, ASIDs, kvm_amd, host kernel errors; default true)",
                  type="bool", default=True)


def read_config(config: pytest.Config) -> RunConfig:
    """RunConfig from options then ini; bad values become a UsageError."""

    def get(dest: str):
        value = config.getoption(dest)
        if value is None:
            value = config.getini(dest)
        if value == "" and dest in GIVEN_EMPTY_IS_REFUSED:
            return value  # build_config refuses it: an empty list of sizes is no request for the defaults
        return value if value not in ("", []) else None

    try:
        cfg = build_config(get)
        log_dir = cfg.log_dir if cfg.log_dir.is_absolute() else Path(config.rootpath) / cfg.log_dir
        check_writable_dir(log_dir, "--guest-log-dir")
        return cfg
    except ConfigError as exc:
        raise pytest.UsageError(f"pytest-sev: {exc}") from None
