"""Checks on the processor: vendor, CPUID 0x8000001F, SYSCFG.SMEE (pure).

CPUID is preferred: it says what the silicon can do and carries the numbers
(C-bit, ASID split). Without ``/dev/cpu/0/cpuid`` the kernel's cpuinfo flags
stand in, and every value says which source it came from, because an absent
``sev`` flag can also mean "the BIOS left memory encryption off".
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_sev.host.evidence import Evidence
from pytest_sev.host.parse_cpu import CpuInfo, SevCpuid, decode_sev_leaf, parse_cpuinfo, parse_syscfg_smee
from pytest_sev.host.report import FOR_NONE, FOR_SEV, FOR_SEV_ES, FOR_SNP, UNKNOWN, Check

CPUID_SOURCE = "/dev/cpu/0/cpuid"
CPUINFO_SOURCE = "/proc/cpuinfo"

REMEDY_NOT_AMD = "SEV, SEV-ES and SEV-SNP need an AMD EPYC host: run on an EPYC runner, or use --sev-mode=off / auto here"
REMEDY_CPUID = "load the cpuid driver (modprobe cpuid) and run as root so CPUID 0x8000001F can be read"
REMEDY_SMEE = ("enable memory encryption in the BIOS: SMEE (AMD CBS > CPU Common Options > SMEE) = Enabled, "
               "and SEV / SEV-ES support, then reboot")
REMEDY_ES_ASIDS = ("the BIOS reserves no ASIDs for SEV-ES: raise 'SEV-ES ASID Space Limit' "
                   "(AMD CBS > CPU Common Options > SEV-ES ASID Space Limit; CPUID EDX = that limit) above 1, e.g. 100")


@dataclass(frozen=True)
class CpuView:
    info: CpuInfo | None
    sev: SevCpuid | None  # decoded CPUID 0x8000001F, None when unavailable
    why_no_cpuid: str

    @property
    def source(self) -> str:
        if self.sev is not None or "not implemented" in self.why_no_cpuid:
            return CPUID_SOURCE
        return CPUINFO_SOURCE if self.info is not None else "none"

    @property
    def is_amd(self) -> bool | None:
        return None if self.info is None else self.info.vendor == "AuthenticAMD"


def cpu_view(ev: Evidence) -> CpuView:
    info = parse_cpuinfo(ev.cpuinfo) if ev.cpuinfo else None
    if ev.cpuid:
        sev, why = decode_sev_leaf(ev.cpuid)
    else:
        sev, why = None, ev.cpuid_error or "no CPUID read"
    return CpuView(info, sev, why)


def _feature(name: str, bit_name: str, flag: str, v: CpuView, needed: frozenset[str],
             missing_remedy: str) -> Check:
    """A CPUID 0x8000001F feature bit, or its cpuinfo flag as a fallback."""
    if v.sev is not None:
        has = getattr(v.sev, bit_name)
        value = f"{'yes' if has else 'no'} (CPUID 0x8000001F EAX=0x{v.sev.eax:08x})"
        return Check(name, "pass" if has else "fail", value, "" if has else missing_remedy, needed)
    if "not implemented" in v.why_no_cpuid:
        return Check(name, "fail", f"no ({v.why_no_cpuid})", missing_remedy, needed)
    if v.info is None:
        return Check(name, "skip", f"{UNKNOWN} ({v.why_no_cpuid}; no /proc/cpuinfo)", REMEDY_CPUID, needed)
    if flag in v.info.flags:
        return Check(name, "pass", f"yes (/proc/cpuinfo flag '{flag}'; {v.why_no_cpuid})", "", needed)
    return Check(name, "fail", f"no (/proc/cpuinfo has no '{flag}' flag; {v.why_no_cpuid})",
                 f"the kernel hides '{flag}' when the CPU lacks it or the BIOS left memory encryption off: "
                 f"{REMEDY_SMEE}; {REMEDY_CPUID} for the hardware answer", needed)


def _number(name: str, v: CpuView, needed: frozenset[str], present: bool, value: str,
            ok: bool, remedy: str, feature: str) -> Check:
    """A number from CPUID 0x8000001F; skipped when CPUID or the feature is absent."""
    if v.sev is None:
        if "not implemented" in v.why_no_cpuid:
            return Check(name, "skip", f"n/a ({v.why_no_cpuid})", "", needed)
        return Check(name, "skip", f"{UNKNOWN} ({v.why_no_cpuid})", REMEDY_CPUID if v.is_amd else "", needed)
    if not present:
        return Check(name, "skip", f"n/a (no {feature})", "", needed)
    return Check(name, "pass" if ok else "fail", value, "" if ok else remedy, needed)


def cpu_checks(ev: Evidence) -> list[Check]:
    v = cpu_view(ev)
    info, sev = v.info, v.sev
    checks: list[Check] = []
    if info is None:
        checks.append(Check("cpu_vendor", "skip", f"{UNKNOWN} (no /proc/cpuinfo)", "", FOR_SEV))
        checks.append(Check("cpu_model", "info", UNKNOWN))
        checks.append(Check("microcode", "info", UNKNOWN))
    else:
        amd = info.vendor == "AuthenticAMD"
        checks.append(Check("cpu_vendor", "pass" if amd else "fail", info.vendor or UNKNOWN,
                            "" if amd else REMEDY_NOT_AMD, FOR_SEV))
        checks.append(Check("cpu_model", "info",
                            f"{info.model_name} (family {info.family} model {info.model} stepping {info.stepping})"))
        checks.append(Check("microcode", "info", info.microcode or UNKNOWN))

    no_sev = "this CPU does not implement SEV: use an AMD EPYC (7001 Naples or later)"
    # SME is reported, not required (cpuinfo lists 'sme' only while SME is active).
    sme = _feature("sme", "sme", "sme", v, FOR_NONE, "")
    checks.append(Check("sme", "info", sme.value) if sme.status != "skip" else sme)
    checks.append(_feature("sev", "sev", "sev", v, FOR_SEV, no_sev))
    checks.append(_feature("sev_es", "sev_es", "sev_es", v, FOR_SEV_ES,
                           "this CPU does not implement SEV-ES: use an AMD EPYC 7002 (Rome) or later"))
    checks.append(_feature("snp", "snp", "sev_snp", v, FOR_SNP,
                           "this CPU does not implement SEV-SNP: use an AMD EPYC 7003 (Milan) or later"))

    has_sev = bool(sev and sev.sev)
    has_es = bool(sev and sev.sev_es)
    cbit = sev.cbitpos if sev else 0
    checks.append(_number("cbitpos", v, FOR_SEV, has_sev, str(cbit), 32 <= cbit <= 63,
                          "a C-bit outside 32..63 is not plausible: update the BIOS / microcode", "SEV"))
    not_there = "n/a" if "not implemented" in v.why_no_cpuid else UNKNOWN
    checks.append(Check("reduced_phys_bits", "info",
                        str(sev.reduced_phys_bits) if sev else f"{not_there} ({v.why_no_cpuid})"))
    ecx = sev.encrypted_guests if sev else 0
    checks.append(_number("encrypted_guests", v, FOR_SEV, has_sev, f"{ecx} (CPUID 0x8000001F ECX)", ecx > 0,
                          "the CPU reports no encrypted-guest slots: enable SEV in the BIOS", "SEV"))
    edx = sev.min_sev_asid if sev else 0
    es = sev.sev_es_asids if sev else 0
    es_value = (f"{es} (CPUID 0x8000001F EDX={edx}: SEV-ES ASIDs 1-{edx - 1})" if es
                else f"0 (CPUID 0x8000001F EDX={edx}: no ASID below the minimum SEV ASID)")
    checks.append(_number("sev_es_asids", v, FOR_SEV_ES, has_es, es_value, es > 0, REMEDY_ES_ASIDS, "SEV-ES"))
    checks.append(syscfg_check(ev, v))
    return checks


def syscfg_check(ev: Evidence, v: CpuView) -> Check:
    if v.is_amd is False:
        return Check("syscfg_smee", "skip", "n/a (not an AMD CPU)", "", FOR_SEV)
    if ev.syscfg is None:
        if v.info is not None and "sev" in v.info.flags:
            # The kernel read SYSCFG at boot and clears 'sev' when SMEE is off
            # (arch/x86/kernel/cpu/amd.c): a kept flag is the kernel's own "enabled".
            return Check("syscfg_smee", "pass",
                         f"enabled (the kernel kept the cpuinfo 'sev' flag, which it clears at boot when "
                         f"SYSCFG.SMEE is off; the MSR itself was not read: {ev.syscfg_error})", "", FOR_SEV)
        value = f"{UNKNOWN} ({ev.syscfg_error})"
        if v.sev is not None and v.sev.sev and v.info is not None:
            # The kernel clears the 'sev' flag when SYSCFG.SMEE is off: a strong hint, not a reading.
            value += "; CPUID has SEV but the kernel hid the 'sev' flag, as it does when SMEE is off"
        return Check("syscfg_smee", "skip", value,
                     "load the msr driver (modprobe msr) and run as root to read SYSCFG", FOR_SEV)
    on = parse_syscfg_smee(ev.syscfg)
    value = (f"{'enabled' if on else 'disabled'} (MSR 0xC0010010 = 0x{ev.syscfg:x} "
             f"via {ev.syscfg_source}, bit 23 {'set' if on else 'clear'})")
    return Check("syscfg_smee", "pass" if on else "fail", value, "" if on else REMEDY_SMEE, FOR_SEV)
