"""SEV-SNP host readiness (issue 22, item 7): the parsers on captured kernel text,
the SNP checks, ``HostReport.readiness("sev-snp")`` and ``host --mode sev-snp``
on recorded hosts.

Inputs and their provenance: fixtures/host-logs (corpus.toml names each
capture's thread), fixtures/hosts/*/meta.json; single lines below say where
they come from, ``(reconstructed)`` where they were written from a format string.
"""

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from pytest_sev.cli.host import main
from pytest_sev.host import CHECK_NAMES
from pytest_sev.host.checks_cpu import CpuView
from pytest_sev.host.checks_kernel import asid_check
from pytest_sev.host.checks_snp import (
    iommu_check,
    kvm_amd_snp_check,
    qemu_snp_check,
    rmp_table_check,
    snp_firmware_check,
    syscfg_snpen_check,
)
from pytest_sev.host.decide import decide
from pytest_sev.host.evidence import Evidence
from pytest_sev.host.parse_cpu import SevCpuid
from pytest_sev.host.parse_log import parse_kernel_log
from pytest_sev.host.parse_snp import parse_snp_log, parse_syscfg_snpen, rmp_from_msrs
from pytest_sev.host.recorded import load_recorded
from pytest_sev.host.report import (
    FOR_SEV,
    FOR_SEV_ES,
    FOR_SEV_NOT_SNP,
    FOR_SNP,
    MODES,
    Check,
    HostReport,
)
from pytest_sev.modes import GUEST_KINDS, READINESS_KINDS, RUN_MODES, SEV_KINDS, Mode

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / "fixtures" / "host-logs"
HOSTS = REPO / "fixtures" / "hosts"
ENTRIES = tomllib.loads((LOGS / "corpus.toml").read_text())["log"]
SNP_ENTRIES = [e for e in ENTRIES if "snp_checks" in e["expect"]]

MILAN = SevCpuid(0x0001B03F, 0x4073, 509, 100)  # CPUID 0x8000001F of the recorded Milan hosts
ROME = SevCpuid(0x0001000F, 0x402F, 509, 100)  # no SNP bit
NO_CPU = CpuView(None, None, "not read")
MILAN_VIEW = CpuView(None, MILAN, "")


def _log(name: str) -> str:
    return (LOGS / f"{name}.txt").read_text()


# --- the readiness kind ---------------------------------------------------------------------

def test_sev_snp_is_a_readiness_kind_a_run_mode_and_a_guest_kind_but_no_sev_guest_kind():
    assert Mode.SEV_SNP == "sev-snp"
    assert READINESS_KINDS == ("sev", "sev-es", "sev-snp") and MODES == READINESS_KINDS
    assert "sev-snp" in RUN_MODES and "sev-snp" in GUEST_KINDS
    assert "sev-snp" not in SEV_KINDS  # another QEMU object, another policy word
    with pytest.raises(ValueError, match="sev mode must be one of auto, sev-snp, sev-es, sev, off"):
        decide("snp", HostReport([]), "sev")


def test_what_each_kind_needs():
    # SNP guests are SEV-ES guests are SEV guests; SNP takes SEV-ES ASIDs and a -bios image
    assert {"sev", "sev-es", "sev-snp"} == FOR_SEV
    assert {"sev-es", "sev-snp"} == FOR_SEV_ES
    assert {"sev-snp"} == FOR_SNP
    assert {"sev", "sev-es"} == FOR_SEV_NOT_SNP


def test_every_snp_check_is_in_the_report_order():
    for name in ("snp", "syscfg_snpen", "rmp_table", "snp_iommu", "snp_firmware", "kvm_amd_sev_snp",
                 "kernel_log_snp", "qemu_snp"):
        assert name in CHECK_NAMES
    # root causes first: the BIOS and the IOMMU before the firmware, kvm_amd and QEMU
    order = [CHECK_NAMES.index(n) for n in ("syscfg_snpen", "rmp_table", "snp_iommu", "snp_firmware",
                                            "kvm_amd_sev_snp", "kernel_log_snp", "qemu_snp")]
    assert order == sorted(order)


def test_readiness_for_snp_on_hand_built_reports():
    ready = HostReport([Check("sev", "pass", "yes", "", FOR_SEV), Check("snp", "pass", "yes", "", FOR_SNP)])
    assert ready.readiness("sev-snp").state == "ready"
    unknown = HostReport([Check("sev", "pass", "yes", "", FOR_SEV),
                          Check("syscfg_snpen", "skip", "unknown (no msr)", "modprobe msr", FOR_SNP)])
    assert unknown.ready_for("sev") and unknown.readiness("sev-snp").state == "undetermined"
    assert unknown.format_text().splitlines()[-1] == "sev-snp: UNDETERMINED (could not answer: syscfg_snpen)"
    failed = HostReport([Check("kernel_log_sev", "fail", "disabled", "", FOR_SEV_NOT_SNP),
                         Check("snp_iommu", "fail", "refused", "iommu=nopt", FOR_SNP)])
    assert not failed.ready_for("sev") and failed.first_failure("sev-snp").name == "snp_iommu"
    assert failed.to_dict()["readiness"]["sev-snp"] == {"state": "not-ready", "failed": ["snp_iommu"],
                                                        "unanswered": []}


# --- parsers on captured text ------------------------------------------------------------------

@pytest.mark.parametrize("name,base,end", [
    ("sev-utils-19-milan-snp-new-wording", 0x97F00000, 0xA84FFFFF),  # "physical range [a - b]" (upstream)
    ("amdsev-84-r7515-snp-api-only", 0x7FFE500000, 0x807EDFFFFF),  # "physical address a - b" (5.14)
    ("amdsev-189-init-0x1-then-api", 0x4DE00000, 0x566FFFFF),  # "physical address [a - b]" (6.5)
])
def test_rmp_line_in_every_wording(name, base, end):
    rmp = parse_snp_log(_log(name)).rmp
    assert (rmp.base, rmp.end) == (base, end) and rmp.said.startswith("SEV-SNP: RMP table physical")


@pytest.mark.parametrize("line,kind", [
    ("[    0.500541] AMD-Vi: SEV-SNP: IOMMU is either disabled or configured in passthrough mode.",
     "passthrough"),  # captured, AMDESE/AMDSEV#88
    ("[   32.381854] AMD-Vi: SNP: IOMMU is disabled or configured in passthrough mode, SNP cannot be supported",
     "passthrough"),  # captured, AMDESE/AMDSEV#113
    ("[    0.9] AMD-Vi: SNP: IOMMU disabled or configured in passthrough mode, SNP cannot be supported.",
     "passthrough"),  # (reconstructed) upstream format string
    ("[    0.9] AMD-Vi: SNP: IOMMU is configured with V2 page table mode, SNP cannot be supported.",
     "v2-page-table"),  # (reconstructed) upstream format string
    ("[    0.9] AMD-Vi: SNP: IOMMU SNP feature not enabled, SNP cannot be supported.",
     "no-snp-feature"),  # (reconstructed) upstream format string
])
def test_iommu_refusals(line, kind):
    refusal = parse_snp_log(line + "\n").iommu_refusal
    assert refusal is not None and refusal.kind == kind


def test_iommu_acceptance_and_near_misses():
    assert parse_snp_log("[    3.693304] AMD-Vi: SNP enabled\n").iommu_enabled  # captured, AMDESE/AMDSEV#181
    accepted = parse_snp_log("[    0.9] AMD-Vi: IOMMU SNP support enabled.\n")  # (reconstructed) upstream
    assert accepted.iommu_enabled and accepted.iommu_refusal is None
    # the command line names iommu=pt, but only the driver's own line is its refusal (AMDESE/AMDSEV#88)
    cmdline = parse_snp_log("[    0.080454] Kernel command line: ro iommu=pt mem_encrypt=on\n")
    assert cmdline.iommu_refusal is None and not cmdline.iommu_enabled
    # a host name with "SNP" in it is no kernel message
    assert parse_snp_log("Dec 20 01:16:46 xlab-SEV-SNP-01 kernel: AMD-Vi: Interrupt remapping enabled\n") \
        .iommu_refusal is None


def test_only_the_last_boot_counts():
    text = ("[    0.5] AMD-Vi: SEV-SNP: IOMMU is either disabled or configured in passthrough mode.\n"
            "[    0.0] Linux version 6.11.0 (reconstructed second boot)\n" + _log("sev-utils-19-milan-snp-new-wording"))
    snp = parse_snp_log(text)
    assert snp.iommu_refusal is None and snp.rmp is not None
    assert len(snp.guest_memfd_refusals) == 10


def test_rmp_msrs_judged_as_the_kernel_does():
    rmp, why = rmp_from_msrs(0x97F00000, 0xA84FFFFF)
    assert rmp is not None and why == "" and rmp.size == 0x10600000 and "262 MiB" in rmp.describe()
    assert rmp_from_msrs(0, 0)[0] is None and "not reserved by the BIOS" in rmp_from_msrs(0, 0)[1]
    assert rmp_from_msrs(0x1FFF, 0xA84FFFFF)[0] is None  # below bit 13: no address bits
    assert "invalid" in rmp_from_msrs(0xB0000000, 0xA0000000)[1]


def test_syscfg_snpen_bit():
    assert parse_syscfg_snpen(1 << 24 | 1 << 23) and not parse_syscfg_snpen(0xF40000)


# --- the checks on the captured corpus ---------------------------------------------------------

@pytest.mark.parametrize("entry", SNP_ENTRIES, ids=[e["name"] for e in SNP_ENTRIES])
def test_snp_checks_on_the_corpus(entry):
    """Each check on the kernel log alone (no MSR read, CPU unknown), as written by hand in corpus.toml."""
    text = _log(entry["name"])
    log, snp = parse_kernel_log(text), parse_snp_log(text)
    ev = Evidence(rmp_msrs_error="not read")
    got = {
        "rmp_table": rmp_table_check(ev, NO_CPU, snp),
        "snp_iommu": iommu_check(NO_CPU, log, snp, ""),
        "snp_firmware": snp_firmware_check(log, ""),
        "kernel_log_snp": asid_check("kernel_log_snp", "SEV-SNP", log, "", FOR_SNP),
    }
    assert {k: c.status for k, c in got.items()} == entry["expect"]["snp_checks"]
    for check in got.values():
        assert check.needed_for == FOR_SNP
        assert check.status == "pass" or check.remedy or check.value.startswith(("unknown", "n/a"))


def test_snp_corpus_spread():
    """The captures cover each verdict of each SNP row."""
    seen = {(k, v) for e in SNP_ENTRIES for k, v in e["expect"]["snp_checks"].items()}
    for row in ("rmp_table", "snp_iommu", "snp_firmware", "kernel_log_snp"):
        assert {(row, "pass"), (row, "skip")} <= seen
    assert {("snp_iommu", "fail"), ("snp_firmware", "fail"), ("kernel_log_snp", "fail")} <= seen


def test_snp_firmware_values_and_remedies():
    init = snp_firmware_check(parse_kernel_log(_log("amdsev-189-init-0x1-then-api")), "")
    assert "error 0x3 (INVALID_CONFIG)" in init.value and "00.13.00.70" in init.remedy
    old = snp_firmware_check(parse_kernel_log(_log("enarx-1315-milan-journald-combined-snp-api-only")), "")
    assert old.value.startswith("1.42 build:42 (below 1.51") and ">= 1.51" in old.remedy
    too_old = snp_firmware_check(parse_kernel_log(_log("linux-svsm-9-init-0x1-api-1.15")), "")
    assert too_old.value.startswith("too old (")
    # "SEV API" without "SEV-SNP API": ccp did not bring SNP up (6.8 kernel, fixtures/hosts/epyc-milan-6.8-ready)
    plain = snp_firmware_check(parse_kernel_log("[   5.1] ccp 0000:47:00.1: SEV API:1.55 build:21\n"), "")
    assert plain.status == "fail" and plain.value.startswith("SNP not initialised")
    rome = snp_firmware_check(parse_kernel_log(_log("amdsev-45-svm-prefix-sev-es")), "")
    assert rome.status == "fail" and "SEV-SNP needs >= 1.51" in rome.value
    assert snp_firmware_check(None, "dmesg: exit 1").value == "unknown (kernel log not readable: dmesg: exit 1)"
    # SNP_INIT ran (the firmware's own word) without a version line: the SEV version is judged
    initialized = parse_kernel_log("[ 336.7] ccp 0000:54:00.1: SEV-SNP firmware initialized\n"
                                   "[ 338.7] ccp 0000:54:00.1: SEV API:1.49 build:3\n")  # (reconstructed)
    assert snp_firmware_check(initialized, "").status == "fail"


def _ev(**kw) -> Evidence:
    ev = Evidence(syscfg_error="no /dev/cpu/0/msr; rdmsr: exit 127", rmp_msrs_error="not read")
    for key, value in kw.items():
        setattr(ev, key, value)
    return ev


def test_syscfg_snpen_from_the_msr_or_the_kernels_words():
    on = syscfg_snpen_check(_ev(syscfg=0x1F40000, syscfg_source="/dev/cpu/0/msr"), MILAN_VIEW, None)
    assert on.status == "pass" and "bit 24 set" in on.value
    off = syscfg_snpen_check(_ev(syscfg=0xF40000, syscfg_source="rdmsr"), MILAN_VIEW, None)
    assert off.status == "fail" and "bit 24 clear" in off.value and "SEV-SNP Support" in off.remedy
    up = parse_kernel_log(_log("coconut-svsm-409-genoa-snp-new-wording"))
    said = syscfg_snpen_check(_ev(), MILAN_VIEW, up)
    assert said.status == "pass" and "SEV-SNP API:1.55 build:24" in said.value and "not read" in said.value
    # an SNP INIT failure: the kernel's words do not answer, the MSR was not read -> unknown, never "no"
    failed = syscfg_snpen_check(_ev(), MILAN_VIEW, parse_kernel_log(_log("amdsev-189-init-0x1-then-api")))
    assert failed.status == "skip" and failed.value.startswith("unknown (") and "modprobe msr" in failed.remedy
    rome = syscfg_snpen_check(_ev(syscfg=0xF40000, syscfg_source="rdmsr"), CpuView(None, ROME, ""), None)
    assert rome.status == "skip" and rome.value.startswith("n/a (no SEV-SNP in CPUID")


def test_rmp_table_from_the_msrs_when_the_log_says_nothing():
    from_msrs = rmp_table_check(_ev(rmp_msrs=(0x97F00000, 0xA84FFFFF)), MILAN_VIEW, parse_snp_log(""))
    assert from_msrs.status == "pass" and "(MSR 0xC0010132/0xC0010133)" in from_msrs.value
    none = rmp_table_check(_ev(rmp_msrs=(0, 0)), MILAN_VIEW, parse_snp_log(""))
    assert none.status == "fail" and "SNP Memory (RMP Table) Coverage" in none.remedy
    # (reconstructed) the kernel's own "not reserved" line, from arch/x86/virt/svm/sev.c
    said = parse_snp_log("[    0.0] SEV-SNP: Memory for the RMP table has not been reserved by BIOS\n")
    assert rmp_table_check(_ev(), MILAN_VIEW, said).status == "fail"
    unread = rmp_table_check(_ev(), MILAN_VIEW, None)
    assert unread.status == "skip" and "kernel log not readable" in unread.value


def test_iommu_check_names_the_remedy_from_the_kernel_text():
    text = _log("amdsev-88-snp-host-iommu-pt")
    check = iommu_check(MILAN_VIEW, parse_kernel_log(text), parse_snp_log(text), "")
    assert check.status == "fail" and "passthrough mode" in check.value
    assert "iommu=pt" in check.remedy and "iommu=nopt" in check.remedy and "amd_iommu=on is not an option" \
        in check.remedy
    v2 = "[ 0.9] AMD-Vi: SNP: IOMMU is configured with V2 page table mode, SNP cannot be supported.\n"
    assert "pgtbl_v1" in iommu_check(MILAN_VIEW, parse_kernel_log(v2), parse_snp_log(v2), "").remedy
    assert iommu_check(CpuView(None, ROME, ""), None, None, "").value.startswith("n/a")
    assert iommu_check(MILAN_VIEW, None, None, "dmesg: exit 1").status == "skip"


@pytest.mark.parametrize("params,status,words", [
    (None, "fail", "kvm_amd not loaded"),
    ({"sev": "Y", "sev_es": "Y"}, "fail", "this kvm_amd has no SEV-SNP host support"),
    ({}, "fail", "kernel without CONFIG_KVM_AMD_SEV"),
    ({"sev": "Y", "sev_es": "Y", "sev_snp": "N"}, "fail", "the effective value"),
    ({"sev": "Y", "sev_es": "Y", "sev_snp": "Y"}, "pass", "Y"),
    ({"sev": "1", "sev_es": "1", "sev_snp": "1"}, "pass", "1"),
])
def test_kvm_amd_sev_snp(params, status, words):
    check = kvm_amd_snp_check(_ev(kvm_amd=params))
    assert check.status == status and words in check.value


@pytest.mark.parametrize("text,status,value", [
    ("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)\n", "pass", "10.0.2 (>= 9.1 for SEV-SNP)"),
    ("QEMU emulator version 9.1.0\n", "pass", "9.1.0 (>= 9.1 for SEV-SNP)"),
    ("QEMU emulator version 9.0.1\n", "fail", "SEV-SNP needs QEMU >= 9.1 (this one is 9.0.1)"),
    ("QEMU emulator version 7.2.9 (Debian 1:7.2+dfsg-7+deb12u5)\n", "fail",
     "SEV-SNP needs QEMU >= 9.1 (this one is 7.2.9)"),
    (None, "fail", "qemu-system-x86_64: not found or not runnable"),
    ("something else\n", "skip", "unknown (QEMU version not parsed: see qemu_version)"),
])
def test_qemu_snp(text, status, value):
    check = qemu_snp_check(_ev(qemu_version_text=text))
    assert (check.status, check.value) == (status, value)


# --- recorded hosts and the CLI -------------------------------------------------------------------

#: first failure for sev-snp of every recorded host (None: ready)
SNP_VERDICTS = {
    "capture-devbox-2026-12-01": "cpu_vendor",
    "dev-machine-no-sev": "cpu_vendor",
    "intel-xeon-icelake": "cpu_vendor",
    "epyc-rome-5.15-ready": "snp",  # Rome: no SNP in CPUID
    "epyc-rome-smee-off": "snp",
    "epyc-milan-6.8-ready": "snp_firmware",  # 6.8: ccp never initialises SNP
    "epyc-milan-sev-only": "sev_es_asids",  # SNP guests take SEV-ES ASIDs
    "epyc-milan-sev-es-param-off": "syscfg_snpen",
    "epyc-milan-r7515-init-0x1-api": "sev_firmware",
    "epyc-milan-snp-combined-ready": "snp_firmware",  # SEV-SNP API 1.42 < 1.51
    "epyc-milan-snp-iommu-pt": "snp_iommu",
    "epyc-milan-snp-ready": None,
}


def test_every_recorded_host_has_an_snp_verdict():
    assert set(SNP_VERDICTS) == {p.name for p in HOSTS.iterdir() if p.is_dir()}


@pytest.mark.parametrize("name", sorted(SNP_VERDICTS))
def test_snp_readiness_of_recorded_hosts(name, tmp_path):
    report = load_recorded(HOSTS / name, tmp_path).probe()
    readiness = report.readiness("sev-snp")
    want = SNP_VERDICTS[name]
    assert (readiness.failed[0].name if readiness.failed else None) == want, report.format_text()
    assert readiness.ready is (want is None)
    assert report.format_text().splitlines()[-1].startswith("sev-snp: ")


def test_the_snp_ready_host_is_ready_for_every_kind_and_says_why(tmp_path):
    report = load_recorded(HOSTS / "epyc-milan-snp-ready", tmp_path).probe()
    assert all(report.ready_for(kind) for kind in MODES)
    assert report.check("snp_firmware").value.startswith("1.55 build:17 (>= 1.51")
    assert "the kernel's own words" in report.check("syscfg_snpen").value  # no msr driver on that host
    assert report.check("rmp_table").value.startswith("0x97f00000-0xa84fffff")
    assert report.facts["kvm_amd_sev_snp"] == "Y" and report.facts["snp_api"] == "1.55"
    meta = json.loads((HOSTS / "epyc-milan-snp-ready" / "meta.json").read_text())
    assert meta["provenance"] == "reconstructed" and meta["dmesg"]["provenance"] == "captured"
    assert (HOSTS / "epyc-milan-snp-ready" / "dmesg.txt").read_text() == _log("sev-utils-19-milan-snp-new-wording")


def test_cli_mode_sev_snp_ready(capsys):
    assert main(["--recorded", str(HOSTS / "epyc-milan-snp-ready"), "--mode", "sev-snp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "=> ready for sev-snp" and lines[-2] == "sev-snp: ready"


@pytest.mark.parametrize("name,first,words", [
    ("dev-machine-no-sev", "cpu_vendor", "GenuineIntel"),
    ("epyc-milan-sev-only", "sev_es_asids", "SEV-ES ASID Space Limit"),
    ("epyc-milan-snp-iommu-pt", "snp_iommu", "iommu=pt"),
])
def test_cli_mode_sev_snp_not_ready_names_the_check(capsys, name, first, words):
    assert main(["--recorded", str(HOSTS / name), "--mode", "sev-snp"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"=> NOT ready for sev-snp: host check {first} failed: ") and words in last


def test_cli_mode_sev_snp_undetermined(tmp_path, capsys):
    """The ready host with its kernel log gone: SNP rows the log answered become unknown, never ready."""
    host = tmp_path / "rotated"
    shutil.copytree(HOSTS / "epyc-milan-snp-ready", host)
    (host / "dmesg.txt").write_text("[123456.0] eth0: link up\n")
    assert main(["--recorded", str(host), "--mode", "sev-snp"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("=> UNDETERMINED for sev-snp: could not answer ")
    for name in ("syscfg_snpen", "rmp_table", "snp_iommu", "snp_firmware", "kernel_log_snp"):
        assert f"{name} (unknown (" in last


def test_cli_json_for_sev_snp(capsys):
    assert main(["--recorded", str(HOSTS / "epyc-milan-snp-iommu-pt"), "--mode", "sev-snp", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "sev-snp" and doc["state"] == "not-ready" and doc["first_failure"] == "snp_iommu"
    assert doc["ready"] == {"sev": True, "sev-es": True, "sev-snp": False}


def test_cli_refuses_an_unknown_kind(capsys):
    with pytest.raises(SystemExit):
        main(["--mode", "snp"])
    assert "sev-snp" in capsys.readouterr().err


def test_recorded_rmp_msrs_are_replayed(tmp_path):
    """A host recorded with the msr driver: SYSCFG from msr.json, the two adjacent RMP MSRs
    (one sparse file cannot hold both) from their rdmsr answers in commands.json."""
    host = tmp_path / "with-msrs"
    shutil.copytree(HOSTS / "epyc-milan-snp-ready", host)
    (host / "msr.json").write_text(json.dumps({"0xc0010010": "0x1f40000"}))
    commands = json.loads((host / "commands.json").read_text())
    commands["rdmsr -p 0 0xc0010132"] = {"status": 0, "stdout": "97f00000\n"}
    commands["rdmsr -p 0 0xc0010133"] = {"status": 0, "stdout": "a84fffff\n"}
    (host / "commands.json").write_text(json.dumps(commands))
    (host / "dmesg.txt").write_text("")  # nothing from the kernel: the registers answer
    report = load_recorded(host, tmp_path / "scratch").probe()
    assert report.check("syscfg_snpen").value.startswith("enabled (MSR 0xC0010010 = 0x1f40000")
    assert report.check("rmp_table").value == "0x97f00000-0xa84fffff (262 MiB) (MSR 0xC0010132/0xC0010133)"


def test_a_recording_keeps_the_rmp_msrs(tmp_path):
    """record_host -> load_recorded round trip: the RMP MSRs the probe read are replayed."""
    from pytest_sev.host.recorded import save_recording
    ev = Evidence(syscfg=0x1F40000, syscfg_source="/dev/cpu/0/msr", rmp_msrs=(0x97F00000, 0xA84FFFFF))
    save_recording(ev, {}, tmp_path / "rec", {"qemu": "qemu-system-x86_64"})
    commands = json.loads((tmp_path / "rec" / "commands.json").read_text())
    assert commands["rdmsr -p 0 0xc0010132"] == {"status": 0, "stdout": "97f00000\n"}
    report = load_recorded(tmp_path / "rec", tmp_path / "scratch").probe()
    assert report.check("rmp_table").status == "pass" and report.check("syscfg_snpen").status == "pass"
