"""The pure parsers, on text in the shapes real hosts print (every era)."""

import pytest

from pytest_sev.host.parse_cpu import CpuidRegs, decode_sev_leaf, parse_cpuinfo, parse_rdmsr_output, parse_syscfg_smee
from pytest_sev.host.parse_log import parse_kernel_log
from pytest_sev.host.parse_tools import (
    describe_bytes,
    param_enabled,
    parse_domcapabilities,
    parse_kernel_release,
    parse_memlock,
    parse_qemu_version,
)

MILAN_LEAF = CpuidRegs(0x0001B03F, 0x00004073, 0x1FD, 100)


def test_sev_leaf_decoding():
    sev, why = decode_sev_leaf({0x80000000: CpuidRegs(0x80000023, 0, 0, 0), 0x8000001F: MILAN_LEAF})
    assert why == ""
    assert (sev.sme, sev.sev, sev.sev_es, sev.snp) == (True, True, True, True)
    assert (sev.cbitpos, sev.reduced_phys_bits) == (51, 1)
    assert (sev.encrypted_guests, sev.min_sev_asid, sev.sev_es_asids) == (509, 100, 99)


def test_rome_leaf_and_sev_only_edx():
    sev, _ = decode_sev_leaf({0x80000000: CpuidRegs(0x80000020, 0, 0, 0),
                              0x8000001F: CpuidRegs(0x0001000F, 0x16F, 509, 1)})
    assert (sev.cbitpos, sev.reduced_phys_bits, sev.snp) == (47, 5, False)
    assert sev.sev_es and sev.sev_es_asids == 0  # EDX = 1: SEV-ES unusable


def test_leaf_beyond_max_extended_leaf_is_refused():
    # An Intel CPU answers 0x8000001F with unrelated data: it must not count.
    sev, why = decode_sev_leaf({0x80000000: CpuidRegs(0x80000008, 0, 0, 0),
                                0x8000001F: CpuidRegs(0xFFFFFFFF, 0x33, 9, 9)})
    assert sev is None and "not implemented" in why and "0x80000008" in why


def test_cpuid_bytes_are_little_endian_registers():
    raw = bytes.fromhex("3fb00100" "73400000" "fd010000" "64000000")
    assert CpuidRegs.from_bytes(raw) == MILAN_LEAF
    with pytest.raises(ValueError):
        CpuidRegs.from_bytes(raw[:8])
    assert CpuidRegs.from_hex(MILAN_LEAF.as_hex()) == MILAN_LEAF


def test_cpuinfo_first_block():
    text = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
            "model name\t: AMD EPYC 7763 64-Core Processor\nstepping\t: 1\nmicrocode\t: 0xa0011d1\n"
            "flags\t\t: fpu svm sev sev_es\n\nprocessor\t: 1\nvendor_id\t: Other\n")
    info = parse_cpuinfo(text)
    assert (info.vendor, info.family, info.model, info.stepping) == ("AuthenticAMD", "25", "1", "1")
    assert info.model_name == "AMD EPYC 7763 64-Core Processor" and info.microcode == "0xa0011d1"
    assert {"svm", "sev", "sev_es"} <= info.flags and "sme" not in info.flags


def test_syscfg_and_rdmsr():
    assert parse_syscfg_smee(0xF40000) and not parse_syscfg_smee(0x740000)
    assert parse_rdmsr_output("f40000\n") == 0xF40000
    assert parse_rdmsr_output("") is None and parse_rdmsr_output("rdmsr: oops") is None


OLD_LOG = """\
[    4.303514] ccp 0000:02:00.2: SEV API:0.24 build:15
[    5.902120] SEV supported: 410 ASIDs
[    5.902121] SEV-ES supported: 99 ASIDs
"""
NEW_LOG = """\
[    5.702318] ccp 0000:47:00.1: SEV API:1.55 build:21
[    5.702400] ccp 0000:47:00.1: SEV-SNP API:1.56 build:33
[    7.114428] kvm_amd: SEV enabled (ASIDs 100 - 509)
[    7.114429] kvm_amd: SEV-ES enabled (ASIDs 1 - 99)
[    7.114430] kvm_amd: SEV-SNP enabled (ASIDs 1 - 99)
"""


def test_kernel_log_old_wording():
    log = parse_kernel_log(OLD_LOG)
    assert log.wording == "old" and log.api == (0, 24, 15) and log.init_error is None
    assert log.asids["SEV"].count == 410 and log.asids["SEV"].state == "enabled"
    assert log.asids["SEV-ES"].count == 99 and log.asids["SEV-ES"].first is None


def test_kernel_log_new_wording_and_snp_not_confused():
    log = parse_kernel_log(NEW_LOG)
    assert log.wording == "new"
    assert log.api == (1, 55, 21)  # not the SEV-SNP API line
    sev, es = log.asids["SEV"], log.asids["SEV-ES"]
    assert (sev.state, sev.count, sev.first, sev.last) == ("enabled", 410, 100, 509)
    assert (es.state, es.count, es.first, es.last) == ("enabled", 99, 1, 99)
    assert log.asids["SEV-SNP"].count == 99


@pytest.mark.parametrize("line, state", [
    ("kvm_amd: SEV-ES disabled (ASIDs 0 - 99)", "disabled"),
    ("kvm_amd: SEV-ES unusable (ASIDs 1 - 0)", "unusable"),
    ("SEV-ES enabled (ASIDs 1 - 0)", "enabled"),
])
def test_kernel_log_es_not_usable(line, state):
    es = parse_kernel_log(line + "\n").asids["SEV-ES"]
    assert es.state == state and es.count == 0


@pytest.mark.parametrize("line, code", [
    ("[    4.30] ccp 0000:02:00.2: SEV: failed to INIT error 0x13", 0x13),
    ("ccp 0000:02:00.2: SEV: failed to INIT error 0x13, rc -5", 0x13),
    ("ccp 0000:02:00.2: SEV: failed to INIT rc -5, error 0x3", 0x3),
])
def test_kernel_log_init_failure(line, code):
    log = parse_kernel_log(line + "\n")
    assert log.init_error == code and log.api is None and "failed to INIT" in log.init_line


def test_version_line_never_erases_init_failure():
    # ccp reads the firmware version even when INIT failed (issue 16): the
    # version line after a failure is not a recovery.
    log = parse_kernel_log("SEV: failed to INIT error 0x13\nccp 0000:01:00.5: SEV API:1.55 build:21\n")
    assert log.init_error == 0x13 and log.api == (1, 55, 21)


def test_kernel_log_without_sev_lines():
    log = parse_kernel_log("[    0.0] Linux version 6.1.0\n[ 6.1] kvm: Nested Virtualization enabled\n")
    assert log.asids == {} and log.api is None and log.wording == ""


@pytest.mark.parametrize("text, version", [
    ("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright ...", (7, 2, 22)),
    ("QEMU emulator version 6.0.0\n", (6, 0, 0)),
    ("QEMU emulator version 5.2.0 (Debian 1:5.2+dfsg-11+deb11u2)\n", (5, 2, 0)),
    ("QEMU emulator version 9.1.50 (v9.1.0-1234-gdeadbeef)\n", (9, 1, 50)),
    ("bash: qemu: command not found", None),
])
def test_qemu_version(text, version):
    assert parse_qemu_version(text) == version


def test_kernel_release():
    assert parse_kernel_release("5.15.0-91-generic\n") == (5, 15)
    assert parse_kernel_release("6.18.44-fc-v595") == (6, 18)
    assert parse_kernel_release("5.4.0-150-generic") < (5, 11)
    assert parse_kernel_release("") is None


@pytest.mark.parametrize("raw, enabled", [("1", True), ("Y", True), ("y", True), ("Y\n", True),
                                          ("0", False), ("N", False), ("", False)])
def test_param_enabled(raw, enabled):
    assert param_enabled(raw) is enabled


def test_domcapabilities_sev():
    xml = ("<domainCapabilities><features><sev supported='yes'><cbitpos>47</cbitpos>"
           "<reducedPhysBits>1</reducedPhysBits><maxGuests>410</maxGuests>"
           "<maxESGuests>99</maxESGuests></sev></features></domainCapabilities>")
    caps = parse_domcapabilities(xml)
    assert caps.supported and (caps.cbitpos, caps.reduced_phys_bits, caps.max_guests, caps.max_es_guests) == \
        (47, 1, 410, 99)
    old = parse_domcapabilities("<domainCapabilities><features><sev supported='yes'><cbitpos>47</cbitpos>"
                                "<reducedPhysBits>1</reducedPhysBits></sev></features></domainCapabilities>")
    assert old.max_guests is None and old.cbitpos == 47
    assert not parse_domcapabilities("<domainCapabilities><features><sev supported='no'/></features>"
                                     "</domainCapabilities>").supported
    assert parse_domcapabilities("<domainCapabilities><features/></domainCapabilities>") is None
    assert parse_domcapabilities("error: failed to connect to the hypervisor") is None


def test_memlock():
    limits = ("Limit                     Soft Limit           Hard Limit           Units     \n"
              "Max locked memory         8388608              8388608              bytes     \n")
    assert parse_memlock(limits) == "8388608"
    assert parse_memlock("Max locked memory         unlimited            unlimited            bytes\n") == "unlimited"
    assert parse_memlock("") is None
    assert describe_bytes("8388608") == "8388608 bytes (8 MiB)" and describe_bytes("unlimited") == "unlimited"


@pytest.mark.parametrize("line, code, rc", [
    ("ccp 0000:42:00.1: SEV: failed to INIT error 0x1, rc -5", 0x1, -5),
    ("ccp 0000:42:00.1: SEV: failed to INIT rc -5, error 0x3", 0x3, -5),
    ("ccp 0000:01:00.5: SEV: failed to INIT error 0xffffffff, rc -16", 0xFFFFFFFF, -16),
])
def test_init_error_and_rc_in_either_order(line, code, rc):
    log = parse_kernel_log(line + "\n")
    assert (log.sev_init.error, log.sev_init.rc, log.sev_init.device) == (code, rc, line[4:16])


def test_snp_init_failure_is_kept_apart_from_sev():
    log = parse_kernel_log("ccp 0000:42:00.1: SEV-SNP: failed to INIT rc -5, error 0x3\n")
    assert log.sev_init is None and log.snp_init.error == 0x3 and not log.snp_initialized


def test_combined_es_snp_line_and_old_new_wordings_in_one_boot():
    log = parse_kernel_log("kvm_amd: SEV-ES and SEV-SNP supported: 99 ASIDs\n"
                           "kvm_amd: SEV enabled (ASIDs 100 - 509)\n")
    assert log.asids["SEV-ES"].count == 99 and log.asids["SEV-SNP"].count == 99
    assert log.asids["SEV"].first == 100 and log.wording == "both"


@pytest.mark.parametrize("text", [
    "SVM: SEV supported: 12 ASIDs\n",
    "[    4.067938] SVM: SEV supported: 12 ASIDs\n",
    "Dec 20 01:16:46 sev-host kernel: SEV supported: 12 ASIDs\n",
    "sev.lab.example kernel: SEV supported: 12 ASIDs\n",
    "[Wed Oct 11 10:36:17 2023] SEV supported: 12 ASIDs\n",
    "<6>[    4.06] kvm_amd: SEV supported: 12 ASIDs\n",
    "[ 1.0] ccp 0000:01:00.2: psp enabled [ 4.067938] SEV supported: 12 ASIDs\n",  # collapsed onto one line
])
def test_record_framing(text):
    assert parse_kernel_log(text).asids["SEV"].count == 12


def test_host_names_with_sev_are_not_messages():
    log = parse_kernel_log("[    6.7] systemd[1]: Set hostname to <xlab-SEV-SNP-01>.\n"
                           "sev-host kernel: SEV-ES supported\n"
                           "SEV-host kernel: Linux-ish text SEV API:1.0 build:1 inside\n")
    assert log.firmware is None and "SEV-SNP" not in log.asids


def test_bare_sev_supported_has_no_count():
    sev = parse_kernel_log("[Wed Oct 11 10:36:17 2023] SEV supported\n").asids["SEV"]
    assert sev.usable and sev.count is None and "not printed" in sev.describe()


def test_disabled_range_and_unsigned_underflow_are_unusable():
    log = parse_kernel_log("kvm_amd: SEV disabled (ASIDs 1 - 509)\n"
                           "kvm_amd: SEV-ES disabled (ASIDs 1 - 4294967295)\n"
                           "kvm_amd: SEV-SNP enabled (ASIDs 1 - 4294967295)\n")
    assert not log.asids["SEV"].usable and log.asids["SEV"].count == 0
    assert log.asids["SEV-ES"].underflow and "underflow" in log.asids["SEV-ES"].describe()
    assert log.asids["SEV-SNP"].count == 0 and not log.asids["SEV-SNP"].usable


def test_firmware_version_from_whichever_line():
    assert parse_kernel_log("ccp 0000:46:00.1: SEV-SNP API:1.51 build:3\n").firmware.api == (1, 51, 3)
    up = parse_kernel_log("ccp 0000:47:00.1: SEV firmware updated from 1.53.5 to 1.55.29\n").firmware
    assert (up.api, up.source) == ((1, 55, 29), "updated")
    both = parse_kernel_log("ccp x: junk\nccp 0000:26:00.1: SEV API:1.52 build:4\n"
                            "ccp 0000:26:00.1: SEV-SNP API:1.53 build:9\n").firmware
    assert both.source == "SEV API" and both.api == (1, 52, 4)


def test_status_error_and_psps():
    log = parse_kernel_log("ccp 0000:02:00.5: sev enabled\n"
                           "ccp 0000:02:00.5: SEV: failed to get status. Error: 0x8003\n"
                           "ccp 0000:a2:00.1: psp does not support SEV\n")
    assert [c for _, c, _ in log.status_errors] == [0x8003]
    assert log.sev_psps == ["0000:02:00.5"] and log.psps_without_sev == ["0000:a2:00.1"]


def test_only_the_last_boot_counts():
    log = parse_kernel_log("[0.0] Linux version 6.1.0\nccp 0000:01:00.5: SEV: failed to INIT error 0x13\n"
                           "[0.0] Linux version 6.1.0\nccp 0000:01:00.5: SEV API:1.55 build:21\n")
    assert log.sev_init is None and log.api == (1, 55, 21)
