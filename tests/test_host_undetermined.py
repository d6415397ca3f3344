"""Unknown is not ready (issue 21, item 8), on a recorded EPYC host.

The host is fixtures/hosts/epyc-milan-6.8-ready as it looks weeks after boot:
the kernel log has rotated, so the firmware line and kvm_amd's SEV / SEV-ES
ASID lines are gone (``rotated_log_host`` copies it with such a log). Nothing
failed, but three checks the modes need could not be answered: the host is
UNDETERMINED, ``host --mode sev-es`` exits 1 naming them, the host suite's
rows fail under --sev-es and skip under auto, and the mode table fails or
skips an SEV-ES test naming them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_host_suite import CONFTEST, SNP_ROWS_NOT_PASSING  # the host suite against a recorded host, as there

from pytest_sev.cli.host import main
from pytest_sev.host import CHECK_NAMES, decide
from pytest_sev.host.recorded import load_recorded

REPO = Path(__file__).resolve().parent.parent
READY_HOST = REPO / "fixtures" / "hosts" / "epyc-milan-6.8-ready"
SUITE = REPO / "suites" / "test_host.py"

#: a kernel log long after boot: no ccp or kvm_amd boot line left
ROTATED_LOG = ("[864000.123456] kvm_amd: kvm [4242]: vcpu0, guest rIP: 0xffffffff81000000 "
               "unhandled rdmsr: 0xc0011029\n")
#: the checks the rotated log leaves unanswered, per mode (report order)
UNANSWERED = {"sev": ["sev_firmware", "kernel_log_sev"],
              "sev-es": ["sev_firmware", "kernel_log_sev", "kernel_log_sev_es"]}


def rotated_log_host(tmp_path: Path) -> Path:
    """The ready Milan host, recorded again after its kernel log rotated."""
    host = tmp_path / "epyc-milan-6.8-rotated-log"
    shutil.copytree(READY_HOST, host)
    (host / "dmesg.txt").write_text(ROTATED_LOG)
    (host / "expected.txt").unlink()  # its verdict is what these tests assert
    return host


@pytest.fixture
def rotated(tmp_path):
    return load_recorded(rotated_log_host(tmp_path), tmp_path / "scratch").probe()


def test_the_rotated_host_is_undetermined_not_ready(rotated):
    for mode, names in UNANSWERED.items():
        r = rotated.readiness(mode)
        assert r.state == "undetermined" and r.failed == ()
        assert [c.name for c in r.unanswered] == names
        assert not rotated.ready_for(mode)
    assert rotated.format_text().splitlines()[-3:] == [
        "sev: UNDETERMINED (could not answer: sev_firmware, kernel_log_sev)",
        "sev-es: UNDETERMINED (could not answer: sev_firmware, kernel_log_sev, kernel_log_sev_es)",
        # a 6.8 host without SNP support: its kvm_amd has sev_snp=N, a fact the rotated log cannot hide
        "sev-snp: NOT ready (first failure: kvm_amd_sev_snp)"]


def test_the_mode_table_fails_or_skips_naming_the_unanswered_checks(rotated):
    strict, auto = decide("sev-es", rotated, "sev-es"), decide("auto", rotated, "sev-es")
    assert strict.action == "fail" and auto.action == "skip"
    assert strict.reason == f"--sev-es but {auto.reason}"
    assert auto.reason.startswith("host readiness for sev-es undetermined: sev_firmware (unknown (no 'SEV API' line")
    for name in UNANSWERED["sev-es"]:
        assert f"{name} (unknown (" in auto.reason
    assert "the kernel log may have rotated" in auto.reason  # the remedy travels with the name
    assert decide("sev", rotated, "sev").action == "fail"
    assert decide("off", rotated, "sev-es").action == "skip"


def test_host_cli_exits_1_and_says_undetermined(tmp_path, capsys):
    host = str(rotated_log_host(tmp_path))
    for mode in ("sev-es", "sev"):
        assert main(["host", "--recorded", host, "--mode", mode]) == 1
        out = capsys.readouterr().out.splitlines()
        assert f"{mode}: UNDETERMINED (could not answer: {', '.join(UNANSWERED[mode])})" in out
        assert out[-1].startswith(f"=> UNDETERMINED for {mode}: could not answer sev_firmware (unknown (")
        assert "ready for" not in out[-1]
    assert main(["host", "--recorded", host, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["mode"], doc["state"], doc["first_failure"]) == ("sev-es", "undetermined", None)
    assert doc["unanswered"] == UNANSWERED["sev-es"]
    assert doc["ready"] == {"sev": False, "sev-es": False, "sev-snp": False}




def _suite(pytester, host: Path, mode: str):
    pytester.makeconftest(CONFTEST.format(host=str(host), mode=mode))
    pytester.makepyfile(test_host=SUITE.read_text())
    return pytester.runpytest_inprocess("-p", "no:sev", "-p", "no:cacheprovider", "-rfs")


def test_host_suite_rows_fail_under_sev_es(pytester, tmp_path):
    result = _suite(pytester, rotated_log_host(tmp_path), "sev-es")
    # the SNP rows that do not pass (SNP_ROWS_NOT_PASSING of test_host_suite): skipped, sev-snp needs them
    result.assert_outcomes(passed=len(CHECK_NAMES) - 3 - SNP_ROWS_NOT_PASSING, failed=3,
                           skipped=SNP_ROWS_NOT_PASSING)
    result.stdout.fnmatch_lines([
        "*--sev-es needs it: kernel_log_sev_es not determined: unknown (no SEV-ES ASID line*remedy: the kernel log*"])


def test_host_suite_under_sev_fails_the_rows_sev_needs(pytester, tmp_path):
    result = _suite(pytester, rotated_log_host(tmp_path), "sev")
    result.assert_outcomes(passed=len(CHECK_NAMES) - 3 - SNP_ROWS_NOT_PASSING, failed=2,
                           skipped=1 + SNP_ROWS_NOT_PASSING)  # the SEV-ES line: not needed by --sev


def test_host_suite_rows_skip_under_auto(pytester, tmp_path):
    result = _suite(pytester, rotated_log_host(tmp_path), "auto")
    result.assert_outcomes(passed=len(CHECK_NAMES) - 3 - SNP_ROWS_NOT_PASSING, skipped=3 + SNP_ROWS_NOT_PASSING)


def test_report_environment_says_undetermined_not_yes(rotated, tmp_path):
    """The Allure environment's readiness entries read the same three states."""
    from pytest_sev.reporting.environment import readiness_entries

    entries = readiness_entries(rotated)
    assert entries["host.ready.sev-es"].startswith("undetermined (could not answer: ")
    ready = load_recorded(READY_HOST, tmp_path / "ready").probe()
    entries = readiness_entries(ready)
    assert (entries["host.ready.sev-es"], entries["host.ready.sev"]) == ("yes", "yes")
    assert entries["host.ready.sev-snp"].startswith("no (first failure: ")  # a 2024 Milan host without SNP
    intel = load_recorded(READY_HOST.parent / "intel-xeon-icelake", tmp_path / "intel").probe()
    assert readiness_entries(intel)["host.ready.sev-es"].startswith("no (first failure: cpu_vendor")
