"""Every decision of the verdict core (pytest_sev/sev/evidence.py), each tested so that
flipping it fails a test: the dmesg judgement, the QMP failure classification and
its order, the cross-check's counts and the witnesses it requires.

Inputs: the plain 6.1 guest's dmesg captured on the development machine
(fixtures/recorded/guest/plain-6.1-tcg-serial.log); QEMU's error texts as listed in
docs/sev-reference.md section 5/6; rows are built by hand, since the cross-check is pure.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_sev.sev import evidence
from pytest_sev.sev.evidence import (
    HOST_SIDE,
    KERNEL_LOG,
    MEASUREMENT,
    MEMORY,
    MSR,
    NO,
    QUERY_SEV,
    UNKNOWN,
    YES,
    Row,
    classify_qmp_failure,
    cross_check,
    judge_dmesg,
)

REC = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "guest"


def _captured_dmesg() -> str:
    """The plain guest's own dmesg replay (between the '=== dmesg' lines of its serial log)."""
    text = (REC / "plain-6.1-tcg-serial.log").read_text().replace("\r", "")
    lines = [ln for ln in text.splitlines() if "] " in ln and ln.lstrip().startswith("[")]
    assert len(lines) > 50 and any("Linux version" in ln for ln in lines)
    return "\n".join(lines) + "\n"


# -- answer_of / LogRead -------------------------------------------------------------------

@pytest.mark.parametrize("value,answer", [(True, YES), (False, NO), (None, UNKNOWN)])
def test_answer_of(value, answer):
    assert evidence.answer_of(value) == answer


def test_answer_words():
    assert (YES, NO, UNKNOWN) == ("yes", "no", "unknown")


def test_log_read_ok_only_with_text():
    assert evidence.LogRead("x").ok and evidence.LogRead("").ok
    assert not evidence.LogRead(None, "why").ok


# -- judge_dmesg ---------------------------------------------------------------------------

def test_captured_dmesg_is_a_log():
    text = _captured_dmesg()
    read = judge_dmesg(text, 0)
    assert read.ok and read.text == text and read.reason == ""


def test_records_without_the_boot_line_are_still_a_log():
    """A ring buffer that lost 'Linux version' still holds kernel records: a log (the
    witness then decides whether the absence of an SEV line proves anything)."""
    tail = "\n".join(_captured_dmesg().splitlines()[-40:])
    assert "Linux version" not in tail
    assert judge_dmesg(tail, 0).text == tail


def test_boot_line_without_timestamps_is_a_log():
    """``dmesg -t`` (no timestamps) still shows the kernel's own boot line."""
    text = "Linux version 6.1.0-13-amd64 (debian-kernel@lists.debian.org)\nCommand line: console=ttyS0\n"
    assert judge_dmesg(text, 0).text == text


@pytest.mark.parametrize("text", [
    "<6>[    0.000000] Linux versio\n",           # dmesg -r: raw level prefix
    "  [ 1234.567890] virtio_blk virtio1: [vda] 4194304 512-byte logical blocks\n",
    "some shell noise first\n[    0.100000] x86/fpu: Supporting XSAVE\n",  # record not on the first line
    "[12.5] tiny timestamp\n",
])
def test_kernel_record_forms(text):
    assert judge_dmesg(text, 0).ok, text


@pytest.mark.parametrize("text", [
    "sh: dmesg: applet not found but exit 0\n",
    "[ 1.5 ] no digits right after the bracket\n",
    "[    0.000000 ] closing bracket after a space\n",
    "[0] no fraction\n",
    "text [    0.000000] record not at the start of its line\n",
    "linux version (lower case is not the kernel's line)\n",
])
def test_output_without_a_kernel_record_is_unknown(text):
    read = judge_dmesg(text, 0)
    assert not read.ok and read.text is None
    assert read.reason.startswith("dmesg output holds no kernel record: ")


def test_no_record_reason_quotes_the_output():
    read = judge_dmesg("  hello there  \n", 0)
    assert read.reason == "dmesg output holds no kernel record: 'hello there'"
    long = judge_dmesg("z" * 300, 0)
    assert long.reason == f"dmesg output holds no kernel record: {'z' * 160!r}"


@pytest.mark.parametrize("output", ["", "   \n\t\n", None])
def test_empty_output_is_unknown(output):
    read = judge_dmesg(output, 0)
    assert not read.ok and read.reason == "dmesg printed nothing (empty ring buffer or restricted)"


@pytest.mark.parametrize("output", [_captured_dmesg, lambda: "", lambda: None])
def test_no_status_is_unknown_whatever_the_output(output):
    read = judge_dmesg(output(), None)
    assert not read.ok and read.reason == "dmesg did not return (timeout or lost shell)"


@pytest.mark.parametrize("status", [1, 2, -1, 127])
def test_failed_status_is_unknown_even_with_a_full_log(status):
    """A non-zero exit never yields a log, even when the text looks like one."""
    read = judge_dmesg(_captured_dmesg(), status)
    assert not read.ok and read.reason.startswith("dmesg failed (")


@pytest.mark.parametrize("output,why", [
    ("dmesg: klogctl: Operation not permitted\n", "permission denied"),
    ("dmesg: read kernel buffer failed: Permission denied\n", "permission denied"),
    ("DMESG: KLOGCTL failed\n", "permission denied"),
    ("sh: dmesg: not found\n", "dmesg not found"),
    ("sh: 1: dmesg: NOT FOUND\n", "dmesg not found"),
    ("/bin/sh: /bin/dmesg: No such file or directory\n", "dmesg not found"),
    ("dmesg: read kernel buffer failed: Input/output error\n", "exit status 3"),
])
def test_failed_status_names_why(output, why):
    read = judge_dmesg(output, 3)
    assert read.reason == f"dmesg failed ({why}): {output.strip()!r}"


def test_denied_wins_over_not_found():
    read = judge_dmesg("dmesg: klogctl: Operation not permitted (file not found)\n", 1)
    assert "(permission denied)" in read.reason


def test_failed_status_quotes_the_first_non_blank_line_cut_to_160():
    long = "x" * 200
    read = judge_dmesg(f"\n  \n  {long}  \nsecond line\n", 1)
    assert read.reason == f"dmesg failed (exit status 1): {'x' * 160!r}"
    assert judge_dmesg(None, 1).reason == "dmesg failed (exit status 1): ''"


# -- classify_qmp_failure --------------------------------------------------------------------

class FakeExecuteError(Exception):
    """Shaped like qemu.qmp's ExecuteError."""

    def __init__(self, cls, desc, text="ExecuteError"):
        super().__init__(text)
        self.error_class = cls
        self.error = SimpleNamespace(desc=desc)


@pytest.mark.parametrize("desc", [
    "SEV launch measurement is not available",
    "SEV is not enabled",
    "SEV feature is not available",
    "SEV is not available in this QEMU",
])
def test_each_of_qemus_own_words_is_a_no(desc):
    f = classify_qmp_failure(FakeExecuteError("GenericError", desc))
    assert f.answer == NO and f.reason == f"QEMU says SEV is not active: {desc}"
    assert classify_qmp_failure({"error": {"class": "GenericError", "desc": desc}}).answer == NO


@pytest.mark.parametrize("desc", ["SEV is enabled", "sev is not enabled", "launch measurement is not available",
                                  "SEV feature is available", "SEV is not available"])
def test_near_words_are_unknown(desc):
    f = classify_qmp_failure(FakeExecuteError("GenericError", desc))
    assert f.answer == UNKNOWN and f.reason == f"unclassified QMP error (GenericError: {desc})"


def test_command_not_found_is_unknown_even_with_sev_words():
    f = classify_qmp_failure(FakeExecuteError("CommandNotFound", "SEV is not enabled"))
    assert f.answer == UNKNOWN
    assert f.reason == "QEMU does not know the command (CommandNotFound: SEV is not enabled)"


def test_wire_dict_error_is_read():
    f = classify_qmp_failure({"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}})
    assert f.answer == UNKNOWN and f.reason.startswith("QEMU does not know the command")
    other = classify_qmp_failure({"error": {"class": "GenericError", "desc": "boom"}})
    assert other.reason == "unclassified QMP error (GenericError: boom)"


def test_dict_without_an_error_dict_is_unclassified():
    f = classify_qmp_failure({"error": "SEV is not enabled"})
    assert f.answer == NO  # its str() holds QEMU's words
    g = classify_qmp_failure({"return": {}})
    assert g.answer == UNKNOWN and g.reason == "unclassified QMP error (dict: {'return': {}})"


def test_description_is_preferred_to_str():
    f = classify_qmp_failure(FakeExecuteError("GenericError", "SEV is not enabled", text="unrelated"))
    assert f.answer == NO
    g = classify_qmp_failure(FakeExecuteError("GenericError", None, text="SEV is not enabled"))
    assert g.answer == NO  # no desc: the exception's text


def test_error_without_desc_attribute_uses_str():
    exc = Exception("SEV feature is not available")
    exc.error = SimpleNamespace()  # an error object without desc
    assert classify_qmp_failure(exc).answer == NO


@pytest.mark.parametrize("exc", [
    TimeoutError("SEV is not enabled"),
    Exception("QMP command timed out: SEV is not enabled"),
    Exception("Timed Out waiting: SEV is not enabled"),
], ids=["TimeoutError", "timed-out-text", "Timed-Out-text"])
def test_timeout_is_unknown_before_sev_words(exc):
    f = classify_qmp_failure(exc)
    assert f.answer == UNKNOWN and f.reason.startswith("QMP timed out (")


def test_timeout_in_the_class_name_is_a_timeout():
    class QmpTimeoutError(Exception):
        pass
    f = classify_qmp_failure(QmpTimeoutError("SEV is not enabled"))
    assert f.answer == UNKNOWN and f.reason == "QMP timed out (QmpTimeoutError: SEV is not enabled)"


def test_timeout_comes_before_a_lost_socket():
    f = classify_qmp_failure(TimeoutError("socket"))
    assert f.reason == "QMP timed out (TimeoutError: socket)"


@pytest.mark.parametrize("exc", [
    ConnectionResetError(104, "Connection reset by peer"),
    EOFError(""),
    BrokenPipeError(32, "Broken pipe"),
    Exception("monitor disconnected"),
    Exception("CONNECTION closed"),
    Exception("socket closed"),
    Exception("Broken Pipe"),
    Exception("unexpected eof"),
])
def test_lost_socket_is_unknown(exc):
    f = classify_qmp_failure(exc)
    assert f.answer == UNKNOWN and f.reason.startswith("QMP socket lost ("), f.reason


@pytest.mark.parametrize("base", [ConnectionError, EOFError, BrokenPipeError])
def test_lost_socket_by_type_alone_even_with_sev_words(base):
    """A subclass whose name and text say nothing of sockets is still a lost socket,
    and comes before QEMU's words: the reply was never read whole."""
    dropped = type("Dropped", (base,), {})
    f = classify_qmp_failure(dropped("SEV is not enabled"))
    assert f.answer == UNKNOWN and f.reason == "QMP socket lost (Dropped: SEV is not enabled)"


def test_unclassified_error_names_class_or_type():
    assert classify_qmp_failure(FakeExecuteError("GenericError", "odd")).reason == \
        "unclassified QMP error (GenericError: odd)"
    assert classify_qmp_failure(ValueError("odd")).reason == "unclassified QMP error (ValueError: odd)"
    assert classify_qmp_failure("odd").reason == "unclassified QMP error (str: odd)"


# -- cross_check -----------------------------------------------------------------------------

def _rows(kind_answer: tuple[bool | None, bool | None], names) -> list[Row]:
    enc, es = kind_answer
    return [Row(n, enc, es, f"evidence of {n}") for n in names]


SEV_ES = (True, True)
SEV = (True, False)
PLAIN = (False, False)
ALL = [KERNEL_LOG, MSR, QUERY_SEV, MEMORY, MEASUREMENT]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of plain, sev, sev-es, sev-snp, not 'snp'"):
        cross_check("snp", [])


def test_expected_table():
    assert evidence.EXPECTED == {"plain": (False, False), "sev": (True, False), "sev-es": (True, True),
                                 "sev-snp": (True, True)}
    assert evidence.EXPECTED_SNP == {"plain": False, "sev": False, "sev-es": False, "sev-snp": True}
    assert (evidence.MIN_DECISIVE_SEV, evidence.MIN_DECISIVE_PLAIN) == (4, 3)
    assert {QUERY_SEV, MEMORY, MEASUREMENT} == HOST_SIDE


@pytest.mark.parametrize("kind,answer", [("plain", PLAIN), ("sev", SEV), ("sev-es", SEV_ES)])
def test_all_five_agreeing_pass(kind, answer):
    check = cross_check(kind, _rows(answer, ALL))
    assert check.ok and check.problems == () and check.disagree == () and check.unknown == ()
    assert check.decisive == tuple(sorted(ALL)) and check.kind == kind


@pytest.mark.parametrize("kind,answer", [("sev", SEV), ("sev-es", SEV_ES)])
def test_sev_needs_four_decisive(kind, answer):
    four = _rows(answer, [KERNEL_LOG, MSR, QUERY_SEV, MEMORY]) + _rows((None, None), [MEASUREMENT])
    assert cross_check(kind, four).ok
    three = _rows(answer, [KERNEL_LOG, MSR, QUERY_SEV]) + _rows((None, None), [MEMORY, MEASUREMENT])
    check = cross_check(kind, three)
    assert not check.ok and check.problems == (
        f"only 3 decisive witness(es), 4 needed for {kind}; could not answer: "
        f"{MEMORY} (evidence of {MEMORY}), {MEASUREMENT} (evidence of {MEASUREMENT})",)
    assert check.unknown == tuple(sorted([MEASUREMENT, MEMORY]))


def test_plain_needs_three_decisive():
    three = _rows(PLAIN, [KERNEL_LOG, QUERY_SEV, MEMORY]) + _rows((None, None), [MSR, MEASUREMENT])
    assert cross_check("plain", three).ok
    two = _rows(PLAIN, [KERNEL_LOG, QUERY_SEV]) + _rows((None, None), [MSR, MEMORY, MEASUREMENT])
    check = cross_check("plain", two)
    assert not check.ok and check.problems[0].startswith("only 2 decisive witness(es), 3 needed for plain")


def test_plain_needs_neither_the_msr_nor_a_host_side_witness():
    check = cross_check("plain", _rows(PLAIN, ["a", "b", "c"]))
    assert check.ok, check.problems


def test_too_few_with_none_unknown_says_none():
    check = cross_check("plain", _rows(PLAIN, [KERNEL_LOG]))
    assert check.problems == ("only 1 decisive witness(es), 3 needed for plain; could not answer: none",)


@pytest.mark.parametrize("kind,answer", [("sev", SEV), ("sev-es", SEV_ES)])
def test_sev_requires_the_msr(kind, answer):
    rows = _rows(answer, [KERNEL_LOG, QUERY_SEV, MEMORY, MEASUREMENT]) + _rows((None, None), [MSR])
    check = cross_check(kind, rows)
    assert not check.ok and check.problems == (
        f"the SEV_STATUS MSR on every vCPU is required for {kind} and did not answer",)


@pytest.mark.parametrize("host", sorted(HOST_SIDE))
@pytest.mark.parametrize("kind,answer", [("sev", SEV), ("sev-es", SEV_ES)])
def test_any_one_host_side_witness_suffices(kind, answer, host):
    rows = _rows(answer, [KERNEL_LOG, MSR, "extra", host])
    assert cross_check(kind, rows).ok


@pytest.mark.parametrize("kind,answer", [("sev", SEV), ("sev-es", SEV_ES)])
def test_sev_requires_a_host_side_witness(kind, answer):
    rows = _rows(answer, [KERNEL_LOG, MSR, "extra", "another"]) + _rows((None, None), sorted(HOST_SIDE))
    check = cross_check(kind, rows)
    assert not check.ok and check.problems == (
        f"no host-side witness ({', '.join(sorted(HOST_SIDE))}) answered for {kind}",)


def test_sev_without_msr_or_host_side_lists_both():
    check = cross_check("sev-es", _rows(SEV_ES, ["a", "b", "c", "d"]))
    assert len(check.problems) == 2 and not check.ok


@pytest.mark.parametrize("kind,answer,wrong", [
    ("plain", PLAIN, (True, None)), ("sev", SEV, (False, None)), ("sev-es", SEV_ES, (False, False)),
    ("sev", SEV, (True, True)), ("sev-es", SEV_ES, (True, False)), ("plain", PLAIN, (False, True)),
])
def test_one_disagreeing_witness_fails(kind, answer, wrong):
    rows = _rows(answer, [KERNEL_LOG, MSR, QUERY_SEV, MEMORY]) + _rows(wrong, [MEASUREMENT])
    check = cross_check(kind, rows)
    assert not check.ok and check.disagree == (MEASUREMENT,)
    assert check.problems == (f"witnesses disagree with the requested kind: {MEASUREMENT}",)
    assert MEASUREMENT in check.decisive


@pytest.mark.parametrize("kind,answer", [("sev", SEV), ("sev-es", SEV_ES), ("plain", PLAIN)])
def test_witness_without_an_es_opinion_agrees_on_encryption(kind, answer):
    rows = _rows(answer, [KERNEL_LOG, MSR, QUERY_SEV]) + _rows((answer[0], None), [MEMORY, MEASUREMENT])
    check = cross_check(kind, rows)
    assert check.ok and check.disagree == ()


def test_unknown_rows_never_disagree_and_never_count():
    rows = _rows(SEV_ES, [KERNEL_LOG, MSR, QUERY_SEV, MEMORY]) + [Row(MEASUREMENT, None, False, "unknown: x")]
    check = cross_check("sev-es", rows)
    assert check.ok and check.unknown == (MEASUREMENT,) and MEASUREMENT not in check.decisive


def test_table_lists_every_row_sorted_with_its_verdict():
    rows = [Row(QUERY_SEV, None, None, "unknown: lost"), Row(MSR, True, True, "all vCPUs"),
            Row(KERNEL_LOG, False, False, "no SEV line")]
    check = cross_check("sev-es", rows)
    lines = check.table.splitlines()
    assert lines[0] == "sev-es: expected encrypted=True es=True snp=False"
    assert [ln.split("  ")[0] for ln in lines[1:]] == sorted([KERNEL_LOG, MSR, QUERY_SEV])  # by name
    by_name = {ln.split("  ")[0]: ln for ln in lines[1:]}
    assert "DISAGREES" in by_name[KERNEL_LOG] and " no " in by_name[KERNEL_LOG]
    assert " ok " in by_name[MSR] and " yes " in by_name[MSR] and "es=yes" in by_name[MSR]
    assert "UNKNOWN" in by_name[QUERY_SEV] and "es=unknown" in by_name[QUERY_SEV]
    assert by_name[MSR].endswith("all vCPUs")
    assert check.decisive == tuple(sorted([KERNEL_LOG, MSR])) and check.unknown == (QUERY_SEV,)
    assert check.message() == "; ".join(check.problems) + "\n" + check.table


def test_table_line_layout_and_cut():
    long = "e" * 200
    check = cross_check("sev-es", [Row(KERNEL_LOG, False, None, long), Row(MSR, True, True, "x"),
                                   Row(QUERY_SEV, None, None, long)])
    by_name = {ln.split("  ")[0]: ln for ln in check.table.splitlines()[1:]}
    unk = f"snp={'unknown':<7}"
    assert by_name[KERNEL_LOG] == f"{KERNEL_LOG:<22} {'no':<7} es={'unknown':<7} {unk} {'DISAGREES':<9} {'e' * 140}"
    assert by_name[MSR] == f"{MSR:<22} {'yes':<7} es={'yes':<7} {unk} {'ok':<9} x"
    assert by_name[QUERY_SEV] == f"{QUERY_SEV:<22} {'unknown':<7} es={'unknown':<7} {unk} {'UNKNOWN':<9} {'e' * 140}"
    assert f"could not answer: {QUERY_SEV} ({'e' * 120})" in check.message()


def test_every_disagreeing_witness_is_named():
    rows = _rows(SEV_ES, [KERNEL_LOG, MSR, QUERY_SEV]) + _rows(SEV, [MEMORY, MEASUREMENT])
    check = cross_check("sev-es", rows)
    assert check.disagree == tuple(sorted([MEMORY, MEASUREMENT]))
    assert check.problems[0] == "witnesses disagree with the requested kind: " + ", ".join(sorted([MEMORY, MEASUREMENT]))


def test_rows_may_be_a_tuple():
    assert cross_check("plain", tuple(_rows(PLAIN, ALL))).ok
