"""Known field failure signatures: name the cause and the remedy (pure).

Why: a red nightly on an EPYC runner usually fails in one of a dozen known
ways, each with one fix (a BIOS setting, a firmware file, a kvm_amd option,
a QEMU option). Text in (QEMU's stderr, the guest console, host or guest
dmesg), matches out; the failure message and the Allure category name the
signature (``SEV signature <code>: ...``) so a person knows what to do
without reading the log.

Every pattern is written against real captured text; the source of each is
in :data:`SIGNATURES` (``source``), and ``tests/test_sev_signatures.py``
feeds that text (verbatim excerpts, or the project's captured host logs under
``fixtures/host-logs``) through :func:`diagnose`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    code: str
    title: str
    patterns: tuple[str, ...]  # regexes, searched line by line (any one matches)
    remedy: str
    source: str

    def search(self, text: str) -> str | None:
        for line in text.replace("\r", "").splitlines():
            for p in self.patterns:
                if re.search(p, line):
                    return line.strip()
        return None


@dataclass(frozen=True)
class Match:
    signature: Signature
    line: str
    where: str

    def message(self) -> str:
        s = self.signature
        return (f"SEV signature {s.code}: {s.title} (in {self.where}: {self.line[:200]!r}); "
                f"remedy: {s.remedy}")


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "sev-es-asids-zero", "no SEV-ES ASIDs: the BIOS SEV-ES ASID space limit / minimum SEV ASID is 1",
        (r"SEV-ES disabled \(ASIDs 0 - 0\)", r"SEV-ES supported: 0 ASIDs",
         r"SEV-ES disabled \(ASIDs 1 - 4294967295\)", r"CPUID 0x8000001F EDX=1\b"),
        "raise 'SEV-ES ASID Space Limit' (minimum SEV non-ES ASID) in the BIOS above 1, so ASIDs "
        "1..N-1 are left for SEV-ES",
        "AMD SEV README (BIOS settings); kvm_amd 'SEV-ES disabled (ASIDs 0 - 0)' wording of 6.x; "
        "host report fixture epyc-milan-sev-only (reconstructed)"),
    Signature(
        "init-0x13-smee-off", "PSP INIT failed with error 0x13: SMEE (memory encryption) is off",
        (r"SEV: failed to INIT error 0x13", r"sev command 0x1 failed \(0x00000013\)",
         r"failed to INIT.*\b(?:error|rc) 0x13\b"),
        "enable SMEE ('Memory Encryption'/'SMEE') in the BIOS, and SEV-ES/SNP options if used",
        "fixtures/host-logs/sevtool-43-milan-7313-init-0x13.txt (captured, AMDESE/sev-tool#43)"),
    Signature(
        "init-0x8004-ret-25", "PSP INIT failed (0x8004 / QEMU ret=-25): firmware missing or unusable",
        (r"failed to INIT error 0x8004", r"\(0x00008004\)", r"\bret\s*=\s*-25\b"),
        "install the SEV firmware (amd_sev_fam17h_model*.sbin under /lib/firmware/amd), reload ccp, "
        "and keep QEMU and the host kernel in lock-step",
        "fixtures/host-logs/sevtool-6-init-0x8004.txt (captured, AMDESE/sev-tool#6); "
        "AMDESE/AMDSEV#216 'SNP_LAUNCH_START ret=-25 fw_error=0'"),
    Signature(
        "no-dev-sev", "/dev/sev is missing or cannot be opened",
        (r"Failed to open /dev/sev", r"/dev/sev: No such file or directory"),
        "load ccp with the PSP initialised (dmesg 'SEV API'), make /dev/sev exist and be rw for the user",
        "QEMU sev_kvm_init error text (fixtures/recorded/guest/qmp/query-sev-capabilities-errors.json)"),
    Signature(
        "vmsa-fw-error-3-naples", "LAUNCH_UPDATE_VMSA fw_error=3: the CPU/firmware has no SEV-ES (Naples)",
        (r"LAUNCH_UPDATE_VMSA ret\s*=\s*-?\d+ fw_error=3\b",),
        "SEV-ES needs EPYC 7002 (Rome) or later: run --sev (policy 0x1) on Naples",
        "AMDESE/AMDSEV#41 (EPYC 7251, 'LAUNCH_UPDATE_VMSA ret = -5 fw_error=3')"),
    Signature(
        "kvm-run-einval", "KVM refused to run the vCPU ('kvm run failed Invalid argument')",
        (r"kvm run failed Invalid argument",),
        "mismatched QEMU / host kernel / OVMF builds (keep them in lock-step), or an SEV-ES guest "
        "reset: launch SEV-ES guests with -no-reboot",
        "AMDESE/AMDSEV#58 (SEV-ES), #100, #138"),
    Signature(
        "sev-es-reboot", "the SEV-ES guest stopped at a reboot: QEMU cannot reset an SEV-ES vCPU",
        (r"reboot: Restarting system", r"\breset request\b.*sev", r"Guest requested reboot"),
        "expected with -no-reboot: an SEV-ES guest must be re-launched, not reset; do not reboot it in a test",
        "AMDESE/AMDSEV#47 and #61 (tlendacky: reboot via reset is not possible)"),
    Signature(
        "swiotlb-alloc-failure", "the guest could not allocate its SWIOTLB bounce pool",
        (r"Can not allocate SWIOTLB buffer earlier", r"swiotlb\S*:? .*[Ff]ailed to allocate",
         r"software IO TLB: .*(?:Cannot|Can't) allocate"),
        "give the guest an explicit swiotlb= that fits its memory (README FAQ 5), or more memory",
        "AMD SEV README FAQ 5; kernel/dma/swiotlb.c messages"),
    Signature(
        "swiotlb-over-1g", "a SWIOTLB pool over 1 GiB was asked for",
        # slabs > 524288 (1 GiB of 2 KiB slabs)
        (r"\bswiotlb=(?:5242(?:89|9\d)|524[3-9]\d\d|52[5-9]\d{3}|5[3-9]\d{4}|[6-9]\d{5}|[1-9]\d{6,})\b",),
        "keep swiotlb= at or below 524288 slabs (1 GiB): the kernel clamps SEV pools to 1 GiB and "
        "a larger boot-time pool often fails to allocate",
        "kernel/dma/swiotlb.c (SEV pool clamp), sizes.MAX_POOL_BYTES"),
    Signature(
        "kernel-hashes-no-table", "the AmdSev OVMF refused -kernel: QEMU wrote no kernel-hashes table",
        (r"Verifier called but no hashes table discover",),
        "add kernel-hashes=on to the sev-guest object (QEMU 6.2+) for a -kernel launch on the AmdSev OVMF, "
        "or boot it from a disk instead of -kernel",
        "captured here: OVMF from OvmfPkg/AmdSev/AmdSevX64.dsc (Debian edk2 2022.11) on QEMU 7.2 with -kernel "
        "and no table (tests/test_sev_signatures.py)"),
    Signature(
        "kernel-hashes-table-missing-in-ovmf", "kernel-hashes=on with an OVMF that has no kernel-hashes table",
        (r"guest firmware hashes table area is invalid",),
        "use the AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc: python -m pytest_sev build ovmf-amdsev) as the "
        "only firmware image, or drop kernel-hashes=on",
        "AMDESE/AMDSEV#262 (OvmfPkgX64 firmware with kernel-hashes=on)"),
    Signature(
        "kernel-hash-mismatch", "the AmdSev OVMF refused a blob: its hash differs from QEMU's table",
        (r"VerifyBlob: Hash comparison failed for \"(?:kernel|initrd|cmdline)\"",),
        "the blob OVMF fetched is not the one QEMU hashed: a QEMU that appends setup_data (48 bytes, the "
        "RNG seed) to the SEV kernel (AMDESE/qemu#10) needs its fix; else -kernel/-initrd/-append changed "
        "after QEMU hashed them",
        "AMDESE/qemu#10 (verbatim OVMF log)"),
    Signature(
        "memlock-limit", "SEV could not pin guest memory: QEMU's RLIMIT_MEMLOCK is below the guest's size",
        (r"SEV: \d+ locked pages exceed the lock limit of \d+",
         r"sev_ram_block_added: failed to register region \(.*\) error 'Cannot allocate memory'"),
        "raise the memlock limit of the user that runs QEMU above the guest's memory (ulimit -l, "
        "/etc/security/limits.d, systemd LimitMEMLOCK=) or give QEMU CAP_IPC_LOCK; under libvirt add "
        "<memoryBacking><locked/></memoryBacking> (with <memtune><hard_limit>) so libvirt raises it",
        "kernel arch/x86/kvm/svm/sev.c sev_pin_memory ('SEV: %lu locked pages exceed the lock limit of %lu.') "
        "and QEMU target/i386/sev.c sev_ram_block_added ('failed to register region (%p+%#zx) error '%s''); "
        "the pair captured in the DevConf.cz 2023 demo README 'Confidential Computing, from host to workload' "
        "(libvirt guest without <locked/>, Fedora 38, EPYC 7313)"),
    Signature(
        "sev-es-blocked-on-snp-host",
        "SEV-ES LAUNCH_START refused with fw_error=21 'Feature not supported': recent SEV firmware blocks "
        "SEV-ES guests while SEV-SNP is enabled",
        (r"(?<!SNP_)LAUNCH_START ret\s*=\s*-?\d+ fw_error=21\b",),
        "disable SEV-SNP on the host (in the BIOS, or boot the host kernel with sev=nosnp; sev-reference.md "
        "also names kvm_amd sev_snp=0), or run the test as SEV or SEV-SNP; SEV and SNP guests are not affected",
        "AMDESE/AMDSEV#282 (verbatim QEMU error after an SEV firmware update on a host with SEV-SNP API 1.55); "
        "AMDESE/elves README, known issue 2 (firmware security patches stop SEV-ES with SNP enabled)"),
    Signature(
        "bad-measurement-fw-error-11", "LAUNCH_FINISH failed with fw_error=11 'Bad measurement'",
        (r"LAUNCH_FINISH ret\s*=\s*-?\d+ fw_error=11\b", r"fw_error=11 'Bad measurement'"),
        "the firmware's launch digest differs from the expected one: host KVM's debug_swap changes each vCPU's "
        "initial VMSA, so reload kvm_amd with debug_swap=0 (stop all guests, rmmod kvm_amd, modprobe kvm_amd "
        "debug_swap=0), or use a host kernel, QEMU and measurement tool that agree on the VMSA features",
        "AMDESE/AMDSEV#195 (verbatim title 'sev_snp_launch_finish: SNP_LAUNCH_FINISH ret=-5 fw_error=11 "
        "'Bad measurement''; remedy from the maintainer's reply there); virtee/sev-snp-measure#32 and #43"),
    Signature(
        "platform-status-old-firmware", "QEMU could not read the SEV platform status: PSP firmware too old or not "
        "initialised",
        (r"failed to get platform status ret\s*=\s*-?\d+",),
        "update the BIOS (AGESA) so the PSP carries current SEV firmware, or install the SEV firmware file "
        "(amd_sev_fam17h_model*.sbin under /lib/firmware/amd) and reload ccp; host dmesg 'SEV: failed to INIT' "
        "names the firmware error",
        "AMDESE/AMDSEV#25 (verbatim QEMU error 'sev_guest_init: failed to get platform status ret=-1fw_error=' "
        "beside host 'SEV: failed to INIT error 0x8004'; fixed by a BIOS update)"),
    # --- SEV-SNP (issue 22 item 8) ------------------------------------------------------------
    Signature(
        "snp-iommu-passthrough", "the host IOMMU is off or in passthrough mode: the kernel turned SEV-SNP down",
        (r"SNP: IOMMU (?:is )?(?:either )?disabled or configured in passthrough mode",),
        "boot the host without iommu=pt (and iommu.passthrough=1 / amd_iommu=off), or with iommu=nopt where the "
        "kernel defaults to passthrough; enable the IOMMU in the BIOS; python -m pytest_sev host --mode sev-snp "
        "names it as snp_iommu",
        "AMDESE/AMDSEV#88 ('AMD-Vi: SEV-SNP: IOMMU is either disabled or configured in passthrough mode.', 5.14 "
        "snp-host with iommu=pt; fixed by removing iommu=pt) and #113 ('AMD-Vi: SNP: IOMMU is disabled or "
        "configured in passthrough mode, SNP cannot be supported', 5.19 snp-host); upstream wording from "
        "drivers/iommu/amd/init.c iommu_snp_enable"),
    Signature(
        "snp-init-failed", "the PSP refused SNP_INIT: SEV-SNP is unusable on this host (and SEV INIT often fails "
        "after it with 0x1)",
        (r"SEV-SNP: failed to INIT\b",),
        "update the BIOS: SNP needs SEV firmware >= 1.51 and, on Milan, a PSP bootloader >= 00.13.00.70 (AMD's "
        "snp-latest README); error 0x3 (INVALID_CONFIG) also means a BIOS SNP setting is off (SEV-SNP Support, "
        "SNP Memory Coverage, SMEE, IOMMU); or disable SEV-SNP in the BIOS to get SEV/SEV-ES back",
        "fixtures/host-logs/amdsev-189-init-0x1-then-api.txt (captured, AMDESE/AMDSEV#189 'SEV-SNP: failed to "
        "INIT rc -5, error 0x3'); AMDESE/AMDSEV#176 ('SEV-SNP: failed to INIT error 0x3', firmware 1.51 over a "
        "1.23 base); sev-step/sev-step#3"),
    Signature(
        "snp-qemu-too-old", "this QEMU has no sev-snp-guest object: SEV-SNP needs QEMU >= 9.1",
        (r"Parameter 'qom-type' does not accept value 'sev-snp-guest'",),
        "use a QEMU >= 9.1 (the harness's provisioned one, e.g. Debian bookworm-backports' 10.0, via --qemu); "
        "python -m pytest_sev host --mode sev-snp names it as qemu_snp",
        "coconut-svsm/svsm#680 (verbatim, a distribution QEMU); project-oak/oak#5045 (the same line from vanilla "
        "QEMU 9.0.1); qapi/qom.json SevSnpGuestProperties 'Since: 9.1'"),
    Signature(
        "snp-kvm-required", "SEV-SNP guest memory needs KVM: QEMU ran under TCG",
        (r"cannot set up private guest memory for sev-snp-guest: KVM required",),
        "SNP guests run only with KVM on an SNP-ready host (python -m pytest_sev host --mode sev-snp); on a "
        "machine without one, run the SNP tests under --sev-mode=auto (they skip)",
        "QEMU system/physmem.c ram_block_add (qemu-devel review thread of the SNP debug-swap patch, quoting the "
        "line); sev-reference.md 9: QEMU 10.0.2 under TCG stops with it (tried here)"),
    Signature(
        "snp-kvm-vm-type", "KVM cannot create an SEV-SNP VM: the host kernel has no SNP, or SNP is off on this host",
        (r"vm-type SEV-SNP not supported by KVM",),
        "make the host SNP-ready: a host kernel with SEV-SNP support (>= 6.11), SEV-SNP and RMP Table Coverage "
        "enabled in the BIOS, the IOMMU not in passthrough; python -m pytest_sev host --mode sev-snp names what "
        "is missing",
        "qemu-devel review thread of the SNP debug-swap patch ('-accel kvm: vm-type SEV-SNP not supported by KVM' "
        "on hardware without SNP); an operator's notes: the same line with RMP Table Coverage disabled in firmware"),
    Signature(
        "snp-vmm-without-guest-memfd", "kvm_amd refused an SNP VM without guest_memfd: the VMM is older than the "
        "host kernel's SNP interface",
        (r"SEV-SNP requires private memory support via guest_memfd", r"SEV-SNP requires restricted memory"),
        "launch SNP guests with an upstream QEMU >= 9.1 (it gives SNP guests guest_memfd memory), not an older "
        "SNP fork built for an earlier host kernel; the host kernel needs CONFIG_KVM_PRIVATE_MEM",
        "fixtures/host-logs/sev-utils-19-milan-snp-new-wording.txt (captured, amd/sev-utils#19); "
        "coconut-svsm/svsm#409 (same line; reply: enable CONFIG_KVM_PRIVATE_MEM); AMDESE/AMDSEV#166 ('SEV-SNP "
        "requires restricted memory.', the 6.4-era wording)"),
    Signature(
        "snp-readonly-firmware", "SNP firmware mapped read-only: KVM refuses read-only memory for SNP guests "
        "(pflash, or a read-only -bios mapping)",
        (r"KVM_SET_USER_MEMORY_REGION2 failed, .*flags=0x2\b", r"pflash with kvm requires KVM readonly memory support"),
        "launch SNP guests with the firmware as one -bios image and no -drive if=pflash (QEMU refuses pflash for "
        "SNP); if -bios alone fails this way, the QEMU and the host kernel disagree on read-only firmware "
        "mappings (a 6.11 host with QEMU 9.1 in AMDESE/AMDSEV#236, #242): keep them in lock-step",
        "AMDESE/AMDSEV#242 (verbatim 'kvm_set_user_memory_region: KVM_SET_USER_MEMORY_REGION2 failed, slot=2, "
        "start=0xffc84000, size=0x37c000, flags=0x2, guest_memfd=-1, ...'), #236 (the same with -drive "
        "if=pflash); the pflash line is reconstructed from QEMU hw/i386/pc_sysfw.c (its error when KVM offers "
        "no read-only memory, as for SNP VMs), not captured"),
)

BY_CODE = {s.code: s for s in SIGNATURES}

#: the cross-witness signature: the MSR says SEV-ES but the guest never said so
LOG_WITHOUT_ES = Signature(
    "guest-log-without-es", "SEV_STATUS says SEV-ES is active but the guest log has no SEV-ES line",
    (), "the guest kernel predates SEV-ES support in its log line (or the ring buffer lost the boot): "
    "use a 5.10+ guest kernel, or read the log from the console capture",
    "AMDESE/AMDSEV README FAQ 2a/2b (dmesg line vs rdmsr)")


def diagnose(texts: dict[str, str], *, msr_es: bool | None = None,
             guest_log_es: bool | None = None) -> list[Match]:
    """Every known signature found in ``texts`` ({where: text}), first hit each."""
    found: list[Match] = []
    for sig in SIGNATURES:
        for where, text in texts.items():
            line = sig.search(text or "")
            if line is not None:
                found.append(Match(sig, line, where))
                break
    if msr_es is True and guest_log_es is False:
        found.append(Match(LOG_WITHOUT_ES, "MSR SEV-ES=1, guest log SEV-ES absent", "witnesses"))
    return found


def explain(texts: dict[str, str], **kw: bool | None) -> str:
    """One paragraph for a failure message ('' when nothing is known)."""
    return "\n".join(m.message() for m in diagnose(texts, **kw))
