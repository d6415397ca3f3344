"""kvm-unit-tests output and exit status, and their verdict. Pure.

Why a reader of its own: a kvm-unit-tests program (``x86/amd_sev.efi``)
prints no TAP when it runs on its own (``run_tests.sh -t`` makes TAP from
the runner's side, one line per program).  It prints one line per check
(lib/report.c: ``PASS: ``, ``FAIL: ``, ``SKIP: ``, ``XFAIL: ``, ``XPASS: ``,
``KFAIL: ``, then the message), ``ABORT: `` before it gives up, and a last
``SUMMARY: N tests[, F unexpected failures][, K known failures][, X expected
failures][, S skipped]`` line.  It ends QEMU through the isa-debug-exit
device, so QEMU's exit status is ``(code << 1) | 1`` (lib/x86/io.c ``exit``):

- 1: the program returned 0 (every check passed or was a known failure);
- 3: it returned 1 (an unexpected failure);
- 77: every check was skipped (report_summary returns ``77 >> 1``);
- 127: ``abort()`` (lib/abort.c: exit status 63, e.g. after an unhandled
  exception);
- 0: QEMU ended some other way: no exit code from the program (with
  ``-no-reboot`` a triple fault, the usual death of a broken SEV-ES guest,
  ends QEMU with 0); scripts/vmm.bash treats it as a failure too;
- any other odd status: the program's own exit code ``status >> 1``;
- an even status: QEMU's own failure (it could not start the guest).

The verdict reuses :class:`pytest_sev.sev.ktap.Verdict` (one check line is
one :class:`~pytest_sev.sev.ktap.Result`), so the mode-table rule of the
kernel selftests (:func:`pytest_sev.host.selftests.demanded`) applies as is.

Rules, each with a test (tests/test_kut.py) that fails when flipped:

- a ``FAIL``/``XPASS`` line, an ``ABORT`` line, status 127, status 3, status 0
  or an even status is a failure, whatever else was printed;
- status 77 is a skip, with the first ``SKIP`` line's message as the reason;
- status 1 is a pass only with a ``SUMMARY`` line and no QEMU error on stderr
  (QEMU also exits 1 when it fails to start);
- a hang is a timeout naming the limit and the last line printed; a QEMU
  killed by a signal is a crash naming the signal.
"""

from __future__ import annotations

import re
from dataclasses import replace

from pytest_sev.sev.ktap import Parsed, Result, Status, Verdict, signal_name

#: QEMU's exit status for each way the program ends (see the module docstring)
EXIT_PASS, EXIT_FAIL, EXIT_SKIP, EXIT_ABORT, EXIT_NO_CODE = 1, 3, 77, 127, 0

#: what amd_sev.c prints about the guest it finds itself in
SEV_ES_ENABLED = "SEV-ES is enabled."
SEV_ES_NOT_ENABLED = "SEV-ES is not enabled."
SEV_NOT_ENABLED = "AMD SEV not enabled"

_ANSI = re.compile(r"\x1b\[[0-9;=?]*[A-Za-z]|\x1b[()][A-Z0-9]")
_CHECK = re.compile(r"^(PASS|FAIL|SKIP|XFAIL|XPASS|KFAIL): ?(.*)$")
_ABORT = re.compile(r"^ABORT: ?(.*)$")
_SUMMARY = re.compile(r"^SUMMARY: (\d+) tests?(.*)$")
_SUMMARY_PART = re.compile(r"(\d+) (unexpected failures|known failures|expected failures|skipped)")
_EXCEPTION = re.compile(r"^Unhandled (?:cpu )?exception .*$")
_STATUS: dict[str, Status] = {"PASS": "pass", "KFAIL": "xfail", "XFAIL": "xfail", "SKIP": "skip",
                              "FAIL": "fail", "XPASS": "fail"}
_SUMMARY_KEYS = {"unexpected failures": "fail", "known failures": "kfail", "expected failures": "xfail",
                 "skipped": "skip"}


def clean_lines(text: str) -> list[str]:
    """The output's lines (``\r\n`` and a lone ``\r`` end one too) without OVMF's terminal escapes."""
    return [_ANSI.sub("", line).rstrip() for line in text.splitlines()]


def parse(text: str) -> Parsed:
    """Every check line, the abort, the summary's counts. Pure."""
    results: list[Result] = []
    totals: dict[str, int] = {}
    bail: str | None = None
    last = ""
    for n, line in enumerate(clean_lines(text), start=1):
        if not line:
            continue
        last = line
        check = _CHECK.match(line)
        if check:
            word, message = check.groups()
            results.append(Result(len(results) + 1, message.strip(), _STATUS[word],
                                  reason=message.strip() if word == "SKIP" else "", line=n))
            continue
        abort = _ABORT.match(line)
        if abort:
            bail = abort.group(1).strip() or "(no message)"
            continue
        if bail is None and _EXCEPTION.match(line):
            bail = line.strip()
            continue
        summary = _SUMMARY.match(line)
        if summary:
            totals = {"tests": int(summary.group(1))}
            totals.update({_SUMMARY_KEYS[k]: int(v) for v, k in _SUMMARY_PART.findall(summary.group(2))})
    return Parsed(version="kvm-unit-tests", plan=totals.get("tests"), results=tuple(results),
                  bail_out=bail, totals=totals, last_line=last)


def qemu_error(stderr: str) -> str:
    """QEMU's first error line on stderr ('' when it printed only warnings). Pure."""
    for line in stderr.splitlines():
        text = line.strip()
        if text and "warning" not in text.lower():
            return text
    return ""


def judge(text: str, status: int | None, *, timed_out: bool, timeout: float, stderr: str = "") -> Verdict:
    """The program's outcome from its console output and QEMU's exit status. Pure.

    *status* is QEMU's exit status (negative: killed by that signal; None:
    it was killed after *timeout*)."""
    parsed = parse(text)
    last = parsed.last_line or "(nothing printed)"

    def verdict(outcome, reason: str) -> Verdict:
        return Verdict(outcome, reason, parsed, status, text)

    if timed_out:
        return verdict("timeout", f"no exit within {timeout:g} s; last line: {last!r}")
    if status is None or status < 0:
        name = signal_name(status) if status is not None else "unknown"
        return verdict("crash", f"QEMU was killed by {name}; last line: {last!r}")
    failed = [r.title for r in parsed.results if r.status == "fail"]
    if parsed.bail_out is not None or status == EXIT_ABORT:
        return verdict("fail", f"aborted: {parsed.bail_out or last}")
    if failed:
        return verdict("fail", f"{len(failed)} check(s) failed: " + "; ".join(failed))
    if status == EXIT_SKIP:
        skipped = parsed.skipped()
        return verdict("skip", skipped[0].reason if skipped else f"every check skipped; last line: {last!r}")
    if status == EXIT_NO_CODE:
        return verdict("fail", "QEMU ended without the program's exit code (a triple fault or reset under "
                               f"-no-reboot, or QEMU quit); last line: {last!r}")
    if status % 2 == 0:
        return verdict("fail", f"QEMU failed (exit {status}): {qemu_error(stderr) or last}")
    if status != EXIT_PASS:
        return verdict("fail", f"the program exited with code {status >> 1}; last line: {last!r}")
    error = qemu_error(stderr)
    if error:
        return verdict("fail", f"QEMU exit 1 with an error on stderr (QEMU, not the program, ended): {error}")
    if parsed.plan is None:
        return verdict("fail", f"exit 1 but no SUMMARY line: the output is incomplete; last line: {last!r}")
    passed = sum(1 for r in parsed.results if r.status in ("pass", "xfail"))
    return verdict("pass", f"{passed} of {parsed.plan} checks passed" + _left_out(parsed))


def _left_out(parsed: Parsed) -> str:
    skipped = len(parsed.skipped())
    return f", {skipped} skipped" if skipped else ""


def sev_es_said(text: str) -> bool | None:
    """What amd_sev.efi said of SEV-ES: True "is enabled", False "is not
    enabled" or "AMD SEV not enabled", None when it said neither. Pure."""
    lines = clean_lines(text)
    if any(line.strip() == SEV_ES_ENABLED for line in lines):
        return True
    if any(line.strip() == SEV_ES_NOT_ENABLED or line.endswith(SEV_NOT_ENABLED) for line in lines):
        return False
    return None


def against_launch(verdict: Verdict, kind: str) -> Verdict:
    """*verdict* checked against what the guest was launched as. Pure.

    The program is an independent witness of the launch: a plain control
    must skip with "AMD SEV not enabled" (a pass there means it found SEV
    where none was launched); an SEV guest must say "SEV-ES is not enabled."
    and an SEV-ES one "SEV-ES is enabled."; saying otherwise fails, whatever
    its checks said."""
    if verdict.outcome in ("timeout", "crash", "fail"):
        return verdict
    said = sev_es_said(verdict.output)
    if kind == "plain":
        if verdict.outcome == "skip" and SEV_NOT_ENABLED in verdict.reason:
            return replace(verdict, outcome="pass", reason=f"control: {SEV_NOT_ENABLED}, as launched")
        return replace(verdict, outcome="fail",
                       reason=f"control launched without SEV, but the program did not say {SEV_NOT_ENABLED!r} "
                              f"({verdict.outcome}: {verdict.reason})")
    if verdict.outcome == "skip":
        return verdict
    want = kind == "sev-es"
    if said is None:
        return replace(verdict, outcome="fail",
                       reason=f"launched {kind}, but the program said nothing of SEV-ES ({verdict.reason})")
    if said != want:
        return replace(verdict, outcome="fail",
                       reason=f"launched {kind}, but the program said SEV-ES is {'' if said else 'not '}enabled")
    return verdict
