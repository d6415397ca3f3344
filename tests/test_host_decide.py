"""HostReport readiness and the mode table (design.md) on hand-built reports."""

import json

import pytest

from pytest_sev.host import Check, Decision, HostReport, check_outcome, decide
from pytest_sev.host.report import FOR_NONE, FOR_SEV, FOR_SEV_ES


def report(*checks: Check) -> HostReport:
    return HostReport(list(checks), {"cbitpos": "51"})


READY = report(Check("sev", "pass", "yes", "", FOR_SEV), Check("sev_es", "pass", "yes", "", FOR_SEV_ES),
               Check("syscfg_smee", "skip", "unknown (no msr)", "modprobe msr", FOR_SEV),
               Check("microcode", "info", "0xa0011d1"))
NO_ES = report(Check("sev", "pass", "yes", "", FOR_SEV),
               Check("sev_es_asids", "fail", "0 (EDX=1)", "raise the SEV-ES ASID Space Limit", FOR_SEV_ES),
               Check("virsh_sev", "fail", "<sev supported='no'>", "restart libvirtd", FOR_NONE))
NO_SEV = report(Check("cpu_vendor", "fail", "GenuineIntel", "use an EPYC", FOR_SEV),
                Check("dev_sev", "fail", "absent", "modprobe ccp", FOR_SEV))


def test_skip_with_unknown_value_does_not_fail_readiness():
    assert READY.ready_for("sev") and READY.ready_for("sev-es")
    assert READY.failures("sev-es") == [] and READY.first_failure("sev-es") is None


def test_failures_follow_needed_for():
    assert NO_ES.ready_for("sev") and not NO_ES.ready_for("sev-es")
    assert [c.name for c in NO_ES.failures("sev-es")] == ["sev_es_asids"]  # virsh is needed by nothing
    assert [c.name for c in NO_SEV.failures("sev")] == ["cpu_vendor", "dev_sev"]
    assert NO_SEV.first_failure("sev-es").name == "cpu_vendor"
    with pytest.raises(ValueError):
        NO_SEV.ready_for("auto")


def test_check_validation():
    with pytest.raises(ValueError):
        Check("x", "ok", "v")
    with pytest.raises(ValueError):
        Check("x", "pass", "v", "", frozenset({"tdx"}))
    with pytest.raises(KeyError):
        READY.check("nope")


def test_format_text():
    text = NO_ES.format_text().splitlines()
    assert text[0] == "[ PASS ] sev: yes"
    assert text[1] == "[ FAIL ] sev_es_asids: 0 (EDX=1)"
    assert text[2] == "         remedy: raise the SEV-ES ASID Space Limit"
    assert "sev: ready" in text and "sev-es: NOT ready (first failure: sev_es_asids)" in text
    assert "[ INFO ] microcode: 0xa0011d1" in READY.format_text()
    assert "[ SKIP ] syscfg_smee: unknown (no msr)" in READY.format_text()


def test_to_dict_is_json():
    d = json.loads(json.dumps(NO_ES.to_dict()))
    assert d["ready"] == {"sev": True, "sev-es": False}
    assert d["checks"][1] == {"name": "sev_es_asids", "status": "fail", "value": "0 (EDX=1)",
                              "remedy": "raise the SEV-ES ASID Space Limit", "needed_for": ["sev-es"]}
    assert d["facts"] == {"cbitpos": "51"}


@pytest.mark.parametrize("mode, rep, wants, action, named", [
    ("auto", READY, "sev-es", "run", None),
    ("auto", NO_ES, "sev-es", "skip", "sev_es_asids"),
    ("auto", NO_ES, "sev", "run", None),
    ("auto", NO_SEV, "sev", "skip", "cpu_vendor"),
    ("sev-es", READY, "sev-es", "run", None),
    ("sev-es", NO_ES, "sev-es", "fail", "sev_es_asids"),
    ("sev-es", NO_ES, "sev", "run", None),  # --sev-es still runs the plain-SEV subset
    ("sev-es", NO_SEV, "sev", "fail", "cpu_vendor"),
    ("sev", READY, "sev", "run", None),
    ("sev", NO_SEV, "sev", "fail", "cpu_vendor"),
    ("sev", READY, "sev-es", "skip", None),  # --sev does not ask for SEV-ES
    ("off", READY, "sev-es", "skip", None),
    ("off", NO_SEV, "sev", "skip", None),
])
def test_mode_table(mode, rep, wants, action, named):
    d = decide(mode, rep, wants)
    assert isinstance(d, Decision) and d.action == action, d
    if named:
        check = rep.check(named)
        assert named in d.reason and check.value in d.reason and check.remedy in d.reason
    if mode == "off":
        assert d.reason == "--sev-mode=off runs plain guests only"


def test_decide_rejects_unknown_modes():
    with pytest.raises(ValueError):
        decide("sev-snp", READY, "sev-es")
    with pytest.raises(ValueError):
        decide("auto", READY, "snp")


def test_check_outcome_info_rows_with_unknown_value_skip():
    for value in ("unknown", "unknown (no /proc/cpuinfo)", "n/a (no SEV)", ""):
        d = check_outcome(Check("microcode", "info", value), "sev-es")
        assert d.action == "skip" and "not determined" in d.reason
    assert check_outcome(Check("microcode", "info", "0xa0011d1"), "sev-es").action == "run"


@pytest.mark.parametrize("status, needed, mode, action", [
    ("pass", FOR_SEV, "sev-es", "run"),
    ("info", FOR_NONE, "sev-es", "run"),
    ("skip", FOR_SEV, "sev-es", "skip"),
    ("fail", FOR_SEV, "sev-es", "fail"),
    ("fail", FOR_SEV, "sev", "fail"),
    ("fail", FOR_SEV_ES, "sev", "skip"),  # --sev does not need an SEV-ES-only check
    ("fail", FOR_SEV, "auto", "skip"),
    ("fail", FOR_SEV, "off", "skip"),
    ("fail", FOR_NONE, "sev-es", "skip"),
])
def test_check_outcome(status, needed, mode, action):
    c = Check("dev_sev", status, "absent", "modprobe ccp", needed)
    d = check_outcome(c, mode)
    assert d.action == action
    if action == "fail":
        assert "absent" in d.reason and "modprobe ccp" in d.reason
    if status == "fail" and action == "skip":
        assert "modprobe ccp" in d.reason
