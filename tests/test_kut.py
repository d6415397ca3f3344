"""kvm-unit-tests output -> verdict (pytest_sev.sev.kut), on the recorded outputs
in fixtures/kut/ (captured here or reconstructed from kvm-unit-tests' source,
each labelled in its index.toml), and one test per rule of the module."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pytest_sev.host.selftests import demanded
from pytest_sev.sev import kut

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "kut"
INDEX = tomllib.loads((FIX / "index.toml").read_text())


def _judged(name: str) -> kut.Verdict:
    meta = INDEX[name]
    text = (FIX / f"{name}.out").read_text()
    err = FIX / f"{name}.err"
    timed_out = "exit" not in meta
    return kut.judge(text, meta.get("exit"), timed_out=timed_out, timeout=meta.get("timeout", 60.0),
                     stderr=err.read_text() if err.is_file() else "")


def test_every_fixture_is_indexed_and_labelled():
    names = {p.stem for p in FIX.glob("*.out")}
    assert names == set(INDEX), f"unindexed: {sorted(names - set(INDEX))}, stale: {sorted(set(INDEX) - names)}"
    for name, meta in INDEX.items():
        assert meta["label"] in ("captured", "reconstructed") and meta["source"], name
        assert meta["label"] == ("captured" if name.startswith("here-") else "reconstructed"), name


@pytest.mark.parametrize("name", sorted(INDEX))
def test_recorded_verdict(name):
    meta = INDEX[name]
    verdict = _judged(name)
    assert verdict.outcome == meta["outcome"], verdict.reason
    assert meta["reason"] in verdict.reason


@pytest.mark.parametrize("name", sorted(INDEX))
def test_recorded_verdict_against_its_launch(name):
    meta = INDEX[name]
    checked = kut.against_launch(_judged(name), meta["launched"])
    assert checked.outcome == meta["against"], checked.reason


def test_captured_control_lines_are_read_through_ovmf_escapes():
    parsed = kut.parse((FIX / "here-amd_sev-plain-tcg.out").read_text())
    assert [(r.status, r.name) for r in parsed.results] == [("skip", "AMD SEV not enabled")]
    assert parsed.totals == {"tests": 1, "skip": 1}
    assert parsed.last_line == "SUMMARY: 1 tests, 1 skipped"


def test_summary_counts_every_kind():
    parsed = kut.parse("SUMMARY: 9 tests, 2 unexpected failures, 1 known failures, 3 expected failures, 4 skipped\n")
    assert parsed.totals == {"tests": 9, "fail": 2, "kfail": 1, "xfail": 3, "skip": 4}
    assert parsed.plan == 9


@pytest.mark.parametrize("word,status", [("PASS", "pass"), ("FAIL", "fail"), ("SKIP", "skip"), ("XFAIL", "xfail"),
                                         ("XPASS", "fail"), ("KFAIL", "xfail")])
def test_each_check_word(word, status):
    result = kut.parse(f"{word}: a check\n").results[0]
    assert (result.status, result.name, result.number) == (status, "a check", 1)
    assert result.reason == ("a check" if word == "SKIP" else "")


def test_a_failed_check_fails_even_with_exit_1():
    v = kut.judge("PASS: a\nFAIL: b\nSUMMARY: 2 tests, 1 unexpected failures\n", 1, timed_out=False, timeout=9)
    assert v.outcome == "fail" and "b" in v.reason and "1 check(s)" in v.reason


def test_an_xpass_is_a_failure():
    v = kut.judge("XPASS: was expected to fail\nSUMMARY: 1 tests, 1 unexpected failures\n", 1,
                  timed_out=False, timeout=9)
    assert v.outcome == "fail" and "was expected to fail" in v.reason


def test_known_and_expected_failures_pass():
    v = kut.judge("PASS: a\nKFAIL: b\nXFAIL: c\nSUMMARY: 3 tests, 1 known failures, 1 expected failures\n", 1,
                  timed_out=False, timeout=9)
    assert (v.outcome, v.reason) == ("pass", "3 of 3 checks passed")


def test_an_abort_line_fails_whatever_the_exit():
    v = kut.judge("PASS: a\nABORT: gave up here\nSUMMARY: 1 tests\n", 1, timed_out=False, timeout=9)
    assert (v.outcome, v.reason) == ("fail", "aborted: gave up here")


def test_exit_127_is_an_abort_even_without_a_line():
    v = kut.judge("PASS: a\n", kut.EXIT_ABORT, timed_out=False, timeout=9)
    assert v.outcome == "fail" and v.reason == "aborted: PASS: a"


def test_exit_3_without_fail_lines_is_still_a_failure():
    v = kut.judge("SUMMARY: 1 tests\n", 3, timed_out=False, timeout=9)
    assert v.outcome == "fail" and "exited with code 1" in v.reason


def test_other_odd_exits_name_the_programs_code():
    v = kut.judge("SUMMARY: 1 tests\n", 9, timed_out=False, timeout=9)
    assert v.outcome == "fail" and "code 4" in v.reason


def test_an_even_exit_is_qemus_failure_with_its_error():
    v = kut.judge("", 2, timed_out=False, timeout=9, stderr="qemu: warning: x\nqemu: cannot do it\n")
    assert v.outcome == "fail" and v.reason == "QEMU failed (exit 2): qemu: cannot do it"


def test_exit_1_with_only_warnings_on_stderr_passes():
    v = kut.judge("PASS: a\nSUMMARY: 1 tests\n", 1, timed_out=False, timeout=9, stderr="qemu: warning: x\n")
    assert v.outcome == "pass"


def test_exit_1_without_a_summary_is_incomplete():
    v = kut.judge("PASS: a\n", 1, timed_out=False, timeout=9)
    assert v.outcome == "fail" and "no SUMMARY" in v.reason


def test_exit_0_is_no_exit_code():
    v = kut.judge("PASS: a\nSUMMARY: 1 tests\n", 0, timed_out=False, timeout=9)
    assert v.outcome == "fail" and "without the program's exit code" in v.reason


def test_exit_77_with_a_fail_line_is_a_failure():
    v = kut.judge("FAIL: a\nSKIP: b\nSUMMARY: 2 tests, 1 unexpected failures, 1 skipped\n", 77,
                  timed_out=False, timeout=9)
    assert v.outcome == "fail"


def test_exit_77_without_skip_lines_says_so():
    v = kut.judge("SUMMARY: 0 tests\n", 77, timed_out=False, timeout=9)
    assert v.outcome == "skip" and "every check skipped" in v.reason


def test_a_pass_counts_its_skipped_checks():
    v = kut.judge("PASS: a\nSKIP: b\nSUMMARY: 2 tests, 1 skipped\n", 1, timed_out=False, timeout=9)
    assert (v.outcome, v.reason) == ("pass", "1 of 2 checks passed, 1 skipped")


def test_a_timeout_names_the_limit_and_the_last_line():
    v = kut.judge("PASS: a\nstill going\n", None, timed_out=True, timeout=7)
    assert v.outcome == "timeout" and "7 s" in v.reason and "still going" in v.reason


def test_a_signal_is_a_crash():
    v = kut.judge("", -9, timed_out=False, timeout=7)
    assert v.outcome == "crash" and "SIGKILL" in v.reason


def test_qemu_error_skips_warnings_and_blank_lines():
    assert kut.qemu_error("\n  \nqemu: Warning: a\nreal error\nsecond\n") == "real error"
    assert kut.qemu_error("qemu-system-x86_64: warning: only\n") == ""


@pytest.mark.parametrize("text,said", [
    ("SEV-ES is enabled.\n", True), ("SEV-ES is not enabled.\n", False),
    ("SKIP: AMD SEV not enabled\n", False), ("PASS: x\n", None), ("SEV-ES is enabled. really\n", None)])
def test_what_the_program_said_of_sev_es(text, said):
    assert kut.sev_es_said(text) is said


def _pass(text: str) -> kut.Verdict:
    return kut.judge(text + "PASS: a\nSUMMARY: 1 tests\n", 1, timed_out=False, timeout=9)


def test_a_control_that_finds_sev_fails():
    checked = kut.against_launch(_pass("SEV-ES is not enabled.\n"), "plain")
    assert checked.outcome == "fail" and "control" in checked.reason


def test_a_control_skipped_for_another_reason_fails():
    v = kut.judge("SKIP: no memory\nSUMMARY: 1 tests, 1 skipped\n", 77, timed_out=False, timeout=9)
    assert kut.against_launch(v, "plain").outcome == "fail"


def test_sev_es_launch_must_say_enabled():
    assert kut.against_launch(_pass("SEV-ES is enabled.\n"), "sev-es").outcome == "pass"
    wrong = kut.against_launch(_pass("SEV-ES is not enabled.\n"), "sev-es")
    assert wrong.outcome == "fail" and "not enabled" in wrong.reason


def test_sev_launch_must_not_say_es_enabled():
    assert kut.against_launch(_pass("SEV-ES is not enabled.\n"), "sev").outcome == "pass"
    wrong = kut.against_launch(_pass("SEV-ES is enabled.\n"), "sev")
    assert wrong.outcome == "fail" and "SEV-ES is enabled" in wrong.reason


def test_a_launch_whose_program_said_nothing_fails():
    checked = kut.against_launch(_pass(""), "sev")
    assert checked.outcome == "fail" and "said nothing" in checked.reason


def test_an_encrypted_launch_that_skipped_stays_a_skip_for_the_mode_table():
    v = kut.judge((FIX / "here-amd_sev-plain-tcg.out").read_text(), 77, timed_out=False, timeout=9)
    checked = kut.against_launch(v, "sev-es")
    assert checked.outcome == "skip"
    assert demanded(checked, demanding_flag="--sev-es").action == "fail"
    assert demanded(checked, demanding_flag=None).action == "skip"


# -- the details the verdict is built from (each pins one decision of sev/kut.py) -----

def test_clean_lines_drops_escapes_and_carriage_returns_keeping_indent():
    assert kut.clean_lines("\x1b[1mA\x1b[0m\r\n  B \nC\rD\n") == ["A", "  B", "C", "D"]


def test_parse_numbers_lines_from_one_and_keeps_reading_after_each_kind():
    parsed = kut.parse("boot\nPASS: a\nABORT: \nUnhandled cpu exception 13 #GP at ip 0\nSUMMARY: 1 tests\n")
    assert parsed.results[0].line == 2 and parsed.version == "kvm-unit-tests"
    assert parsed.bail_out == "(no message)"  # an ABORT without text still aborts; the first one is kept
    assert parsed.totals == {"tests": 1}       # read past the abort and the exception lines
    exc = kut.parse("Unhandled exception 6 #UD at ip 1\nSUMMARY: 2 tests\n")
    assert exc.bail_out == "Unhandled exception 6 #UD at ip 1" and exc.totals == {"tests": 2}
    assert kut.parse("").last_line == "" and kut.parse("\n\n").results == ()


def test_the_verdict_carries_what_it_was_judged_on():
    text = "PASS: a\nSUMMARY: 1 tests\n"
    v = kut.judge(text, 1, timed_out=False, timeout=9)
    assert (v.exit_code, v.output, v.parsed) == (1, text, kut.parse(text))
    assert kut.judge("", 0, timed_out=False, timeout=9).reason.endswith("last line: '(nothing printed)'")
    assert kut.judge("", None, timed_out=False, timeout=9).reason == \
        "QEMU was killed by unknown; last line: '(nothing printed)'"
    both = kut.judge("FAIL: a\nFAIL: b\nSUMMARY: 2 tests, 2 unexpected failures\n", 3, timed_out=False, timeout=9)
    assert both.reason == "2 check(s) failed: a; b"
    assert kut.judge("", 0, timed_out=False, timeout=9).reason.startswith("QEMU ended without the program's exit code")


@pytest.mark.parametrize("kind", ["plain", "sev", "sev-es"])
@pytest.mark.parametrize("outcome", ["timeout", "crash", "fail"])
def test_a_run_that_went_wrong_stays_as_it_was_whatever_the_launch(kind, outcome):
    v = kut.Verdict(outcome, "why", kut.parse(""), None, "")
    assert kut.against_launch(v, kind) == v


def test_the_controls_pass_says_why():
    v = kut.judge((FIX / "here-amd_sev-plain-tcg.out").read_text(), 77, timed_out=False, timeout=9)
    assert kut.against_launch(v, "plain").reason == "control: AMD SEV not enabled, as launched"
