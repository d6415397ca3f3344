"""Checks on the host kernel: SEV firmware, kvm_amd, devices, version (pure).

The kernel log is a ring buffer: on a long-running host the boot lines may
be gone, so a missing line is "unknown" (skip), never a failure. A line that
says ``disabled``/``unusable``, or an INIT failure, is a failure.
"""

from __future__ import annotations

from pytest_sev.host.checks_cpu import REMEDY_SMEE
from pytest_sev.host.evidence import KVM_API_VERSION, DeviceAccess, Evidence
from pytest_sev.host.parse_log import HWERROR_PLATFORM, KernelLog, parse_kernel_log
from pytest_sev.host.parse_tools import param_enabled, parse_kernel_release
from pytest_sev.host.report import FOR_SEV, FOR_SEV_ES, UNKNOWN, Check

REMEDY_KVM_AMD = ("load kvm_amd with SEV: modprobe kvm_amd sev=1 sev_es=1 "
                  "(or kvm_amd.sev=1 kvm_amd.sev_es=1 on the kernel command line)")
REMEDY_LOG = "the kernel log may have rotated: check 'dmesg | grep -i sev' after boot, as root"
MIN_KERNEL_SEV_ES = (5, 11)


def firmware_check(log: KernelLog | None, log_error: str) -> Check:
    name = "sev_firmware"
    if log is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})",
                     "run as root (dmesg needs CAP_SYSLOG when kernel.dmesg_restrict=1)", FOR_SEV)
    if log.init_error is not None:
        code = log.init_error
        if code == HWERROR_PLATFORM:
            value = f"INIT failed: error 0x{code:x} (HWERROR_PLATFORM: memory encryption off)"
            remedy = f"SEV firmware INIT error 0x13 means SMEE is off: {REMEDY_SMEE}"
        else:
            value = f"INIT failed: error 0x{code:x}"
            remedy = "the PSP refused SEV INIT: update the BIOS / SEV firmware and check the ccp messages in dmesg"
        return Check(name, "fail", f"{value} ({log.init_line!r})", remedy, FOR_SEV)
    if log.api is not None:
        major, minor, build = log.api
        return Check(name, "pass", f"SEV API:{major}.{minor} build:{build}", "", FOR_SEV)
    return Check(name, "skip", f"{UNKNOWN} (no 'SEV API' line from ccp in the kernel log)",
                 f"{REMEDY_LOG}; the ccp driver must be loaded (modprobe ccp)", FOR_SEV)


def asid_check(name: str, feature: str, log: KernelLog | None, log_error: str,
               needed: frozenset[str]) -> Check:
    if log is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})", "", needed)
    line = log.asids.get(feature)
    remedy = (f"{REMEDY_KVM_AMD}; if already asked for, see sev_firmware and syscfg_smee" if feature == "SEV"
              else f"{REMEDY_KVM_AMD}; if already asked for, see sev_es_asids (BIOS SEV-ES ASID limit)")
    if line is None:
        if feature == "SEV-ES" and log.wording == "old" and "SEV" in log.asids:
            # Old kernels print the SEV-ES line only when SEV-ES got enabled.
            return Check(name, "fail", "not enabled (kvm_amd announced SEV but no 'SEV-ES supported' line)",
                         remedy, needed)
        return Check(name, "skip", f"{UNKNOWN} (no {feature} ASID line from kvm_amd in the kernel log)",
                     REMEDY_LOG, needed)
    ok = line.state == "enabled" and line.count > 0
    return Check(name, "pass" if ok else "fail", line.describe(), "" if ok else remedy, needed)


def _param(name: str, param: str, ev: Evidence, needed: frozenset[str]) -> Check:
    if ev.kvm_amd is None:
        return Check(name, "fail", "kvm_amd not loaded", REMEDY_KVM_AMD, needed)
    raw = ev.kvm_amd.get(param)
    if raw is None:
        why = "kernel older than 5.11" if param == "sev_es" else "kernel without CONFIG_KVM_AMD_SEV"
        return Check(name, "fail", f"no '{param}' parameter ({why})",
                     "install a host kernel >= 5.11 with CONFIG_KVM_AMD_SEV=y", needed)
    if param_enabled(raw):
        return Check(name, "pass", raw, "", needed)
    see = "sev_es_asids and sev_firmware" if param == "sev_es" else "sev_firmware and syscfg_smee"
    return Check(name, "fail", f"{raw} (the effective value: not asked for, or asked for but unsupported)",
                 f"{REMEDY_KVM_AMD}; if already set, see {see}", needed)


def _dev_sev(d: DeviceAccess) -> Check:
    name = "dev_sev"
    if not d.exists:
        return Check(name, "fail", "absent",
                     "the ccp driver creates /dev/sev when the PSP firmware answers: "
                     "modprobe ccp and check its messages in dmesg", FOR_SEV)
    if not (d.readable and d.writable):
        access = "readable, not writable" if d.readable else "not readable"
        return Check(name, "fail", f"present, {access} ({d.error})",
                     "QEMU opens /dev/sev read-write: run as root or grant the runner user access (udev rule)",
                     FOR_SEV)
    return Check(name, "pass", "present, readable, writable", "", FOR_SEV)


def _dev_kvm(ev: Evidence) -> Check:
    name, d = "dev_kvm", ev.dev_kvm
    if not d.exists:
        return Check(name, "fail", "absent", "load kvm and kvm_amd (modprobe kvm_amd)", FOR_SEV)
    if not (d.readable and d.writable):
        return Check(name, "fail", f"present, cannot open read-write ({d.error})",
                     "run as root or add the runner user to the kvm group", FOR_SEV)
    if d.kvm_api != KVM_API_VERSION:
        return Check(name, "fail", f"opens, KVM_GET_API_VERSION = {d.kvm_api} ({d.error or 'expected 12'})",
                     "a broken or foreign /dev/kvm: reload kvm / kvm_amd", FOR_SEV)
    virt = sorted(ev.cpu_flags & {"svm", "vmx"})
    if not virt:
        return Check(name, "fail", "opens (API 12) but the CPU has neither svm nor vmx: it cannot run guests",
                     "a paravirtual or nested /dev/kvm without SVM: run on bare metal with SVM enabled in the BIOS",
                     FOR_SEV)
    return Check(name, "pass", f"opens, API {d.kvm_api}, cpu flag {virt[0]}", "", FOR_SEV)


def kernel_checks(ev: Evidence) -> list[Check]:
    log = parse_kernel_log(ev.kernel_log) if ev.kernel_log is not None else None
    checks = [
        firmware_check(log, ev.kernel_log_error),
        _param("kvm_amd_sev", "sev", ev, FOR_SEV),
        _param("kvm_amd_sev_es", "sev_es", ev, FOR_SEV_ES),
        asid_check("kernel_log_sev", "SEV", log, ev.kernel_log_error, FOR_SEV),
        asid_check("kernel_log_sev_es", "SEV-ES", log, ev.kernel_log_error, FOR_SEV_ES),
        _dev_sev(ev.dev_sev),
        _dev_kvm(ev),
    ]
    release = ev.kernel_release
    version = parse_kernel_release(release) if release else None
    if version is None:
        checks.append(Check("host_kernel", "skip", f"{UNKNOWN} (uname -r gave nothing)", "", FOR_SEV_ES))
    elif version >= MIN_KERNEL_SEV_ES:
        checks.append(Check("host_kernel", "pass", f"{release} (>= 5.11 for SEV-ES)", "", FOR_SEV_ES))
    else:
        checks.append(Check("host_kernel", "fail", f"{release} (SEV-ES host support needs >= 5.11)",
                            "install a host kernel >= 5.11 (or the AMD sev-es kernel build)", FOR_SEV_ES))
    return checks
