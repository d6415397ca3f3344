"""HostReport readiness and the mode table (design.md) on hand-built reports."""

import json

import pytest

from pytest_sev.host import Check, Decision, HostReport, check_outcome, decide
from pytest_sev.host.decide import mode_needs
from pytest_sev.host.report import FOR_NONE, FOR_SEV, FOR_SEV_ES, FOR_SNP


def report(*checks: Check) -> HostReport:
    return HostReport(list(checks), {"cbitpos": "51"})


READY = report(Check("sev", "pass", "yes", "", FOR_SEV), Check("sev_es", "pass", "yes", "", FOR_SEV_ES),
               Check("syscfg_smee", "pass", "enabled", "", FOR_SEV),
               Check("virsh_sev", "skip", "virsh not installed", "", FOR_NONE),  # needed by nothing
               Check("microcode", "info", "0xa0011d1"))
NO_ES = report(Check("sev", "pass", "yes", "", FOR_SEV),
               Check("sev_es_asids", "fail", "0 (EDX=1)", "raise the SEV-ES ASID Space Limit", FOR_SEV_ES),
               Check("virsh_sev", "fail", "<sev supported='no'>", "restart libvirtd", FOR_NONE))
NO_SEV = report(Check("cpu_vendor", "fail", "GenuineIntel", "use an EPYC", FOR_SEV),
                Check("dev_sev", "fail", "absent", "modprobe ccp", FOR_SEV))
# nothing failed, but SYSCFG (both modes) and the kernel log's SEV-ES line (sev-es) could not be read
UNKNOWN = report(Check("sev", "pass", "yes", "", FOR_SEV),
                 Check("syscfg_smee", "skip", "unknown (no msr)", "modprobe msr", FOR_SEV),
                 Check("kernel_log_sev_es", "skip", "unknown (log rotated)", "", FOR_SEV_ES),
                 Check("microcode", "info", "unknown"))
# only the SEV-ES line is unknown: ready for sev, undetermined for sev-es
UNKNOWN_ES = report(Check("sev", "pass", "yes", "", FOR_SEV),
                    Check("kernel_log_sev_es", "skip", "unknown (log rotated)", "", FOR_SEV_ES))
# SEV-ES and SEV ready, SNP not: the IOMMU in passthrough (the SNP check named)
NO_SNP = report(*READY.checks, Check("snp_iommu", "fail", "passthrough", "boot with iommu=nopt", FOR_SNP))
# SNP ready, SEV-ES broken (recent firmware on an SNP host), SEV ready
SNP_NO_ES = report(Check("sev", "pass", "yes", "", FOR_SEV), Check("snp_iommu", "pass", "on", "", FOR_SNP),
                   Check("sev_es_boot", "fail", "no", "disable SNP for SEV-ES", frozenset({"sev-es"})))
# SNP's own check could not be read
UNKNOWN_SNP = report(*READY.checks, Check("syscfg_snpen", "skip", "unknown (no msr)", "modprobe msr", FOR_SNP))
# a failure and an unknown: the failure decides and is named first
FAILED_AND_UNKNOWN = report(Check("syscfg_smee", "skip", "unknown (no msr)", "modprobe msr", FOR_SEV),
                            Check("dev_sev", "fail", "absent", "modprobe ccp", FOR_SEV))


def test_a_skip_needed_by_nothing_leaves_the_host_ready():
    assert READY.ready_for("sev") and READY.ready_for("sev-es")
    assert READY.failures("sev-es") == [] and READY.first_failure("sev-es") is None
    assert READY.unanswered("sev-es") == []
    r = READY.readiness("sev-es")
    assert (r.state, r.ready, r.failed, r.unanswered, r.mode) == ("ready", True, (), (), "sev-es")
    assert r.describe() == "ready"


def test_a_needed_check_that_cannot_be_answered_makes_the_host_undetermined():
    for mode, unknown in (("sev", ["syscfg_smee"]), ("sev-es", ["syscfg_smee", "kernel_log_sev_es"])):
        r = UNKNOWN.readiness(mode)
        assert r.state == "undetermined" and not r.ready and r.failed == ()
        assert [c.name for c in r.unanswered] == unknown == [c.name for c in UNKNOWN.unanswered(mode)]
        assert not UNKNOWN.ready_for(mode)
        assert UNKNOWN.first_failure(mode) is None and UNKNOWN.failures(mode) == []  # nothing FAILED
    assert UNKNOWN.readiness("sev-es").describe() == "UNDETERMINED (could not answer: syscfg_smee, kernel_log_sev_es)"
    assert UNKNOWN_ES.ready_for("sev") and UNKNOWN_ES.readiness("sev-es").state == "undetermined"
    with pytest.raises(ValueError):
        UNKNOWN.unanswered("auto")


def test_a_failure_wins_over_an_unanswered_check():
    r = FAILED_AND_UNKNOWN.readiness("sev-es")
    assert r.state == "not-ready" and not r.ready
    assert [c.name for c in r.failed] == ["dev_sev"] and [c.name for c in r.unanswered] == ["syscfg_smee"]
    assert r.describe() == "NOT ready (first failure: dev_sev)"
    assert r.to_dict() == {"state": "not-ready", "failed": ["dev_sev"], "unanswered": ["syscfg_smee"]}


def test_failures_follow_needed_for():
    assert NO_ES.ready_for("sev") and not NO_ES.ready_for("sev-es")
    assert [c.name for c in NO_ES.failures("sev-es")] == ["sev_es_asids"]  # virsh is needed by nothing
    assert [c.name for c in NO_SEV.failures("sev")] == ["cpu_vendor", "dev_sev"]
    assert NO_SEV.first_failure("sev-es").name == "cpu_vendor"
    with pytest.raises(ValueError):
        NO_SEV.ready_for("auto")


def test_check_answers_per_mode():
    es_only = Check("kernel_log_sev_es", "skip", "unknown", "", FOR_SEV_ES)
    assert es_only.unanswered("sev-es") and not es_only.unanswered("sev") and not es_only.fails("sev-es")
    failed = Check("dev_sev", "fail", "absent", "", FOR_SEV_ES)
    assert failed.fails("sev-es") and not failed.fails("sev") and not failed.unanswered("sev-es")
    assert not Check("sev", "pass", "yes", "", FOR_SEV).unanswered("sev")


def test_check_validation():
    with pytest.raises(ValueError):
        Check("x", "ok", "v")
    with pytest.raises(ValueError):
        Check("x", "pass", "v", "", frozenset({"tdx"}))
    with pytest.raises(ValueError, match="an info row cannot be needed"):
        Check("microcode", "info", "0xa0011d1", "", FOR_SEV_ES)  # a fact is never judged, so never needed
    with pytest.raises(KeyError):
        READY.check("nope")


def test_format_text():
    text = NO_ES.format_text().splitlines()
    assert text[0] == "[ PASS ] sev: yes"
    assert text[1] == "[ FAIL ] sev_es_asids: 0 (EDX=1)"
    assert text[2] == "         remedy: raise the SEV-ES ASID Space Limit"
    assert text[-3:] == ["sev: ready", "sev-es: NOT ready (first failure: sev_es_asids)",
                         "sev-snp: NOT ready (first failure: sev_es_asids)"]
    assert "[ INFO ] microcode: 0xa0011d1" in READY.format_text()
    assert READY.format_text().splitlines()[-3:] == ["sev: ready", "sev-es: ready", "sev-snp: ready"]
    lines = UNKNOWN.format_text().splitlines()
    assert "[ SKIP ] syscfg_smee: unknown (no msr)" in lines and "         remedy: modprobe msr" in lines
    assert lines[-3:] == ["sev: UNDETERMINED (could not answer: syscfg_smee)",
                          "sev-es: UNDETERMINED (could not answer: syscfg_smee, kernel_log_sev_es)",
                          "sev-snp: UNDETERMINED (could not answer: syscfg_smee, kernel_log_sev_es)"]


def test_to_dict_is_json():
    d = json.loads(json.dumps(NO_ES.to_dict()))
    assert d["ready"] == {"sev": True, "sev-es": False, "sev-snp": False}
    assert d["readiness"]["sev-es"] == {"state": "not-ready", "failed": ["sev_es_asids"], "unanswered": []}
    assert d["readiness"]["sev"] == {"state": "ready", "failed": [], "unanswered": []}
    assert d["checks"][1] == {"name": "sev_es_asids", "status": "fail", "value": "0 (EDX=1)",
                              "remedy": "raise the SEV-ES ASID Space Limit", "needed_for": ["sev-es", "sev-snp"]}
    assert d["facts"] == {"cbitpos": "51"}
    u = json.loads(json.dumps(UNKNOWN.to_dict()))
    assert u["ready"] == {"sev": False, "sev-es": False, "sev-snp": False}
    assert u["readiness"]["sev-es"] == {"state": "undetermined", "failed": [],
                                        "unanswered": ["syscfg_smee", "kernel_log_sev_es"]}


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
    ("auto", UNKNOWN, "sev-es", "skip", "syscfg_smee"),
    ("sev-es", UNKNOWN, "sev-es", "fail", "syscfg_smee"),
    ("sev-es", UNKNOWN, "sev", "fail", "syscfg_smee"),
    ("sev", UNKNOWN, "sev", "fail", "syscfg_smee"),
    ("sev", UNKNOWN_ES, "sev", "run", None),  # the unknown line is SEV-ES's only
    ("sev-es", UNKNOWN_ES, "sev-es", "fail", "kernel_log_sev_es"),
    ("off", UNKNOWN, "sev-es", "skip", None),
    # --sev-snp: SNP demanded, SEV-ES and SEV where the host can
    ("sev-snp", READY, "sev-snp", "run", None),
    ("sev-snp", NO_SNP, "sev-snp", "fail", "snp_iommu"),
    ("sev-snp", UNKNOWN_SNP, "sev-snp", "fail", "syscfg_snpen"),
    ("sev-snp", NO_SNP, "sev-es", "run", None),
    ("sev-snp", NO_SNP, "sev", "run", None),
    ("sev-snp", SNP_NO_ES, "sev-snp", "run", None),
    ("sev-snp", SNP_NO_ES, "sev-es", "skip", "sev_es_boot"),  # not demanded: a skip naming the check
    ("sev-snp", NO_SEV, "sev", "skip", "cpu_vendor"),
    ("sev-snp", NO_SEV, "sev-snp", "fail", "cpu_vendor"),
    ("auto", NO_SNP, "sev-snp", "skip", "snp_iommu"),
    ("auto", UNKNOWN_SNP, "sev-snp", "skip", "syscfg_snpen"),
    ("auto", READY, "sev-snp", "run", None),
    ("sev-es", READY, "sev-snp", "skip", None),  # --sev-es does not ask for SEV-SNP
    ("sev", READY, "sev-snp", "skip", None),
    ("off", READY, "sev-snp", "skip", None),
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
        decide("snp", READY, "sev-es")
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
    ("skip", FOR_SEV, "sev-es", "fail"),  # needed, and could not be answered: not a pass
    ("skip", FOR_SEV, "auto", "skip"),
    ("skip", FOR_SEV_ES, "sev", "skip"),
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


# -- reasons, word for word: what a nightly's red line says ------------------------------------

def test_undetermined_reasons_name_every_unanswered_check_with_its_remedy():
    why = ("host readiness for sev-es undetermined: syscfg_smee (unknown (no msr); remedy: modprobe msr), "
           "kernel_log_sev_es (unknown (log rotated))")
    assert decide("auto", UNKNOWN, "sev-es") == Decision("skip", why)
    assert decide("sev-es", UNKNOWN, "sev-es") == Decision("fail", f"--sev-es but {why}")
    assert decide("sev", UNKNOWN, "sev") == Decision(
        "fail", "--sev but host readiness for sev undetermined: syscfg_smee (unknown (no msr); remedy: modprobe msr)")


def test_not_ready_reasons_name_the_failure_first_then_the_unknowns():
    assert decide("sev-es", FAILED_AND_UNKNOWN, "sev-es") == Decision(
        "fail", "--sev-es but host not ready for sev-es: host check dev_sev failed: absent; remedy: modprobe ccp; "
                "could not answer either: syscfg_smee")
    assert decide("auto", NO_ES, "sev-es") == Decision(
        "skip", "host not ready for sev-es: host check sev_es_asids failed: 0 (EDX=1); "
                "remedy: raise the SEV-ES ASID Space Limit")
    assert decide("auto", READY, "sev") == Decision("run", "host ready for sev")
    assert decide("sev", READY, "sev-es") == Decision("skip", "--sev does not ask for SEV-ES (use --sev-es)")
    no_remedy = report(Check("dev_sev", "fail", "absent", "", FOR_SEV))
    assert decide("auto", no_remedy, "sev").reason == "host not ready for sev: host check dev_sev failed: absent"


def test_check_outcome_of_an_unanswered_row_follows_the_mode():
    """A row the mode needs and the probe could not answer fails under that
    mode (naming its value and remedy), and is skipped where it is not needed."""
    smee = Check("syscfg_smee", "skip", "unknown (no msr)", "modprobe msr", FOR_SEV)
    for mode in ("sev-es", "sev"):
        assert check_outcome(smee, mode) == Decision(
            "fail", f"--{mode} needs it: syscfg_smee not determined: unknown (no msr); remedy: modprobe msr")
    for mode in ("auto", "off"):
        assert check_outcome(smee, mode) == Decision(
            "skip", "syscfg_smee not determined: unknown (no msr); remedy: modprobe msr")
    es_line = Check("kernel_log_sev_es", "skip", "unknown (log rotated)", "", FOR_SEV_ES)
    assert check_outcome(es_line, "sev") == Decision("skip", "kernel_log_sev_es not determined: unknown (log rotated)")
    assert check_outcome(es_line, "sev-es").action == "fail"
    virsh = Check("virsh_sev", "skip", "virsh not installed", "", FOR_NONE)
    assert check_outcome(virsh, "sev-es") == Decision("skip", "virsh_sev not determined: virsh not installed")
    unread_info = Check("memlock", "info", "unknown")
    assert check_outcome(unread_info, "sev-es") == Decision("skip", "memlock not determined: unknown")


def test_check_outcome_reasons_word_for_word():
    dev = Check("dev_sev", "fail", "absent", "modprobe ccp", FOR_SEV_ES)
    assert check_outcome(dev, "sev-es") == Decision(
        "fail", "--sev-es needs it: host check dev_sev failed: absent; remedy: modprobe ccp")
    assert check_outcome(dev, "auto") == Decision(
        "skip", "host check dev_sev failed: absent; remedy: modprobe ccp (needed for sev-es/sev-snp; mode auto does not require it)")
    virsh = Check("virsh_sev", "fail", "<sev supported='no'>", "", FOR_NONE)
    assert check_outcome(virsh, "sev-es") == Decision(
        "skip", "host check virsh_sev failed: <sev supported='no'> (needed for nothing the harness runs; "
                "mode sev-es does not require it)")
    assert check_outcome(Check("sev", "pass", "yes", "", FOR_SEV), "sev-es") == Decision("run", "sev: yes")
    assert check_outcome(Check("microcode", "info", "0xa0011d1"), "auto") == Decision("run", "microcode: 0xa0011d1")
    with pytest.raises(ValueError):
        check_outcome(dev, "snp")


def test_bad_values_are_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"^check x: bad status 'ok'$"):
        Check("x", "ok", "v")
    with pytest.raises(ValueError, match=r"^check x: unknown modes \['tdx'\]$"):
        Check("x", "pass", "v", "", frozenset({"tdx"}))
    with pytest.raises(ValueError, match=r"^readiness mode must be one of sev, sev-es, sev-snp, not 'auto'$"):
        READY.readiness("auto")
    with pytest.raises(KeyError, match="no host check named 'nope'"):
        READY.check("nope")
    with pytest.raises(ValueError, match=r"^sev mode must be one of auto, sev-snp, sev-es, sev, off, not 'snp'$"):
        decide("snp", READY, "sev")
    with pytest.raises(ValueError, match=r"^a test wants one of sev, sev-es, sev-snp, not 'snp'$"):
        decide("auto", READY, "snp")


def test_mode_needs():
    assert [mode_needs(m) for m in ("auto", "sev-snp", "sev-es", "sev", "off")] == \
        [None, "sev-snp", "sev-es", "sev", None]
    with pytest.raises(ValueError):
        mode_needs("snp")


@pytest.mark.parametrize("mode, wants, reason", [
    ("sev", "sev-es", "--sev does not ask for SEV-ES (use --sev-es)"),
    ("sev", "sev-snp", "--sev does not ask for SEV-SNP (use --sev-snp)"),
    ("sev-es", "sev-snp", "--sev-es does not ask for SEV-SNP (use --sev-snp)"),
])
def test_kinds_a_mode_does_not_ask_for_skip_naming_the_flag(mode, wants, reason):
    assert decide(mode, NO_SEV, wants) == Decision("skip", reason)


@pytest.mark.parametrize("mode, rep, wants, prefix", [
    ("sev-snp", NO_SNP, "sev-snp", "--sev-snp but host not ready for sev-snp: host check snp_iommu failed"),
    ("sev-snp", SNP_NO_ES, "sev-es", "host not ready for sev-es: host check sev_es_boot failed"),
    ("auto", NO_SNP, "sev-snp", "host not ready for sev-snp: host check snp_iommu failed"),
])
def test_snp_reasons_word_for_word(mode, rep, wants, prefix):
    assert decide(mode, rep, wants).reason.startswith(prefix)


def test_run_reasons_name_the_kind():
    assert decide("sev-snp", READY, "sev-snp") == Decision("run", "host ready for sev-snp")
    assert decide("sev-snp", READY, "sev") == Decision("run", "host ready for sev")


def test_check_outcome_names_every_mode_a_check_is_needed_for():
    c = Check("dev_sev", "fail", "absent", "", FOR_SEV)
    assert check_outcome(c, "off").reason == ("host check dev_sev failed: absent (needed for sev/sev-es/sev-snp; "
                                              "mode off does not require it)")


def test_check_outcome_under_sev_snp_fails_only_what_snp_needs():
    snp = Check("snp_iommu", "fail", "passthrough", "boot with iommu=nopt", FOR_SNP)
    es_only = Check("sev_es_boot", "fail", "no", "", frozenset({"sev-es"}))
    assert check_outcome(snp, "sev-snp") == Decision(
        "fail", "--sev-snp needs it: host check snp_iommu failed: passthrough; remedy: boot with iommu=nopt")
    assert check_outcome(es_only, "sev-snp").action == "skip"
    assert check_outcome(snp, "auto").action == "skip"
    assert check_outcome(snp, "sev-es").action == "skip"
