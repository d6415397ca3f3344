"""probe_host(): gather evidence, judge it, return a HostReport.

The report always holds the same checks in the same order (``CHECK_NAMES``),
whatever the host: the host suite parametrizes over them at collection time,
before any probing, and a check that cannot be judged is a ``skip``, not a
missing row. The order puts root causes first (vendor, CPUID, BIOS, firmware
before kvm_amd and QEMU) so ``first_failure`` names the thing to fix first.
"""

from __future__ import annotations

from pathlib import Path

from pytest_sev.host.checks_cpu import cpu_checks, cpu_view
from pytest_sev.host.checks_kernel import kernel_checks
from pytest_sev.host.checks_snp import snp_checks
from pytest_sev.host.checks_tools import tool_checks
from pytest_sev.host.commands import Runner, SubprocessRunner
from pytest_sev.host.evidence import Evidence, gather
from pytest_sev.host.parse_log import parse_kernel_log
from pytest_sev.host.parse_snp import parse_snp_log
from pytest_sev.host.parse_tools import format_version, parse_memlock, parse_qemu_version
from pytest_sev.host.qmp_probe import QmpProbe
from pytest_sev.host.report import UNKNOWN, HostReport

CHECK_NAMES: tuple[str, ...] = (
    "cpu_vendor", "cpu_model", "microcode",
    "sme", "sev", "sev_es", "snp",
    "cbitpos", "reduced_phys_bits", "encrypted_guests", "sev_es_asids",
    "syscfg_smee", "syscfg_snpen", "rmp_table", "snp_iommu", "sev_firmware", "snp_firmware",
    "kvm_amd_sev", "kvm_amd_sev_es", "kvm_amd_sev_snp", "kernel_log_sev", "kernel_log_sev_es", "kernel_log_snp",
    "dev_sev", "dev_kvm", "host_kernel",
    "qemu_version", "qemu_snp", "qmp_sev_capabilities", "virsh_sev", "ovmf", "memlock",
)


def facts_of(ev: Evidence) -> dict[str, str]:
    v = cpu_view(ev)
    info, sev = v.info, v.sev
    log = parse_kernel_log(ev.kernel_log) if ev.kernel_log is not None else None
    qemu_v = parse_qemu_version(ev.qemu_version_text) if ev.qemu_version_text else None
    facts = {
        "cpu_vendor": info.vendor if info else UNKNOWN,
        "cpu_model": info.model_name if info else UNKNOWN,
        "family_model_stepping": f"{info.family}/{info.model}/{info.stepping}" if info else UNKNOWN,
        "microcode": (info.microcode or UNKNOWN) if info else UNKNOWN,
        "cpuid_source": v.source,
        "cbitpos": str(sev.cbitpos) if sev else UNKNOWN,
        "reduced_phys_bits": str(sev.reduced_phys_bits) if sev else UNKNOWN,
        "encrypted_guests": str(sev.encrypted_guests) if sev else UNKNOWN,
        "sev_es_asids": str(sev.sev_es_asids) if sev else UNKNOWN,
        "sev_api": f"{log.api[0]}.{log.api[1]}" if log and log.api else UNKNOWN,
        "sev_build": str(log.api[2]) if log and log.api else UNKNOWN,
        "host_kernel": ev.kernel_release or UNKNOWN,
        "qemu": ev.qemu,
        "qemu_version": format_version(qemu_v) if qemu_v else UNKNOWN,
        "qemu_accel": ev.qmp.accel,
        "kvm_amd_sev": (ev.kvm_amd or {}).get("sev", UNKNOWN),
        "kvm_amd_sev_es": (ev.kvm_amd or {}).get("sev_es", UNKNOWN),
        "kvm_amd_sev_snp": (ev.kvm_amd or {}).get("sev_snp", UNKNOWN),
        "snp_api": f"{log.snp_api.major}.{log.snp_api.minor}" if log and log.snp_api else UNKNOWN,
        "ovmf_code": ev.ovmf_code or UNKNOWN,
        "ovmf_vars": ev.ovmf_vars or UNKNOWN,
        "memlock": (parse_memlock(ev.limits) if ev.limits else None) or UNKNOWN,
    }
    return facts


def build_report(ev: Evidence) -> HostReport:
    """Judge gathered evidence (pure: no I/O)."""
    view = cpu_view(ev)
    log = parse_kernel_log(ev.kernel_log) if ev.kernel_log is not None else None
    snp = parse_snp_log(ev.kernel_log) if ev.kernel_log is not None else None
    checks = [*cpu_checks(ev), *kernel_checks(ev), *snp_checks(ev, view, log, snp), *tool_checks(ev, view.sev)]
    by_name = {c.name: c for c in checks}
    if set(by_name) != set(CHECK_NAMES) or len(checks) != len(CHECK_NAMES):
        raise AssertionError(f"probe produced {sorted(by_name)}, CHECK_NAMES says {sorted(CHECK_NAMES)}")
    return HostReport([by_name[n] for n in CHECK_NAMES], facts_of(ev))


def probe_host(root: Path = Path("/"), runner: Runner | None = None, qemu: str = "qemu-system-x86_64",
               ovmf_code: str | Path | None = None, ovmf_vars: str | Path | None = None,
               *, qmp: QmpProbe | None = None) -> HostReport:
    """Probe the host under ``root`` (``/`` for this machine).

    ``runner`` runs host commands (default: real subprocesses with a timeout);
    ``qmp`` answers ``query-sev-capabilities`` for (qemu, accel) (default:
    start QEMU ``-machine none``); recorded hosts pass replaying versions of both.
    """
    ev = gather(Path(root), runner or SubprocessRunner(), qemu,
                None if ovmf_code is None else str(ovmf_code),
                None if ovmf_vars is None else str(ovmf_vars), qmp)
    return build_report(ev)
