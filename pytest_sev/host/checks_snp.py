"""Checks an SEV-SNP guest needs of its host, beyond SEV and SEV-ES (pure).

The list follows virtee/snphost ``ok`` (SYSCFG.SNPEn, the RMP MSRs, SNP
firmware >= 1.51, kvm_amd ``sev_snp``) and the kernel's own words
(sev-reference.md 9). Where a hardware register could not be read, the
kernel's words may answer instead, and the value says which one did:

* SNP_INIT succeeds only when SYSCFG.SNPEn is set on every core (SEV-SNP
  firmware ABI, SNP_INIT), and kvm_amd enables SNP only after the kernel set up
  the RMP table and set SNPEn; so an ``SEV-SNP API`` line, ``SEV-SNP firmware
  initialized`` or an enabled SNP ASID line is the kernel saying "SNPEn is on".
* The IOMMU driver refuses SNP before anything else runs (it then clears the
  host's SNP attribute, so ccp never initialises SNP): SNP coming up is the
  kernel saying "the IOMMU accepted SNP".

As everywhere in the host report, a line that is missing from a kernel log is
"unknown" (the ring buffer may have rotated), never "no".
"""

from __future__ import annotations

from pytest_sev.host.checks_cpu import CpuView
from pytest_sev.host.checks_kernel import REMEDY_KVM_AMD_SNP, REMEDY_LOG, init_remedy
from pytest_sev.host.evidence import Evidence
from pytest_sev.host.parse_log import KernelLog
from pytest_sev.host.parse_snp import SnpLog, parse_syscfg_snpen, rmp_from_msrs
from pytest_sev.host.parse_tools import format_version, param_enabled, parse_qemu_version
from pytest_sev.host.report import FOR_SNP, UNKNOWN, Check
from pytest_sev.model.spec import SNP_MIN_QEMU

MIN_SNP_FIRMWARE = (1, 51)

REMEDY_SNP_BIOS = ("enable SEV-SNP in the BIOS (AMD CBS > CPU Common Options: SEV-SNP Support and SNP Memory "
                   "(RMP Table) Coverage = Enabled; NBIO Common Options: IOMMU and SEV-SNP Support = Enabled), "
                   "with SMEE on (see syscfg_smee), then reboot")
REMEDY_SNP_KERNEL = "boot a host kernel with SEV-SNP host support (Linux >= 6.11 with CONFIG_KVM_AMD_SEV=y)"
REMEDY_MSR = "load the msr driver (modprobe msr) and run as root to read SYSCFG and the RMP MSRs"
REMEDY_SNP_FIRMWARE = ("SEV-SNP needs SEV firmware >= 1.51: update the BIOS, or install AMD's "
                       "amd_sev_fam19h_model*.sbin into /lib/firmware/amd and reboot")
REMEDY_QEMU_SNP = ("install a QEMU >= 9.1 (Debian bookworm-backports' qemu-system-x86 10.0, or build it: "
                   "python -m pytest_sev build qemu) and pass it with --qemu PATH")

# Remedies for the IOMMU driver's refusals, by kind (drivers/iommu/amd/init.c iommu_snp_enable).
_IOMMU_REMEDIES: dict[str, str] = {
    "passthrough": ("SNP needs the IOMMU on and translating: remove iommu=pt (and iommu.passthrough=1, "
                    "amd_iommu=off) from the host kernel command line, or add iommu=nopt where the kernel "
                    "defaults to passthrough (CONFIG_IOMMU_DEFAULT_PASSTHROUGH, as some distributions build "
                    "it); enable the IOMMU in the BIOS; then reboot. (amd_iommu=on is not an option of the "
                    "AMD IOMMU driver: it prints 'AMD-Vi: Unknown option'.)"),
    "v2-page-table": "SNP needs the IOMMU's v1 page table: drop amd_iommu=pgtbl_v2 (or boot with amd_iommu=pgtbl_v1)",
    "no-snp-feature": ("the IOMMU does not offer SNP (EFR SNPSup clear): enable SEV-SNP in the BIOS's NBIO "
                       "options and update the BIOS (AMDESE/AMDSEV#155)"),
    "rmp-init": f"the kernel could not set up the RMP table: see rmp_table; {REMEDY_SNP_BIOS}",
}


def _not_applicable(name: str, v: CpuView) -> Check | None:
    """An n/a row where the CPU answers first: not AMD, or CPUID without SNP
    (the ``snp`` row then fails, naming the cause; a register or kernel line
    for a feature the silicon lacks would only repeat it)."""
    if v.is_amd is False:
        return Check(name, "skip", "n/a (not an AMD CPU)", "", FOR_SNP)
    if v.sev is not None and not v.sev.snp:
        return Check(name, "skip", "n/a (no SEV-SNP in CPUID 0x8000001F: see snp)", "", FOR_SNP)
    return None


def snp_up_line(log: KernelLog | None) -> str:
    """The kernel's or the PSP's line saying SNP came up this boot, or ''.

    An SNP INIT failure wins over a kvm_amd line: older SNP host kernels
    announce SNP ASIDs from the CPU feature alone, even when SNP_INIT failed."""
    if log is None or log.snp_init is not None:
        return ""
    if log.snp_api is not None:
        return log.snp_api.line
    if log.snp_initialized:
        return "SEV-SNP firmware initialized"
    line = log.asids.get("SEV-SNP")
    return line.line if line is not None and line.usable else ""


def syscfg_snpen_check(ev: Evidence, v: CpuView, log: KernelLog | None) -> Check:
    name = "syscfg_snpen"
    if (na := _not_applicable(name, v)) is not None:
        return na
    if ev.syscfg is not None:
        on = parse_syscfg_snpen(ev.syscfg)
        value = (f"{'enabled' if on else 'disabled'} (MSR 0xC0010010 = 0x{ev.syscfg:x} via {ev.syscfg_source}, "
                 f"bit 24 {'set' if on else 'clear'})")
        remedy = "" if on else (f"the kernel sets SNPEn when it brings SNP up: {REMEDY_SNP_BIOS}; "
                                f"{REMEDY_SNP_KERNEL}; see rmp_table and snp_iommu")
        return Check(name, "pass" if on else "fail", value, remedy, FOR_SNP)
    said = snp_up_line(log)
    if said:
        return Check(name, "pass",
                     f"enabled (the kernel's own words: {said!r}; SNP_INIT and kvm_amd's SNP need SNPEn on every "
                     f"core; the MSR itself was not read: {ev.syscfg_error})", "", FOR_SNP)
    return Check(name, "skip", f"{UNKNOWN} ({ev.syscfg_error}; and no kernel line says SNP came up)",
                 REMEDY_MSR, FOR_SNP)


def rmp_table_check(ev: Evidence, v: CpuView, snp: SnpLog | None) -> Check:
    """The RMP table: the kernel's line first (it read the MSRs at boot), then the MSRs."""
    name = "rmp_table"
    if (na := _not_applicable(name, v)) is not None:
        return na
    not_reserved = f"the BIOS reserved no RMP table: {REMEDY_SNP_BIOS}"
    if snp is not None and snp.rmp is not None:
        return Check(name, "pass", f"{snp.rmp.describe()} ({snp.rmp.said!r})", "", FOR_SNP)
    if snp is not None and snp.rmp_not_reserved:
        return Check(name, "fail", f"not reserved ({snp.rmp_not_reserved!r})", not_reserved, FOR_SNP)
    if ev.rmp_msrs is not None:
        rmp, why = rmp_from_msrs(*ev.rmp_msrs)
        if rmp is None:
            return Check(name, "fail", why, not_reserved, FOR_SNP)
        return Check(name, "pass", f"{rmp.describe()} (MSR 0xC0010132/0xC0010133)", "", FOR_SNP)
    where = "no RMP table line in the kernel log" if snp is not None else "kernel log not readable"
    return Check(name, "skip", f"{UNKNOWN} ({where}; RMP MSRs not read: {ev.rmp_msrs_error})",
                 f"{REMEDY_MSR}; {REMEDY_LOG}", FOR_SNP)


def iommu_check(v: CpuView, log: KernelLog | None, snp: SnpLog | None, log_error: str) -> Check:
    name = "snp_iommu"
    if (na := _not_applicable(name, v)) is not None:
        return na
    if snp is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})", "", FOR_SNP)
    if snp.iommu_refusal is not None:
        refusal = snp.iommu_refusal
        return Check(name, "fail", f"the IOMMU driver refused SNP ({refusal.line!r})",
                     _IOMMU_REMEDIES[refusal.kind], FOR_SNP)
    if snp.iommu_enabled:
        return Check(name, "pass", f"SNP accepted ({snp.iommu_enabled!r})", "", FOR_SNP)
    said = snp_up_line(log)
    if said:
        return Check(name, "pass", f"no IOMMU refusal, and SNP came up ({said!r})", "", FOR_SNP)
    return Check(name, "skip", f"{UNKNOWN} (no AMD-Vi SNP line in the kernel log, and no line says SNP came up)",
                 REMEDY_LOG, FOR_SNP)


def _snp_init_remedy(code: int | None) -> str:
    if code == 0x3:
        return ("INVALID_CONFIG: SNP_INIT found the platform not set up for SNP: SNPEn must be on for every core "
                f"(see syscfg_snpen, rmp_table, snp_iommu); {REMEDY_SNP_BIOS}; on Milan the PSP bootloader must be "
                ">= 00.13.00.70 and the SEV firmware >= 1.51 (a BIOS update brings both)")
    return init_remedy(code, False)


def _version_ok(major: int, minor: int) -> bool:
    return (major, minor) >= MIN_SNP_FIRMWARE


def snp_firmware_check(log: KernelLog | None, log_error: str) -> Check:
    """SNP_INIT outcome, then the SNP firmware version (>= 1.51)."""
    name = "snp_firmware"
    if log is None:
        return Check(name, "skip", f"{UNKNOWN} (kernel log not readable: {log_error})", "", FOR_SNP)
    if log.snp_init is not None:
        fail = log.snp_init
        return Check(name, "fail", f"{fail.describe()} ({fail.line!r})", _snp_init_remedy(fail.error), FOR_SNP)
    if log.snp_firmware_too_old:
        return Check(name, "fail", f"too old ({log.snp_firmware_too_old!r})", REMEDY_SNP_FIRMWARE, FOR_SNP)
    fw = log.snp_api or (log.firmware if log.snp_initialized else None)
    if fw is not None:
        ok = _version_ok(fw.major, fw.minor)
        value = f"{fw.major}.{fw.minor} build:{fw.build} ({'>=' if ok else 'below'} 1.51; {fw.line!r})"
        return Check(name, "pass" if ok else "fail", value, "" if ok else REMEDY_SNP_FIRMWARE, FOR_SNP)
    if log.firmware is not None:
        fw = log.firmware
        if not _version_ok(fw.major, fw.minor):
            return Check(name, "fail", f"{fw.major}.{fw.minor} build:{fw.build} (SEV-SNP needs >= 1.51; {fw.line!r})",
                         REMEDY_SNP_FIRMWARE, FOR_SNP)
        if fw.source != "SEV API":
            # only the update line: the version is fine, but nothing says whether SNP_INIT ran
            return Check(name, "skip", f"{UNKNOWN} (firmware {fw.major}.{fw.minor} build:{fw.build} from {fw.line!r}; "
                         "no 'SEV-SNP API' or 'SEV API' line says whether SNP_INIT ran)", REMEDY_LOG, FOR_SNP)
        # ccp prints "SEV-SNP API" in place of, or next to, "SEV API" once SNP_INIT succeeded
        return Check(name, "fail",
                     f"SNP not initialised: ccp printed {fw.line!r} but no 'SEV-SNP API' line this boot",
                     f"{REMEDY_SNP_KERNEL}; {REMEDY_SNP_BIOS}; see snp_iommu and rmp_table", FOR_SNP)
    return Check(name, "skip", f"{UNKNOWN} (no 'SEV-SNP API' or 'SEV API' line from ccp in the kernel log)",
                 REMEDY_LOG, FOR_SNP)


def kvm_amd_snp_check(ev: Evidence) -> Check:
    """kvm_amd's ``sev_snp`` parameter: the effective value, like ``sev`` and ``sev_es``.

    An absent parameter on a kvm_amd that has ``sev`` is a fact, not a gap: the
    parameter is read from the same directory, and only kernels with SNP host
    support (upstream >= 6.11, AMD's snp-host kernels) have it."""
    name = "kvm_amd_sev_snp"
    if ev.kvm_amd is None:
        return Check(name, "fail", "kvm_amd not loaded", REMEDY_KVM_AMD_SNP, FOR_SNP)
    raw = ev.kvm_amd.get("sev_snp")
    if raw is None:
        why = ("this kvm_amd has no SEV-SNP host support" if "sev" in ev.kvm_amd
               else "kernel without CONFIG_KVM_AMD_SEV")
        return Check(name, "fail", f"no 'sev_snp' parameter ({why})", REMEDY_SNP_KERNEL, FOR_SNP)
    if param_enabled(raw):
        return Check(name, "pass", raw, "", FOR_SNP)
    return Check(name, "fail", f"{raw} (the effective value: not asked for, or asked for but unsupported)",
                 f"{REMEDY_KVM_AMD_SNP}; if already set, see syscfg_snpen, rmp_table, snp_iommu and snp_firmware",
                 FOR_SNP)


def qemu_snp_check(ev: Evidence) -> Check:
    """QEMU launches SNP guests since 9.1 (``sev-snp-guest``, qapi/qom.json "Since: 9.1")."""
    name = "qemu_snp"
    if ev.qemu_version_text is None:
        return Check(name, "fail", f"{ev.qemu}: not found or not runnable", REMEDY_QEMU_SNP, FOR_SNP)
    v = parse_qemu_version(ev.qemu_version_text)
    if v is None:
        return Check(name, "skip", f"{UNKNOWN} (QEMU version not parsed: see qemu_version)", "", FOR_SNP)
    if v[:2] >= SNP_MIN_QEMU:
        return Check(name, "pass", f"{format_version(v)} (>= 9.1 for SEV-SNP)", "", FOR_SNP)
    return Check(name, "fail", f"SEV-SNP needs QEMU >= 9.1 (this one is {format_version(v)})",
                 REMEDY_QEMU_SNP, FOR_SNP)


def snp_checks(ev: Evidence, v: CpuView, log: KernelLog | None, snp: SnpLog | None) -> list[Check]:
    return [
        syscfg_snpen_check(ev, v, log),
        rmp_table_check(ev, v, snp),
        iommu_check(v, log, snp, ev.kernel_log_error),
        snp_firmware_check(log, ev.kernel_log_error),
        kvm_amd_snp_check(ev),
        qemu_snp_check(ev),
    ]
