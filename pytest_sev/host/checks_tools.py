"""Checks on the user-space side: QEMU, its SEV answer, libvirt, OVMF, memlock (pure).

QEMU's ``query-sev-capabilities`` is the closest thing to "can this QEMU
launch an SEV guest here" short of booting one; its error text is kept as
the evidence, and its C-bit must agree with CPUID's (a QEMU on the wrong
host or a stale libvirt cache shows up as a mismatch).
"""

from __future__ import annotations

from pytest_sev.host.commands import NOT_FOUND
from pytest_sev.host.evidence import Evidence
from pytest_sev.host.parse_cpu import SevCpuid
from pytest_sev.host.parse_tools import (
    describe_bytes,
    format_version,
    parse_domcapabilities,
    parse_memlock,
    parse_qemu_version,
    sev_validate_reason,
)
from pytest_sev.host.report import FOR_NONE, FOR_SEV, FOR_SEV_ES, FOR_SEV_NOT_SNP, UNKNOWN, Check

MIN_QEMU_SEV_ES = (6, 0)
REMEDY_QEMU = "install qemu-system-x86 >= 6.0 or build it (python -m pytest_sev build qemu), or pass --qemu PATH"

# QMP error descriptions (sev-reference.md 5) -> what to do about them.
QMP_REMEDIES: tuple[tuple[str, str], ...] = (
    ("KVM not enabled", "QEMU could not use KVM (it ran under TCG): /dev/kvm must be usable, see dev_kvm"),
    ("SEV is not enabled in KVM", "kvm_amd has SEV off: see kvm_amd_sev"),
    ("Failed to open /dev/sev", "QEMU cannot open /dev/sev read-write: see dev_sev"),
    ("SEV feature is not available", "QEMU < 5.1 found no SEV in KVM: see kvm_amd_sev, and use QEMU >= 6.0"),
    ("SEV is not available in this QEMU", "this QEMU was built without SEV: " + REMEDY_QEMU),
)


def qemu_version_check(ev: Evidence) -> Check:
    name = "qemu_version"
    if ev.qemu_version_text is None:
        return Check(name, "fail", f"{ev.qemu}: not found or not runnable", REMEDY_QEMU, FOR_SEV_ES)
    v = parse_qemu_version(ev.qemu_version_text)
    if v is None:
        first = ev.qemu_version_text.strip().splitlines()[:1]
        return Check(name, "skip", f"{UNKNOWN} (unparsed: {first[0] if first else ''!r})", "", FOR_SEV_ES)
    if v[:2] >= MIN_QEMU_SEV_ES:
        return Check(name, "pass", f"{format_version(v)} (>= 6.0 for SEV-ES)", "", FOR_SEV_ES)
    return Check(name, "fail", f"{format_version(v)} (SEV-ES needs QEMU >= 6.0)", REMEDY_QEMU, FOR_SEV_ES)


def qmp_check(ev: Evidence, sev: SevCpuid | None) -> Check:
    name, a = "qmp_sev_capabilities", ev.qmp
    if not a.launched:
        return Check(name, "fail", a.error_desc, REMEDY_QEMU, FOR_SEV)
    if not a.ok:
        remedy = next((r for key, r in QMP_REMEDIES if key in a.error_desc),
                      "see the other host checks for why QEMU finds no SEV")
        return Check(name, "fail", f"{a.error_class}: {a.error_desc} (accel {a.accel})", remedy, FOR_SEV)
    caps = a.result or {}
    cbit = caps.get("cbitpos")
    value = f"cbitpos {cbit}, reduced-phys-bits {caps.get('reduced-phys-bits')} (accel {a.accel})"
    if sev is not None and cbit != sev.cbitpos:
        return Check(name, "fail", f"{value}, but CPUID says cbitpos {sev.cbitpos}",
                     "QEMU and the CPU disagree on the C-bit: is this QEMU running on this host?", FOR_SEV)
    return Check(name, "pass", value, "", FOR_SEV)


def virsh_check(ev: Evidence, sev: SevCpuid | None) -> Check:
    """libvirt is not used by the harness: reported, never required."""
    name, (status, out) = "virsh_sev", ev.virsh
    if status == NOT_FOUND:
        return Check(name, "skip", "virsh not installed", "", FOR_NONE)
    if status != 0:
        return Check(name, "skip", f"virsh domcapabilities failed (exit {status}): is libvirtd running?", "", FOR_NONE)
    caps = parse_domcapabilities(out)
    if caps is None:
        return Check(name, "skip", "no <sev> element (libvirt < 4.15?)", "", FOR_NONE)
    if not caps.supported:
        vstatus, vout = ev.virt_host_validate
        why = sev_validate_reason(vout) if vstatus != NOT_FOUND else ""
        return Check(name, "fail", "<sev supported='no'>" + (f"; virt-host-validate qemu: {why}" if why else ""),
                     "libvirt sees no SEV: same causes as the checks above", FOR_NONE)
    value = (f"cbitpos {caps.cbitpos}, reducedPhysBits {caps.reduced_phys_bits}, "
             f"maxGuests {caps.max_guests}, maxESGuests {caps.max_es_guests}")
    if sev is not None and caps.cbitpos != sev.cbitpos:
        return Check(name, "fail", f"{value}, but CPUID says cbitpos {sev.cbitpos}",
                     "libvirt's capability cache is stale: restart libvirtd", FOR_NONE)
    return Check(name, "pass", value, "", FOR_NONE)


def ovmf_check(ev: Evidence) -> Check:
    if ev.ovmf_code and ev.ovmf_vars and not ev.ovmf_missing:
        return Check("ovmf", "pass", f"code {ev.ovmf_code}, vars {ev.ovmf_vars}", "", FOR_SEV_NOT_SNP)
    return Check("ovmf", "fail", "not found: " + ", ".join(ev.ovmf_missing or ["(no path)"]),
                 "SEV guests boot only with OVMF (UEFI): install ovmf or build it "
                 "(python -m pytest_sev build ovmf)", FOR_SEV_NOT_SNP)


def memlock_check(ev: Evidence) -> Check:
    raw = parse_memlock(ev.limits) if ev.limits else None
    if raw is None:
        return Check("memlock", "info", UNKNOWN)
    return Check("memlock", "info",
                 f"{describe_bytes(raw)} (SEV pins guest memory; the limit binds users without CAP_IPC_LOCK)")


def tool_checks(ev: Evidence, sev: SevCpuid | None) -> list[Check]:
    return [qemu_version_check(ev), qmp_check(ev, sev), virsh_check(ev, sev), ovmf_check(ev), memlock_check(ev)]
