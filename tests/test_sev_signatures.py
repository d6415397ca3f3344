"""Known failure signatures recognised in real text, named with their remedy.

Inputs, with provenance:
- captured host logs of this project (fixtures/host-logs, see corpus.toml);
- short verbatim excerpts of public issue threads (source in each case id);
- reconstructed lines are labelled ``(reconstructed)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.reporting.categories import categorize
from pytest_sev.sev import signatures

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "host-logs"

CASES = [
    # (code, where, text, provenance)
    ("init-0x13-smee-off", "host dmesg", (LOGS / "sevtool-43-milan-7313-init-0x13.txt").read_text(),
     "captured: AMDESE/sev-tool#43"),
    ("init-0x8004-ret-25", "host dmesg", (LOGS / "sevtool-6-init-0x8004.txt").read_text(),
     "captured: AMDESE/sev-tool#6"),
    ("init-0x8004-ret-25", "qemu stderr",
     "qemu-system-x86_64: sev_snp_launch_start: SNP_LAUNCH_START ret=-25 fw_error=0 ''\n"
     "qemu-system-x86_64: sev_kvm_init: failed to create encryption context\n",
     "captured: AMDESE/AMDSEV#216 (verbatim)"),
    ("vmsa-fw-error-3-naples", "qemu stderr",
     "qemu-system-x86_64: sev_guest_init: using :KVM_SEV_ES_INIT\n"
     "qemu-system-x86_64: sev_launch_update_vmsa: LAUNCH_UPDATE_VMSA ret = -5 fw_error=3 2774 'unknown error'/\n",
     "captured: AMDESE/AMDSEV#41 (verbatim, EPYC 7251)"),
    ("kvm-run-einval", "qemu stderr",
     "SetUefiImageMemoryAttributes - 0x000000007F2B3000 - 0x0000000000004000 (0x0000000000000008)\n"
     "error: kvm run failed Invalid argument\nEAX=00800f12 EBX=00000000 ECX=004003f1 EDX=2fd3fbff\n",
     "captured: AMDESE/AMDSEV#58 (verbatim)"),
    ("no-dev-sev", "qemu stderr", "qemu-system-x86_64: SEV: Failed to open /dev/sev: Permission denied\n",
     "QEMU 6.2+ error text (fixtures/recorded/guest/qmp/query-sev-capabilities-errors.json)"),
    ("sev-es-asids-zero", "host dmesg", "[    7.114429] kvm_amd: SEV-ES disabled (ASIDs 0 - 0)\n",
     "(reconstructed) from the 6.x kvm_amd format 'SEV-ES %s (ASIDs %u - %u)' with min_sev_asid=1"),
    ("sev-es-reboot", "console", "[   42.101010] reboot: Restarting system\n",
     "(reconstructed) kernel reboot line; AMDESE/AMDSEV#61 describes the exit"),
    ("swiotlb-alloc-failure", "guest dmesg",
     "[    1.9] software IO TLB: Can not allocate SWIOTLB buffer earlier and can't now provide you with "
     "the DMA bounce buffer\n", "AMD SEV README FAQ 5 text"),
    ("swiotlb-over-1g", "guest cmdline", "Command line: console=ttyS0 swiotlb=1048576\n",
     "(reconstructed) a 2 GiB request"),
    ("kernel-hashes-no-table", "console",
     "Loading driver at 0x0003EE25000 EntryPoint=0x0003EE25E46 SecretDxe.efi\n"
     "Error: Image at 0003EBA8000 start failed: Not Found\n"
     "VerifyBlob: Verifier called but no hashes table discoverd in MEMFD\n"
     "Error: Image at 0003EB08000 start failed: Access Denied\n",
     "captured here: AmdSev OVMF (python -m pytest_sev build ovmf-amdsev) + -kernel, QEMU 7.2 TCG"),
    ("kernel-hashes-table-missing-in-ovmf", "qemu stderr",
     "qemu-system-x86_64: SEV: guest firmware hashes table area is invalid (base=0x0 size=0x0)\n",
     "captured: AMDESE/AMDSEV#262 (verbatim)"),
    ("kernel-hash-mismatch", "console",
     "BlobVerifierLibSevHashesConstructor: Found injected hashes table in secure location\n"
     "Select Item: 0x17\nSelect Item: 0x8\nFetchBlob: loading 10580240 bytes for \"kernel\"\n"
     "Select Item: 0x18\nSelect Item: 0x11\n"
     "VerifyBlob: Found GUID 4DE79437-ABD2-427F-B835-D5B172D2045B in table\n"
     "VerifyBlob: Hash comparison failed for \"kernel\"\n",
     "captured: AMDESE/qemu#10 (verbatim)"),
    # RLIMIT_MEMLOCK: QEMU's stderr line and the host kernel's line, captured together
    ("memlock-limit", "qemu stderr",
     "sev_ram_block_added: failed to register region (0x7fd96e6bb000+0x20000) error 'Cannot allocate memory'\n",
     "captured: DevConf.cz 2023 demo README 'Confidential Computing, from host to workload' (verbatim)"),
    ("memlock-limit", "host dmesg", "[2257701.103251] SEV: 131072 locked pages exceed the lock limit of 16384.\n",
     "captured: same README, the host kernel's line (verbatim)"),
    ("sev-es-blocked-on-snp-host", "qemu stderr",
     "ERROR    internal error: process exited while connecting to monitor: 2025-11-13T20:17:33.041857Z "
     "qemu-system-x86_64: -accel kvm: sev_launch_start: LAUNCH_START ret=1 fw_error=21 'Feature not supported'\n"
     "2025-11-13T20:17:33.041899Z qemu-system-x86_64: -accel kvm: sev_common_kvm_init: failed to create "
     "encryption context\n",
     "captured: AMDESE/AMDSEV#282 (verbatim, SEV-ES after an SEV firmware update, SEV-SNP API 1.55 host)"),
    ("bad-measurement-fw-error-11", "qemu stderr",
     "qemu-system-x86_64: sev_snp_launch_finish: SNP_LAUNCH_FINISH ret=-5 fw_error=11 'Bad measurement'\n",
     "captured: AMDESE/AMDSEV#195 (verbatim issue title)"),
    ("platform-status-old-firmware", "qemu stderr",
     "$ qemu-system-x86_64: sev_guest_init: failed to get platform status ret=-1fw_error='0: '\n",
     "captured: AMDESE/AMDSEV#25 (verbatim, old QEMU's format without a space before fw_error)"),
    # --- SEV-SNP
    ("snp-iommu-passthrough", "host dmesg", (LOGS / "amdsev-88-snp-host-iommu-pt.txt").read_text(),
     "captured: AMDESE/AMDSEV#88 (5.14 snp-host, iommu=pt)"),
    ("snp-iommu-passthrough", "host dmesg",
     "[   32.381854] AMD-Vi: SNP: IOMMU is disabled or configured in passthrough mode, SNP cannot be supported\n",
     "captured: AMDESE/AMDSEV#113 (verbatim)"),
    ("snp-iommu-passthrough", "host dmesg",
     "[    0.912345] AMD-Vi: SNP: IOMMU disabled or configured in passthrough mode, SNP cannot be supported.\n",
     "(reconstructed) the upstream format string of drivers/iommu/amd/init.c iommu_snp_enable"),
    ("snp-init-failed", "host dmesg", (LOGS / "amdsev-189-init-0x1-then-api.txt").read_text(),
     "captured: AMDESE/AMDSEV#189"),
    ("snp-init-failed", "host dmesg",
     "[    3.014584] ccp 0000:43:00.1: SEV-SNP: failed to INIT error 0x3\n"
     "[    3.031942] ccp 0000:43:00.1: SEV API:1.51 build:3\n",
     "captured: AMDESE/AMDSEV#176 (verbatim lines)"),
    ("snp-qemu-too-old", "qemu stderr",
     "qemu-system-x86_64: -object sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1: "
     "Parameter 'qom-type' does not accept value 'sev-snp-guest'\n",
     "captured: coconut-svsm/svsm#680 (verbatim)"),
    ("snp-kvm-required", "qemu stderr",
     "qemu-system-x86_64: cannot set up private guest memory for sev-snp-guest: KVM required\n",
     "captured: qemu-devel review of the SNP debug-swap patch; sev-reference.md 9 (QEMU 10.0.2 under TCG, here)"),
    ("snp-kvm-vm-type", "qemu stderr", "qemu-system-x86_64: -accel kvm: vm-type SEV-SNP not supported by KVM\n",
     "captured: qemu-devel review of the SNP debug-swap patch (the line as quoted there)"),
    ("snp-vmm-without-guest-memfd", "host dmesg", (LOGS / "sev-utils-19-milan-snp-new-wording.txt").read_text(),
     "captured: amd/sev-utils#19"),
    ("snp-vmm-without-guest-memfd", "host dmesg", "[   47.614768] kvm_amd: SEV-SNP requires restricted memory.\n",
     "captured: AMDESE/AMDSEV#166 (verbatim, the older wording)"),
    ("snp-readonly-firmware", "qemu stderr",
     "qemu-system-x86_64: kvm_set_user_memory_region: KVM_SET_USER_MEMORY_REGION2 failed, slot=2, "
     "start=0xffc84000, size=0x37c000, flags=0x2, guest_memfd=-1, guest_memfd_offset=0x0: Invalid argument\n",
     "captured: AMDESE/AMDSEV#242 (verbatim)"),
    ("snp-readonly-firmware", "qemu stderr", "qemu-system-x86_64: pflash with kvm requires KVM readonly memory support\n",
     "(reconstructed) QEMU hw/i386/pc_sysfw.c error_report text"),
]


@pytest.mark.parametrize("code,where,text,prov", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_signature_found_with_remedy(code, where, text, prov):
    found = signatures.diagnose({where: text})
    assert [m.signature.code for m in found] == [code], (prov, [m.message() for m in found])
    msg = found[0].message()
    assert msg.startswith(f"SEV signature {code}: ") and "remedy: " in msg


def test_guest_log_without_es_while_msr_says_active():
    found = signatures.diagnose({}, msr_es=True, guest_log_es=False)
    assert [m.signature.code for m in found] == ["guest-log-without-es"]
    assert signatures.diagnose({}, msr_es=True, guest_log_es=True) == []


def test_a_healthy_log_has_no_signature():
    ready = (Path(__file__).resolve().parents[1] / "fixtures" / "hosts" / "epyc-milan-6.8-ready" / "dmesg.txt")
    assert signatures.diagnose({"host dmesg": ready.read_text()}) == []


@pytest.mark.parametrize("code", [s.code for s in signatures.SIGNATURES] + ["guest-log-without-es"])
def test_each_signature_is_an_allure_category(code):
    message = f"Failed: SEV signature {code}: title (in x: 'y'); remedy: z"
    assert categorize("failed", message) is not None
    assert categorize("failed", message).startswith("SEV signature")


@pytest.mark.parametrize("slabs,over", [(524288, False), (524289, True), (524290, True), (262144, False),
                                        (600000, True), (1048576, True)])
def test_pool_over_1g_boundary(slabs, over):
    found = signatures.diagnose({"guest cmdline": f"console=ttyS0 swiotlb={slabs},force"})
    assert bool(found) is over


def test_a_guest_that_failed_to_start_is_diagnosed(tmp_path):
    """GuestLaunchError with QEMU's stderr (AMDESE/AMDSEV#41 text, captured) -> named, remedy given."""
    from pytest_sev.errors import GuestLaunchError
    from pytest_sev.proofs.witnesses import diagnose_error
    stderr = tmp_path / "qemu-stderr.log"
    stderr.write_text("qemu-system-x86_64: sev_launch_update_vmsa: LAUNCH_UPDATE_VMSA ret = -5 fw_error=3 "
                      "2774 'unknown error'/\n")
    exc = GuestLaunchError("QEMU's monitor did not answer", logs={"qemu stderr": stderr})
    assert diagnose_error(exc).startswith("SEV signature vmsa-fw-error-3-naples: ")
    assert diagnose_error(GuestLaunchError("nothing known")) == ""


#: lines that look like a signature's but are not its failure (code, where, text, provenance)
NEAR_MISSES = [
    ("memlock-limit", "qemu stderr",
     "qemu_mlock: have only locked 8455036928 of 12884901888 bytes; still trying...\n",
     "captured: TritonDataCenter/illumos-kvm-cmd#9 (an mlock shortfall, not SEV's pinning)"),
    ("memlock-limit", "qemu stderr",
     "sev_ram_block_added: failed to register region (0x7fd96e6bb000+0x20000) error 'Invalid argument'\n",
     "(reconstructed) QEMU's format with EINVAL: not the memlock limit"),
    ("memlock-limit", "host dmesg", "[    5.268688] SEV supported: 502 ASIDs\n",
     "captured: same DevConf.cz README, the healthy host line"),
    ("sev-es-blocked-on-snp-host", "qemu stderr",
     "qemu-system-x86_64: sev_snp_launch_start: SNP_LAUNCH_START ret=-5 fw_error=21 'Feature not supported'\n",
     "(reconstructed) the SNP command with the same code: SNP_LAUNCH_START is not SEV-ES's LAUNCH_START"),
    ("sev-es-blocked-on-snp-host", "qemu stderr",
     "qemu-system-x86_64: sev_launch_start: LAUNCH_START ret=1 fw_error=2 'Invalid platform state'\n",
     "(reconstructed) QEMU's format with another firmware error"),
    ("bad-measurement-fw-error-11", "qemu stderr",
     "qemu-system-x86_64: sev_snp_launch_start: SNP_LAUNCH_START ret=-22 fw_error=0 ''\n",
     "captured: AMDESE/AMDSEV#223 (verbatim), a launch failure that is not a measurement"),
    ("bad-measurement-fw-error-11", "qemu stderr",
     "qemu-system-x86_64: sev_snp_launch_finish: SNP_LAUNCH_FINISH ret=-5 fw_error=110 'x'\n",
     "(reconstructed) a longer error number beginning with 11"),
    ("platform-status-old-firmware", "snphost ok",
     "[ FAIL ]       - SNP INIT: Failed to get SNP Platform status unable to retrieve SNP platform status\n",
     "captured: AMDESE/AMDSEV#238 snphost output (a tool's check, not QEMU's launch error)"),
    # --- SEV-SNP
    ("snp-iommu-passthrough", "host dmesg", "[    3.693304] AMD-Vi: SNP enabled\n",
     "captured: AMDESE/AMDSEV#181 (the IOMMU accepting SNP)"),
    ("snp-iommu-passthrough", "host dmesg",
     "[    0.080454] Kernel command line: BOOT_IMAGE=/boot/vmlinuz-5.14.0-rc2-snp-host-6d4469b86f90 ro iommu=pt\n",
     "captured (shortened): AMDESE/AMDSEV#88, the cause on the command line is not the kernel's refusal"),
    ("snp-init-failed", "host dmesg", "[   11.717361] ccp 0000:42:00.1: SEV: failed to INIT error 0x1, rc -5\n",
     "captured: AMDESE/AMDSEV#189, the plain SEV INIT failure that follows, not SNP_INIT"),
    ("snp-qemu-too-old", "qemu stderr",
     "qemu-system-86 64: -object memory-backend-memfd-private, id-ram1,size-2048M,share-true: "
     "Parameter 'qom-type' does not accept value 'memorv-backend-memfd-private'\n",
     "captured: AMDESE/AMDSEV#146 (verbatim, another object type refused)"),
    ("snp-kvm-required", "qemu stderr", "qemu-system-x86_64: -accel kvm: vm-type SEV-SNP not supported by KVM\n",
     "captured: qemu-devel (KVM is there; the VM type is not)"),
    ("snp-kvm-vm-type", "qemu stderr",
     "qemu-system-x86_64: cannot set up private guest memory for sev-snp-guest: KVM required\n",
     "captured: qemu-devel (TCG, not a VM type KVM lacks)"),
    ("snp-vmm-without-guest-memfd", "host dmesg", "[   17.001402] kvm_amd: SEV-SNP enabled (ASIDs 1 - 99)\n",
     "captured: amd/sev-utils#19, the healthy SNP line"),
    ("snp-readonly-firmware", "qemu stderr",
     "qemu-system-x86_64: kvm_set_user_memory_region: KVM_SET_USER_MEMORY_REGION failed, slot=10, "
     "start=0xfebd1000, size=0x1000: File exists\n",
     "captured: oracle/qemu#9 (a duplicate memslot, not a read-only one)"),
]


@pytest.mark.parametrize("code,where,text,prov", NEAR_MISSES, ids=[f"{c[0]}-{i}" for i, c in enumerate(NEAR_MISSES)])
def test_near_miss_does_not_match(code, where, text, prov):
    assert not signatures.BY_CODE[code].search(text), prov
    assert code not in [m.signature.code for m in signatures.diagnose({where: text})], prov


@pytest.mark.parametrize("code", ["memlock-limit", "sev-es-blocked-on-snp-host", "bad-measurement-fw-error-11",
                                  "platform-status-old-firmware", "snp-iommu-passthrough", "snp-init-failed",
                                  "snp-qemu-too-old", "snp-kvm-required", "snp-kvm-vm-type",
                                  "snp-vmm-without-guest-memfd", "snp-readonly-firmware"])
def test_new_signatures_name_source_and_remedy(code):
    sig = signatures.BY_CODE[code]
    assert sig.source and sig.remedy and sig.patterns
    assert code in {c[0] for c in CASES} and code in {n[0] for n in NEAR_MISSES}


def test_memlock_failure_of_a_guest_that_did_not_start_is_diagnosed(tmp_path):
    """QEMU exits at start-up on the memlock limit: the guest error names it with its remedy."""
    from pytest_sev.errors import GuestLaunchError
    from pytest_sev.proofs.witnesses import diagnose_error
    stderr = tmp_path / "qemu-stderr.log"
    stderr.write_text("qemu-system-x86_64: sev_ram_block_added: failed to register region "
                      "(0x7fd96e6bb000+0x20000) error 'Cannot allocate memory'\n")
    exc = GuestLaunchError("QEMU exited before its monitor answered", logs={"qemu stderr": stderr})
    known = diagnose_error(exc)
    assert known.startswith("SEV signature memlock-limit: ") and "locked/" in known
