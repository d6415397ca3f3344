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
from pytest_sev.host.report import FOR_SEV, FOR_SEV_ES, FOR_SEV_NOT_SNP, FOR_SNP, UNKNOWN, Check

REMEDY_KVM_AMD = ("load kvm_amd with SEV: modprobe kvm_amd sev=1 sev_es=1 "
                  "(or kvm_amd.sev=1 kvm_amd.sev_es=1 on the kernel command line)")
REMEDY_LOG = "the kernel log may have rotated: check 'dmesg | grep -i sev' after boot, as root"
MIN_KERNEL_SEV_ES = (5, 11)


# Remedies by PSP INIT error code: what the code means on real hosts, and what fixes it.
_INIT_REMEDIES: dict[int, str] = {
    HWERROR_PLATFORM: f"SEV firmware INIT error 0x13 means SMEE is off: {REMEDY_SMEE}",
    0x1: ("INVALID_PLATFORM_STATE: the PSP was not in the state SEV INIT needs. On SNP-capable hosts "
          "it follows a failed or unsupported SEV-SNP INIT (see the SEV-SNP line; firmware older than "
          "1.51 cannot do SNP; on Milan, SNP also needs a PSP bootloader >= 00.13.00.70, which only a BIOS "
          "update brings): update the BIOS / SEV firmware (amd_sev_fam19h_model*.sbin in "
          "/lib/firmware/amd), or disable SEV-SNP in the BIOS, then reboot"),
    0x3: ("INVALID_CONFIG: check the BIOS SNP settings (SNP Memory Coverage, IOMMU, SEV-ES ASID "
          "Space Limit) and update the SEV firmware"),
    0xE: "WBINVD_REQUIRED: update the SEV firmware (and the BIOS) to the current AMD release",
    0xFFFFFFFF: ("the PSP did not answer (command timed out): power-cycle the host and update the BIOS; "
                 "check for 'sev command ... timed out' in dmesg"),
}
_MAILBOX_REMEDY = ("a PSP mailbox status (not an SEV API code): the platform firmware refused the command. "
                   "Update the BIOS (AGESA/PSP firmware), enable SEV in the BIOS, and install the SEV "
                   "firmware file for this CPU (/lib/firmware/amd/amd_sev_fam*h_model*h.sbin)")
_MISSING_FW = ("the kernel found no SEV firmware file to load (it then runs the BIOS copy): "
               "install linux-firmware or AMD's amd_sev_fam*h_model*h.sbin into /lib/firmware/amd")


def init_remedy(code: int | None, missing_firmware: bool) -> str:
    """The remedy for a failed SEV INIT, chosen by its error code."""
    if code is not None and code in _INIT_REMEDIES:
        remedy = _INIT_REMEDIES[code]
    elif code is not None and code >= 0x8000:
        remedy = f"0x{code:x} is {_MAILBOX_REMEDY}"
    else:
        remedy = "the PSP refused SEV INIT: update the BIOS / SEV firmware and check the ccp messages in dmesg"
    if missing_firmware and code != HWERROR_PLATFORM:
        remedy += f"; also, {_MISSING_FW}"
    return remedy


def _firmware_notes(log: KernelLog) -> str:
    notes = []
    if log.snp_init is not None:
        notes.append(f"{log.snp_init.describe()} ({log.snp_init.line!r})")
    if len(log.psps) > 1 and log.sev_psps:
        others = log.psps_without_sev
        notes.append(f"SEV on PSP {', '.join(log.sev_psps)}"
                     + (f"; {', '.join(others)} without SEV (normal on multi-socket hosts)" if others else ""))
    return "; ".join(notes)


def firmware_check(log: KernelLog | None, log_error: str) -> Check:
    """SEV firmware: INIT outcome first (a later version line never hides a
    failure), then status errors, then the version from whichever line the
    kernel printed. A PSP without SEV is a failure only when no PSP has it."""
    name = "sev_firmware"
    if log is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})",
                     "run as root (dmesg needs CAP_SYSLOG when kernel.dmesg_restrict=1)", FOR_SEV)
    notes = _firmware_notes(log)
    tail = f"; {notes}" if notes else ""
    if log.sev_init is not None:
        fail = log.sev_init
        code = fail.error
        if code == HWERROR_PLATFORM:
            value = f"INIT failed: error 0x{code:x} (HWERROR_PLATFORM: memory encryption off)"
        else:
            value = fail.describe().replace("SEV INIT failed", "INIT failed")
        value += f" ({fail.line!r})"
        if log.firmware is not None:
            value += f"; firmware {log.firmware.describe()} read after the failure"
        return Check(name, "fail", value + tail, init_remedy(code, bool(log.missing_firmware)), FOR_SEV)
    if log.status_errors and log.firmware is None:
        device, code, line = log.status_errors[0]
        return Check(name, "fail", f"the PSP did not report its status: error 0x{code:x} ({line!r}){tail}",
                     f"0x{code:x} is {_MAILBOX_REMEDY}", FOR_SEV)
    if log.firmware is not None:
        return Check(name, "pass", log.firmware.describe() + tail, "", FOR_SEV)
    if log.psps_without_sev and not log.sev_psps:
        devices = ", ".join(log.psps_without_sev)
        return Check(name, "fail", f"no PSP supports SEV ('psp does not support SEV' from {devices})",
                     "enable SEV (and SMEE) in the BIOS; SEV needs an EPYC CPU and a BIOS that exposes it",
                     FOR_SEV)
    return Check(name, "skip", f"{UNKNOWN} (no 'SEV API' line from ccp in the kernel log)",
                 f"{REMEDY_LOG}; the ccp driver must be loaded (modprobe ccp)", FOR_SEV)


REMEDY_KVM_AMD_SNP = ("load kvm_amd with SEV-SNP: modprobe kvm_amd sev=1 sev_es=1 sev_snp=1 (or kvm_amd.sev_snp=1 "
                      "on the kernel command line; it is on by default where the host supports SNP)")
_ASID_REMEDIES: dict[str, str] = {
    "SEV": f"{REMEDY_KVM_AMD}; if already asked for, see sev_firmware and syscfg_smee",
    "SEV-ES": f"{REMEDY_KVM_AMD}; if already asked for, see sev_es_asids (BIOS SEV-ES ASID limit)",
    "SEV-SNP": (f"{REMEDY_KVM_AMD_SNP}; if already asked for, see syscfg_snpen, rmp_table, snp_iommu and "
                "snp_firmware (kvm_amd enables SNP only when the kernel and the PSP brought it up)"),
}


def asid_check(name: str, feature: str, log: KernelLog | None, log_error: str,
               needed: frozenset[str]) -> Check:
    """kvm_amd's ASID announcement for one feature, in any wording (a
    ``SEV-ES and SEV-SNP supported`` line counts for SEV-ES)."""
    if log is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})", "", needed)
    line = log.asids.get(feature)
    remedy = _ASID_REMEDIES[feature]
    if line is None:
        if feature != "SEV" and log.wording == "old" and "SEV" in log.asids:
            # Old kernels print the SEV-ES line only when SEV-ES got enabled, and
            # name SEV-SNP only in the combined "SEV-ES and SEV-SNP supported" line.
            said = "SEV-ES supported" if feature == "SEV-ES" else "SEV-ES and SEV-SNP supported"
            return Check(name, "fail", f"not enabled (kvm_amd announced SEV but no '{said}' line)",
                         remedy, needed)
        return Check(name, "skip", f"{UNKNOWN} (no {feature} ASID line from kvm_amd in the kernel log)",
                     REMEDY_LOG, needed)
    ok = line.usable
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
        asid_check("kernel_log_sev", "SEV", log, ev.kernel_log_error, FOR_SEV_NOT_SNP),
        asid_check("kernel_log_sev_es", "SEV-ES", log, ev.kernel_log_error, FOR_SEV_ES),
        asid_check("kernel_log_snp", "SEV-SNP", log, ev.kernel_log_error, FOR_SNP),
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
