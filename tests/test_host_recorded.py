"""Every recorded host under fixtures/hosts/ is probed from its recording and
must give exactly its expected.txt, and the verdict its real machine gets.

Which are captures: dev-machine-no-sev and capture-* (this project's
development machines); every epyc-* and intel-* host is RECONSTRUCTED (two of
them around a captured dmesg): each meta.json says so and from what."""

from pathlib import Path

import pytest

from pytest_sev.host import CHECK_NAMES, decide
from pytest_sev.host.recorded import load_recorded, record_host

HOSTS_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
HOSTS = sorted(p.name for p in HOSTS_DIR.iterdir() if p.is_dir())

# host -> (first failing check for "sev", for "sev-es"); None = ready.
# Written by hand from what each real machine is, not derived from expected.txt.
VERDICTS = {
    "epyc-rome-5.15-ready": (None, None),
    "epyc-milan-6.8-ready": (None, None),
    "epyc-milan-sev-only": (None, "sev_es_asids"),
    "epyc-rome-smee-off": ("sev_firmware", "sev_firmware"),
    "epyc-milan-sev-es-param-off": (None, "kvm_amd_sev_es"),
    "intel-xeon-icelake": ("cpu_vendor", "cpu_vendor"),
    "dev-machine-no-sev": ("cpu_vendor", "cpu_vendor"),
    # captured with python -m pytest_sev capture (an Intel Xeon VM, TCG)
    "capture-devbox-2026-12-01": ("cpu_vendor", "cpu_vendor"),
    # dmesg from real captures (enarx#1315, AMDSEV#189); the rest reconstructed (see meta.json).
    "epyc-milan-snp-combined-ready": (None, None),
    "epyc-milan-r7515-init-0x1-api": ("sev_firmware", "sev_firmware"),
    # dmesg from real captures (amd/sev-utils#19, AMDESE/AMDSEV#88); SNP verdicts in tests/test_snp_host.py.
    "epyc-milan-snp-ready": (None, None),
    "epyc-milan-snp-iommu-pt": (None, None),
}


@pytest.fixture(params=HOSTS)
def recorded(request, tmp_path):
    return load_recorded(HOSTS_DIR / request.param, tmp_path)


def test_every_recorded_host_has_a_verdict():
    assert len(HOSTS) >= 9
    assert set(HOSTS) == set(VERDICTS)


def test_report_matches_expected(recorded):
    report = recorded.probe()
    assert [c.name for c in report.checks] == list(CHECK_NAMES)
    assert report.format_text() == recorded.expected_text()


def test_replay_asked_for_the_recorded_commands(recorded):
    recorded.probe()
    for key in ("dmesg", "uname -r", "qemu-system-x86_64 --version", "virsh domcapabilities"):
        assert key in recorded.runner.asked
        assert key in recorded.runner.answers, f"{recorded.name} lacks a recording of {key!r}"


def test_readiness_verdict(recorded):
    report = recorded.probe()
    want_sev, want_es = VERDICTS[recorded.name]
    for mode, want in (("sev", want_sev), ("sev-es", want_es)):
        first = report.first_failure(mode)
        assert (first.name if first else None) == want, f"{mode}: {report.format_text()}"
        assert report.ready_for(mode) is (want is None)


def test_sev_es_mode_decision(recorded):
    """What a --sev-es nightly on the real machine would do with an SEV-ES test."""
    report = recorded.probe()
    _, want_es = VERDICTS[recorded.name]
    strict = decide("sev-es", report, "sev-es")
    auto = decide("auto", report, "sev-es")
    if want_es is None:
        assert strict.action == auto.action == "run"
    else:
        assert strict.action == "fail" and want_es in strict.reason
        assert auto.action == "skip" and want_es in auto.reason
        assert report.check(want_es).remedy in strict.reason
    assert decide("off", report, "sev-es").action == "skip"


def test_smee_off_host_names_the_bios_setting(tmp_path):
    report = load_recorded(HOSTS_DIR / "epyc-rome-smee-off", tmp_path).probe()
    d = decide("sev-es", report, "sev-es")
    assert d.action == "fail"
    assert "0x13" in d.reason and "SMEE" in d.reason
    assert report.check("syscfg_smee").status == "skip"  # unreadable MSR is not a failure


def test_sev_only_host_runs_sev_but_not_sev_es(tmp_path):
    report = load_recorded(HOSTS_DIR / "epyc-milan-sev-only", tmp_path).probe()
    assert decide("sev", report, "sev").action == "run"
    assert decide("sev-es", report, "sev").action == "run"  # the plain-SEV subset under --sev-es
    failed = decide("sev-es", report, "sev-es")
    assert failed.action == "fail" and "SEV-ES ASID Space Limit" in failed.reason
    assert decide("sev", report, "sev-es").action == "skip"


def test_facts(tmp_path):
    rome = load_recorded(HOSTS_DIR / "epyc-rome-5.15-ready", tmp_path / "a").probe().facts
    assert rome["cbitpos"] == "47" and rome["reduced_phys_bits"] == "5"
    assert rome["sev_api"] == "0.24" and rome["sev_build"] == "15"
    assert rome["family_model_stepping"] == "23/49/0"
    assert rome["microcode"] == "0x830107a"
    assert rome["host_kernel"] == "5.15.0-91-generic" and rome["qemu_version"] == "6.2.0"
    assert rome["cpuid_source"] == "/dev/cpu/0/cpuid" and rome["qemu_accel"] == "kvm"
    milan = load_recorded(HOSTS_DIR / "epyc-milan-6.8-ready", tmp_path / "b").probe().facts
    assert (milan["cbitpos"], milan["sev_api"], milan["sev_build"]) == ("51", "1.55", "21")
    assert milan["sev_es_asids"] == "99" and milan["encrypted_guests"] == "509"
    here = load_recorded(HOSTS_DIR / "dev-machine-no-sev", tmp_path / "c").probe().facts
    assert here["cbitpos"] == "unknown" and here["qemu_accel"] == "tcg"


def test_recording_round_trip(recorded, tmp_path):
    """Recording a host (here: a replayed one) and replaying the recording
    gives the same report: record_host saves everything the probe reads."""
    dest = tmp_path / "again"
    report = record_host(dest, root=recorded.root, runner=recorded.runner,
                         qemu=recorded.meta.get("qemu", "qemu-system-x86_64"),
                         ovmf_code=recorded.meta.get("ovmf_code"), ovmf_vars=recorded.meta.get("ovmf_vars"),
                         qmp=recorded.qmp)
    assert report.format_text() == recorded.expected_text()
    again = load_recorded(dest, tmp_path / "scratch").probe()
    assert again.format_text() == recorded.expected_text()


def test_snp_capable_host_with_combined_line_is_ready_for_sev_es(tmp_path):
    """Issue 16: the combined 'SEV-ES and SEV-SNP supported' line and a lone
    'SEV-SNP API' line (a real capture) must not fail --sev-es."""
    rec = load_recorded(HOSTS_DIR / "epyc-milan-snp-combined-ready", tmp_path)
    assert rec.meta["dmesg"]["provenance"] == "captured" and rec.meta["reconstructed"]
    report = rec.probe()
    assert decide("sev-es", report, "sev-es").action == "run"
    assert report.check("kernel_log_sev_es").status == "pass"
    assert "99 ASIDs" in report.check("kernel_log_sev_es").value
    assert report.facts["sev_api"] == "1.42" and report.facts["sev_build"] == "42"


def test_init_failure_followed_by_api_line_is_not_ready(tmp_path):
    rec = load_recorded(HOSTS_DIR / "epyc-milan-r7515-init-0x1-api", tmp_path)
    assert rec.meta["dmesg"]["provenance"] == "captured"
    report = rec.probe()
    d = decide("sev-es", report, "sev-es")
    assert d.action == "fail" and "sev_firmware" in d.reason
    assert "error 0x1" in d.reason and "INVALID_PLATFORM_STATE" in d.reason
    assert report.check("sev_firmware").remedy in d.reason
