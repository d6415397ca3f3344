"""Running one selftest program: argv, limit, output, and what the mode makes of it.

The runner is driven with small stand-in programs (shell scripts written
here, run as argv like a built selftest, under coreutils ``timeout`` as the
runner runs every program) so the exit-code mapping, the merged output, the
kill of a hung process group and a signal death are exercised for real in
seconds; ``demanded`` (the mode's view of a verdict)
is pure and judged on the recorded outputs of fixtures/ktap/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pytest_sev.host import selftests as runner
from pytest_sev.sev import ktap

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ktap"


def _program(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_exit_4_is_a_skip_with_the_reason_line(tmp_path):
    prog = _program(tmp_path, "sev_smoke_test",
                    'echo "Random seed: 0x6b8b4567"\n'
                    'echo "1..0 # SKIP - Requirement not met: kvm_cpu_has(X86_FEATURE_SEV)"\nexit 4\n')
    run = runner.run_program(prog, timeout=30)
    assert run.exit_code == 4 and not run.timed_out
    assert run.verdict.outcome == "skip"
    assert run.verdict.reason == "Requirement not met: kvm_cpu_has(X86_FEATURE_SEV)"
    assert run.argv == ("timeout", "--kill-after=5", "30", str(prog)) and run.program == "sev_smoke_test"


def test_stderr_is_merged_in_order_and_an_assertion_fails(tmp_path):
    block = (FIXTURES / "tycho-sev_smoke_test-assertion.out").read_text()
    (tmp_path / "block").write_text(block)
    prog = _program(tmp_path, "sev_smoke_test", 'echo "Random seed: 0x6b8b4567"\ncat block >&2\nexit 254\n')
    run = runner.run_program(prog, timeout=30)
    assert run.output == "Random seed: 0x6b8b4567\n" + block
    assert run.verdict.outcome == "fail" and "lib/x86/sev.c:91: !ret" in run.verdict.reason


def test_the_program_runs_in_its_own_directory(tmp_path):
    prog = _program(tmp_path, "where", "pwd\n")
    assert runner.run_program(prog, timeout=30).output.strip() == str(tmp_path)


def test_a_hang_is_killed_with_its_children_and_named(tmp_path):
    pidfile = tmp_path / "child.pid"
    prog = _program(tmp_path, "sev_migrate_tests",
                    f'echo "Random seed: 0x6b8b4567"\nsleep 300 &\necho $! > {pidfile}\nsleep 300\n')
    start = time.monotonic()
    run = runner.run_program(prog, timeout=1.5)
    assert time.monotonic() - start < 15
    assert run.timed_out and run.verdict.outcome == "timeout"
    assert run.verdict.reason == "timed out after 1.5 s; last line: 'Random seed: 0x6b8b4567'"
    assert run.output == "Random seed: 0x6b8b4567\n"
    child = int(pidfile.read_text())
    for _ in range(50):  # the background child was in the group: it is gone (or a zombie being reaped)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"child {child} of the hung program survived the kill")


def test_a_signal_death_is_a_crash(tmp_path):
    prog = _program(tmp_path, "sev_migrate_tests", 'echo "Random seed: 0x6b8b4567"\nkill -SEGV $$\n')
    run = runner.run_program(prog, timeout=30)
    assert run.exit_code == -11 and run.verdict.outcome == "crash"
    assert run.verdict.reason == "killed by SIGSEGV"


def test_an_exit_status_of_124_before_the_limit_is_the_programs_own(tmp_path):
    prog = _program(tmp_path, "odd", "exit 124\n")
    run = runner.run_program(prog, timeout=30)
    assert not run.timed_out and run.verdict.outcome == "fail" and run.verdict.reason.startswith("exit 124")


def test_exit_0_is_a_pass(tmp_path):
    prog = _program(tmp_path, "sev_smoke_test", 'echo "Random seed: 0x6b8b4567"\n')
    run = runner.run_program(prog, timeout=30)
    assert run.verdict.outcome == "pass" and run.seconds < 30


# -- what the run's mode makes of a verdict (pure) ----------------------------------------

def _verdict(name: str, code: int | None, **kw) -> ktap.Verdict:
    return ktap.judge((FIXTURES / f"{name}.out").read_text(), code, **kw)


def test_a_skip_skips_in_auto_and_fails_under_sev_es():
    v = _verdict("here-sev_smoke_test-skip", 4)
    assert runner.demanded(v, demanding_flag=None) == runner.Judged(
        "skip", "Requirement not met: kvm_cpu_has(X86_FEATURE_SEV)")
    j = runner.demanded(v, demanding_flag="--sev-es")
    assert j.action == "fail"
    assert j.reason == "--sev-es demands it, but it skipped: Requirement not met: kvm_cpu_has(X86_FEATURE_SEV)"


def test_a_pass_that_left_sev_es_out_fails_under_sev_es_and_says_so_in_auto():
    v = _verdict("reconstructed-sev_smoke_test-es-left-out", 0)
    assert v.outcome == "pass"
    strict = runner.demanded(v, demanding_flag="--sev-es")
    assert strict.action == "fail" and "'SEV-ES not supported with SNP'" in strict.reason
    auto = runner.demanded(v, demanding_flag=None)
    assert auto.action == "pass" and "left out" in auto.reason


def test_a_clean_pass_passes_in_every_mode():
    v = _verdict("reconstructed-sev_smoke_test-pass", 0)
    for flag in (None, "--sev-es", "--sev"):
        assert runner.demanded(v, demanding_flag=flag) == runner.Judged("pass", "exit 0")


def test_a_skipped_subtest_fails_a_demanding_mode():
    v = _verdict("huth-vmx_pmu_caps-tap", 0)
    assert runner.demanded(v, demanding_flag="--sev-es").action == "fail"
    assert runner.demanded(v, demanding_flag=None).action == "pass"


@pytest.mark.parametrize("name, code, kw", [
    ("tycho-sev_smoke_test-assertion", 254, {}),
    ("reconstructed-sev_migrate_tests-hang", None, {"timed_out": True, "timeout": 120}),
    ("reconstructed-sev_migrate_tests-killed", -9, {}),
])
def test_failures_timeouts_and_crashes_fail_in_every_mode(name, code, kw):
    v = _verdict(name, code, **kw)
    for flag in (None, "--sev-es"):
        j = runner.demanded(v, demanding_flag=flag)
        assert j.action == "fail" and j.reason.startswith(f"{v.outcome}: ")


def test_sev_does_not_match_inside_sev_es():
    text = "SEV-ES not supported with SNP\n"
    assert runner.unsupported_lines(text, ["SEV"]) == []
    assert runner.unsupported_lines(text, ["SEV-ES"]) == ["SEV-ES not supported with SNP"]
    assert runner.unsupported_lines("SEV not supported\n", ["SEV"]) == ["SEV not supported"]
    assert runner.unsupported_lines("SEV-ES is supported\n", ["SEV-ES"]) == []


def test_environment_bytes_and_empty_output(tmp_path):
    prog = _program(tmp_path, "env", 'printf "%s\\377\\n" "$SELFTEST_X"\n')
    run = runner.run_program(prog, timeout=30, env={"SELFTEST_X": "seen"})
    assert run.output == "seen\ufffd\n" and run.timeout == 30
    quiet = runner.run_program(_program(tmp_path, "quiet", "exit 0\n"), timeout=30)
    assert quiet.output == "" and quiet.verdict.reason == "exit 0"


def test_the_args_follow_the_program(tmp_path):
    prog = _program(tmp_path, "args", 'echo "$@"\n')
    run = runner.run_program(prog, timeout=30, args=("-x", "1"))
    assert run.output == "-x 1\n" and run.argv[-3:] == (str(prog), "-x", "1")


def test_the_left_out_parts_are_named_word_for_word():
    v = _verdict("huth-vmx_pmu_caps-tap", 0)
    assert runner.demanded(v, demanding_flag="--sev-es").reason == (
        "--sev-es demands it, but it passed with parts left out: subtest test 5 skipped: "
        "Requirement not met: host_cap.lbr_format && 0")
    v2 = ktap.judge("1..2\nok 1 # SKIP\nok 2 b\nSEV-ES not supported with SNP\n", 0)
    assert runner.demanded(v2, demanding_flag=None).reason == (
        "exit 0; 1 pass, 1 skip (left out: subtest test 1 skipped; said: 'SEV-ES not supported with SNP')")


def test_a_kind_named_again_after_a_longer_one():
    assert runner.unsupported_lines("sev not supported; sev-es ok\n", ["SEV"]) == ["sev not supported; sev-es ok"]
    assert runner.unsupported_lines("sev-es and sev-snp not supported\n", ["SEV"]) == []


def test_two_left_out_parts_under_a_demanding_mode():
    v = ktap.judge("1..2\nok 1 # SKIP one\nok 2 # SKIP two\n", 0)
    assert runner.demanded(v, demanding_flag="--sev").reason == (
        "--sev demands it, but it passed with parts left out: subtest test 1 skipped: one; "
        "subtest test 2 skipped: two")


def test_a_kind_between_longer_ones():
    assert runner.unsupported_lines("sev-es, sev and sev-snp: not supported\n", ["SEV"]) == [
        "sev-es, sev and sev-snp: not supported"]
    assert runner.unsupported_lines("sevx not supported\n", ["SEV"]) == []
