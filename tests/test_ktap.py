"""The TAP/KTAP parser and the exit-code mapping of kernel selftests (pure).

Every recorded output in fixtures/ktap/ (captured or reconstructed, see its
README) must give the verdict its index.toml names; the rules of
pytest_sev.sev.ktap each have a test below that fails when the rule is
flipped.  Nothing here builds or runs a program.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pytest_sev.sev import ktap

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ktap"
INDEX = tomllib.loads((FIXTURES / "index.toml").read_text())


def _judge(name: str) -> ktap.Verdict:
    entry = INDEX[name]
    return ktap.judge((FIXTURES / f"{name}.out").read_text(), entry.get("exit"),
                      timed_out=entry.get("timed_out", False), timeout=entry.get("timeout"))


@pytest.mark.parametrize("name", sorted(INDEX))
def test_recorded_output_gives_its_verdict(name):
    entry = INDEX[name]
    assert entry["label"] in ("captured", "reconstructed") and entry["source"]
    text = (FIXTURES / f"{name}.out").read_text()
    verdict = _judge(name)
    assert (verdict.outcome, verdict.reason) == (entry["outcome"], entry["reason"])
    assert verdict.exit_code == entry.get("exit") and verdict.output == text
    assert verdict.parsed == ktap.parse(text)


def test_every_fixture_file_is_indexed_and_described_in_the_readme():
    files = {p.stem for p in FIXTURES.glob("*.out")}
    assert files == set(INDEX)
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"{name}.out" in readme for name in files)


# -- exit 4 (KSFT_SKIP) -----------------------------------------------------------

def test_exit_4_is_a_skip_with_the_programs_reason_line():
    v = _judge("here-sev_smoke_test-skip")
    assert v.outcome == "skip"
    assert v.reason == "Requirement not met: kvm_cpu_has(X86_FEATURE_SEV)"


def test_the_same_text_with_exit_0_is_a_pass_and_with_exit_1_a_failure():
    text = (FIXTURES / "here-sev_smoke_test-skip.out").read_text()
    assert ktap.judge(text, 0).outcome == "pass"
    failed = ktap.judge(text, 1)
    assert failed.outcome == "fail" and "exit 1 (KSFT_FAIL)" in failed.reason


def test_exit_4_without_a_reason_line_says_so():
    v = ktap.judge("Random seed: 0x6b8b4567\n", 4)
    assert v.outcome == "skip" and v.reason == "exit 4 (KSFT_SKIP) without a reason line"


def test_a_skipped_subtest_gives_the_skip_reason_of_a_program_that_exits_4():
    v = ktap.judge("TAP version 13\n1..2\nok 1 first\nok 2 # SKIP - Requirement not met: x\n", 4)
    assert v.outcome == "skip" and v.reason == "Requirement not met: x"


def test_exit_4_with_a_failed_subtest_is_a_failure():
    v = ktap.judge("1..2\nnot ok 1 first\nok 2 # SKIP later\n", 4)
    assert v.outcome == "fail" and "subtest first failed" in v.reason


def test_exit_4_after_an_assertion_without_print_skip_is_a_failure():
    block = (FIXTURES / "tycho-sev_smoke_test-assertion.out").read_text()
    v = ktap.judge(block, 4)
    assert v.outcome == "fail" and "lib/x86/sev.c:91" in v.reason


def test_exit_4_after_an_assertion_with_print_skip_is_the_eacces_skip():
    v = _judge("reconstructed-sev_migrate_tests-eacces")
    assert v.outcome == "skip" and v.reason.startswith("Access denied - Exiting")
    assert "lib/kvm_util.c:34" in v.reason


# -- exit 0 ------------------------------------------------------------------------

def test_exit_0_with_a_failed_subtest_is_a_failure():
    v = ktap.judge("TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n", 0)
    assert v.outcome == "fail" and "subtest b failed" in v.reason


def test_exit_0_with_an_assertion_block_is_a_failure():
    block = (FIXTURES / "kvmvmi-kvmi_test-assertion.out").read_text()
    v = ktap.judge(block, 0)
    assert v.outcome == "fail" and "x86_64/kvmi_test.c:829" in v.reason


def test_exit_0_short_of_its_plan_is_a_failure():
    v = ktap.judge("1..3\nok 1 a\nok 2 b\n", 0)
    assert v.outcome == "fail" and "plan 1..3 but 2 result(s)" in v.reason
    assert ktap.judge("1..2\nok 1 a\nok 2 b\n", 0).outcome == "pass"


def test_exit_0_after_bail_out_is_a_failure():
    v = ktap.judge("1..2\nok 1 a\nBail out! no /dev/kvm\n", 0)
    assert v.outcome == "fail" and "bailed out: no /dev/kvm" in v.reason


def test_exit_0_whose_totals_count_a_failure_is_a_failure():
    v = ktap.judge("# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:0 error:0\n", 0)
    assert v.outcome == "fail" and "totals: fail 1" in v.reason


def test_a_todo_failure_does_not_fail_the_program():
    v = ktap.judge("1..1\nnot ok 1 known # TODO fixed in next\n", 0)
    assert v.outcome == "pass"
    assert v.parsed.results[0].status == "todo"


# -- other exits, signals, hangs -----------------------------------------------------

def test_exit_254_quotes_file_line_and_the_message():
    v = _judge("tycho-sev_smoke_test-assertion")
    assert v.outcome == "fail"
    assert v.reason.startswith("exit 254 (TEST_ASSERT); assertion failed at lib/x86/sev.c:91: !ret: ")
    a = v.parsed.assertion
    assert a is not None and a.where == "lib/x86/sev.c:91" and a.expression == "!ret"
    assert a.message == "KVM_SEV_LAUNCH_START failed, rc: -1 errno: 5 (Input/output error)"
    assert a.errno_line.startswith("pid=3678 tid=3678 errno=5") and len(a.stack) == 8


@pytest.mark.parametrize("code", [2, 3, 5, 255])
def test_any_other_exit_status_is_a_failure_naming_it(code):
    v = ktap.judge("something\n", code)
    assert v.outcome == "fail" and f"exit {code}" in v.reason and "'something'" in v.reason


def test_a_signal_is_a_crash_naming_it():
    v = ktap.judge("Random seed: 0x6b8b4567\n", -11)
    assert v.outcome == "crash" and v.reason == "killed by SIGSEGV"
    assert ktap.judge("", -9).reason == "killed by SIGKILL"


def test_a_crash_after_an_assertion_quotes_it():
    block = (FIXTURES / "tycho-sev_smoke_test-assertion.out").read_text()
    v = ktap.judge(block, -6)
    assert v.outcome == "crash" and "SIGABRT" in v.reason and "lib/x86/sev.c:91" in v.reason


def test_a_hang_is_a_named_timeout_with_the_last_line():
    v = _judge("reconstructed-sev_migrate_tests-hang")
    assert v.outcome == "timeout" and v.reason == "timed out after 120 s; last line: 'Random seed: 0x6b8b4567'"
    assert ktap.judge("", None, timed_out=True, timeout=5).reason == "timed out after 5 s; it printed nothing"


def test_timeout_wins_over_the_exit_code_of_the_killed_program():
    assert ktap.judge("1..0 # SKIP x\n", -9, timed_out=True, timeout=1).outcome == "timeout"


def test_a_finished_program_needs_its_exit_status():
    with pytest.raises(ValueError):
        ktap.judge("", None)


# -- the TAP/KTAP lines themselves -----------------------------------------------------

def test_harness_output_gives_one_result_per_subtest_with_duplicates_named():
    v = _judge("huth-vmx_pmu_caps-tap")
    p = v.parsed
    assert p.version == "TAP 13" and p.plan == 5
    assert [r.number for r in p.results] == [1, 2, 3, 4, 5, 5]
    assert p.results[0].name == "vmx_pmu_caps.guest_wrmsr_perf_capabilities" and p.results[0].status == "pass"
    skip = p.results[4]
    assert skip.status == "skip" and skip.reason == "Requirement not met: host_cap.lbr_format && 0"
    assert skip.title == "test 5"
    assert p.problems == ("test 5 reported twice (lines 17 and 19)",)
    assert "test 5 reported twice" in v.reason
    assert p.totals == {"pass": 5, "fail": 0, "xfail": 0, "xpass": 0, "skip": 0, "error": 0}


def test_a_failed_harness_subtest_carries_the_harness_location():
    p = _judge("gordeev-set_syscall_info-fail").parsed
    (r,) = p.results
    assert r.status == "fail" and r.name == "global.set_syscall_info"
    assert r.detail == "set_syscall_info.c:87: Expected exp_entry->nr (-1) == info->entry.nr (65535)"


@pytest.mark.parametrize("line, status, reason", [
    ("ok 3 name # SKIP not here", "skip", "not here"),
    ("ok 3 - name # skip: lower case", "skip", "lower case"),
    ("not ok 3 name # TODO later", "todo", "later"),
    ("ok 3 name # XFAIL expected", "xfail", "expected"),
    ("not ok 3 name # XFAIL expected", "fail", "expected"),
    ("not ok 3 # error setup", "fail", "setup"),
    ("not ok 3 selftests: kvm: sev_smoke_test # exit=254", "fail", "exit=254"),
    ("ok 3 name", "pass", ""),
])
def test_directives(line, status, reason):
    (r,) = ktap.parse(line + "\n").results
    assert (r.number, r.status, r.reason) == (3, status, reason)


def test_words_that_begin_with_ok_are_not_results():
    assert ktap.parse("okay, done\nok\n").results == (ktap.Result(None, "", "pass", "", 2),)


def test_ktap_version_and_nested_lines():
    text = "KTAP version 1\n1..1\n    KTAP version 1\n    1..1\n    not ok 1 inner\nok 1 outer\n"
    p = ktap.parse(text)
    assert p.version == "KTAP 1" and p.plan == 1
    assert [(r.name, r.status) for r in p.results] == [("outer", "pass")]  # nested lines are the child's own


def test_the_first_assertion_is_the_cause():
    block = (FIXTURES / "tycho-sev_smoke_test-assertion.out").read_text()
    other = (FIXTURES / "kvmvmi-kvmi_test-assertion.out").read_text()
    a = ktap.parse(block + other).assertion
    assert a is not None and a.where == "lib/x86/sev.c:91"


def test_an_unreadable_assertion_location_is_kept_as_text():
    a = ktap.parse(f"{ktap.ASSERT_HEADER}\n  something odd\n").assertion
    assert a is not None and a.file == "?" and a.expression == "something odd"


# -- the corners (each kills a mutant of a rule above) ---------------------------------------

def test_skipped_lists_only_the_skips():
    p = _judge("huth-vmx_pmu_caps-tap").parsed
    assert [r.number for r in p.skipped()] == [5] and p.failed() == []


def test_the_skip_reason_prefers_the_empty_plans_then_the_last_skipped_subtest():
    assert ktap.parse("1..3 # three planned\nok 1 # SKIP first\nok 2 x # fine\n").skip_reason() == "first"
    assert ktap.parse("1..0\nok 1 # SKIP only\n").skip_reason() == "only"
    assert ktap.parse("1..0 # nothing to do\n").skip_reason() == "nothing to do"
    assert ktap.parse("1..0 # TODO later\n").skip_reason() == "TODO later"
    assert ktap.parse("ok 1 # SKIP\nprobe, skipping test\n").skip_reason() == "probe"


def test_a_result_without_a_number_and_its_line():
    (r,) = ktap.parse("# hello\nok - first\n").results
    assert (r.number, r.name, r.line, r.detail) == (None, "first", 2, "")


def test_error_directive_fails_even_an_ok_line():
    (r,) = ktap.parse("ok 3 name # error x\n").results
    assert (r.status, r.reason) == ("fail", "x")


def test_the_first_plan_counts():
    p = ktap.parse("1..2\nok 1 a\n1..5\nok 2 b\n")
    assert p.plan == 2 and ktap.judge("1..2\nok 1 a\n1..5\nok 2 b\n", 0).outcome == "pass"


def test_a_plan_of_one_with_no_result_fails_and_an_empty_plan_passes():
    assert ktap.judge("1..1\n", 0).reason == "exit 0 but plan 1..1 but 0 result(s) reported"
    assert ktap.judge("1..0\n", 0).reason == "exit 0"


def test_the_exact_failure_reasons():
    assert ktap.judge("TAP version 13\n1..2\nok 1 a\nnot ok 2 b\n", 0).reason == "exit 0 but subtest b failed"
    assert ktap.judge("1..2\nnot ok 1 first\nok 2 # SKIP later\n", 4).reason == \
        "exit 4 (KSFT_SKIP); subtest first failed"
    assert ktap.judge("# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:0 error:1\n", 1).reason == \
        "exit 1 (KSFT_FAIL); totals: fail 0, error 1"
    assert ktap.judge("not ok 1 a\nlast words\n", 7).reason == "exit 7; subtest a failed"
    assert ktap.judge("", 7).reason == "exit 7"
    assert ktap.judge("1..2\nok 1 a\nok 2 b\n", 0).reason == "exit 0; 2 pass"


def test_a_timeout_without_a_limit_still_names_itself():
    assert ktap.judge("x\n", None, timed_out=True).reason == "timed out; last line: 'x'"
    with pytest.raises(ValueError, match="needs the exit status"):
        ktap.judge("x\n", None)


def test_an_unknown_signal_number():
    assert ktap.signal_name(-200) == "signal 200"


def test_the_assertion_blocks_edges():
    assert ktap.parse(f"{ktap.ASSERT_HEADER}\n").assertion is None
    a = ktap.parse(f"{ktap.ASSERT_HEADER}\n  odd\n").assertion
    assert a is not None and (a.file, a.line) == ("?", 0)
    a = ktap.parse(f"{ktap.ASSERT_HEADER}\n  f.c:1: x\n  a message\n\n  not in it\nok 1\n").assertion
    assert a is not None and (a.message, a.errno_line, a.stack) == ("a message", "", ())
    a = ktap.parse(f"{ktap.ASSERT_HEADER}\n  f.c:1: x\n  m\nflush left\n  not in it\n").assertion
    assert a is not None and a.message == "m"
    a = _judge("tycho-sev_smoke_test-assertion").parsed.assertion
    assert a is not None and a.stack[0] == "1\t0x0000000000417000: sev_vm_launch at sev.c:91 (discriminator 4)"
    assert a.line == 91


def test_nothing_printed_has_no_last_line():
    assert ktap.parse("").last_line == "" and ktap.parse("\n  \n").last_line == ""


def test_nothing_parsed_is_the_empty_reading():
    assert ktap.parse("") == ktap.Parsed()


def test_a_dash_before_a_reason_is_dropped_and_only_it():
    assert ktap.judge("1..0 # SKIP -X86 only\n", 4).reason == "X86 only"
    (r,) = ktap.parse("ok 1 # SKIP -Xen\n").results
    assert r.reason == "Xen"


def test_tab_indented_lines_belong_to_the_block_or_the_child():
    a = ktap.parse(f"{ktap.ASSERT_HEADER}\n  f.c:1: x\n\tfirst\n  second\n").assertion
    assert a is not None and a.message == "first second"
    assert ktap.parse("\tnot ok 1 inner\nok 1 outer\n").failed() == []


def test_the_harness_location_belongs_to_the_next_result_only():
    p = ktap.parse("# f.c:1:t:msg\nnot ok 1 a\nnot ok 2 b\n")
    assert [r.detail for r in p.results] == ["f.c:1: msg", ""]


def test_a_bail_out_without_words():
    assert ktap.judge("Bail out!\n", 0).reason == "exit 0 but bailed out: (no reason given)"


def test_the_verdict_keeps_exit_output_and_reading_on_every_path():
    for text, code, kw in (("1..2\nok 1 a\n", 0, {}), ("x\n", -9, {"timed_out": True, "timeout": 3}),
                           ("not ok 1 a\n", 0, {})):
        v = ktap.judge(text, code, **kw)
        assert (v.exit_code, v.output, v.parsed) == (code, text, ktap.parse(text))


def test_a_crash_reason_joins_its_parts():
    block = (FIXTURES / "tycho-sev_smoke_test-assertion.out").read_text()
    assert ktap.judge(block + "not ok 1 a\n", -6).reason == (
        "killed by SIGABRT; assertion failed at lib/x86/sev.c:91: !ret: KVM_SEV_LAUNCH_START failed, "
        "rc: -1 errno: 5 (Input/output error); subtest a failed")
    assert ktap.judge("1..3\nnot ok 1 a\nBail out! b\n", 0).reason == \
        "exit 0 but subtest a failed; bailed out: b; plan 1..3 but 1 result(s) reported"


def test_two_problems_are_both_named():
    assert ktap.judge("1..2\nok 1 a\nok 1 b\nok 2 c\nok 2 d\n", 0).reason == (
        "exit 0; 4 pass; test 1 reported twice (lines 2 and 3); test 2 reported twice (lines 4 and 5)")


def test_the_finished_program_message():
    with pytest.raises(ValueError, match=r"^judge\(\) needs the exit status of a program that finished$"):
        ktap.judge("", None)
