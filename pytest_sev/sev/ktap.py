"""TAP / KTAP output of a kernel selftest program, and its verdict. Pure.

Why here and not a TAP library: a kernel selftest's verdict is not in its TAP
alone.  The KVM selftests print TAP only for some outcomes (``1..0 # SKIP -
Requirement not met: ...`` from ``ksft_exit_skip``), pass silently (exit 0
after a ``Random seed: 0x...`` line), and fail through ``TEST_ASSERT``, which
writes a ``==== Test Assertion Failure ====`` block to stderr and exits 254
(tools/testing/selftests/kvm/lib/assert.c).  So the verdict is the exit status
read the way the kselftest runner (tools/testing/selftests/kselftest/runner.sh)
reads it, 0 pass, 4 (``KSFT_SKIP``) skip, anything else a failure, with the
text naming *why*: the skip's reason line, the assertion's ``file:line``
and message, the subtests that failed.  The TAP part is read here too (TAP 13
as kselftest_harness.h prints it, and KTAP 1), one result per ``ok``/``not
ok`` line, so each subtest can be reported on its own.

Rules that each have a test (tests/test_ktap.py) that fails when flipped:

- exit 4 is a skip, with the reason from the output (``1..0 # SKIP ...``,
  ``ok N # SKIP ...``, or ``..., skipping test`` from ``print_skip``); a skip
  whose output also has a ``not ok`` or an assertion block is a failure;
- exit 0 is a pass only when no subtest failed, no assertion block was
  printed, nothing bailed out and the plan (if any) was met;
- a process killed by a signal is a crash, naming the signal;
- a hang is a timeout, naming the limit and the last line printed;
- any other exit status is a failure, quoting the assertion (``file:line:
  expression`` and the message) when there is one.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field, replace
from typing import Literal

#: kselftest exit codes (tools/testing/selftests/kselftest.h)
KSFT_PASS, KSFT_FAIL, KSFT_XFAIL, KSFT_XPASS, KSFT_SKIP = 0, 1, 2, 3, 4
#: TEST_ASSERT's exit status in the KVM selftests (kvm/lib/assert.c: exit(254))
KVM_ASSERT_EXIT = 254
ASSERT_HEADER = "==== Test Assertion Failure ===="

Status = Literal["pass", "fail", "skip", "xfail", "todo"]
Outcome = Literal["pass", "fail", "skip", "timeout", "crash"]

_VERSION = re.compile(r"^(TAP|KTAP) version (\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_RESULT = re.compile(r"^(not ok|ok)(?=\s|$)(?:\s+(\d+))?(?:\s+-)?\s*(.*)$")
_DIRECTIVE = re.compile(r"^(SKIP|TODO|XFAIL|error)\b\s*:?\s*(.*)$", re.IGNORECASE)
_BAIL = re.compile(r"^Bail out!\s*(.*)$")
_WHERE = re.compile(r"^\s*(\S+?):(\d+):\s?(.*)$")
_PID = re.compile(r"^\s*pid=\d+ tid=\d+")
_STACK = re.compile(r"^\s*\d+\s+0x[0-9a-fA-F]+:")
_PRINT_SKIP = re.compile(r"^(.*), skipping test\s*$")
_HARNESS_WHERE = re.compile(r"^#\s+(\S+\.[ch]):(\d+):[^:\s]*:\s*(.*)$")
_TOTAL_NAMES = ("pass", "fail", "xfail", "xpass", "skip", "error")
_TOTALS = re.compile(r"^#\s*Totals:\s*pass:(\d+) fail:(\d+) xfail:(\d+) xpass:(\d+) skip:(\d+) error:(\d+)")


@dataclass(frozen=True)
class Result:
    """One ``ok``/``not ok`` line: a subtest."""

    number: int | None
    name: str
    status: Status
    reason: str = ""          # the directive's text (``SKIP <reason>``)
    line: int = 0             # 1-based line in the output
    detail: str = ""          # kselftest_harness's first ``# file.c:N:test:msg`` line before it

    @property
    def title(self) -> str:
        """How a report names it: its name, else its number."""
        return self.name or (f"test {self.number}" if self.number is not None else "test")


@dataclass(frozen=True)
class Assertion:
    """A KVM selftest's ``TEST_ASSERT`` failure block."""

    file: str
    line: int
    expression: str
    message: str = ""
    errno_line: str = ""
    stack: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def describe(self) -> str:
        text = f"{self.where}: {self.expression}"
        if self.message:
            text += f": {self.message}"
        return text


@dataclass(frozen=True)
class Parsed:
    """What a program printed, read as TAP/KTAP plus the KVM assertion block."""

    version: str = ""                     # "TAP 13", "KTAP 1", "" (none printed)
    plan: int | None = None
    plan_reason: str = ""                 # "1..0 # SKIP <reason>"
    results: tuple[Result, ...] = ()
    bail_out: str | None = None
    assertion: Assertion | None = None
    skip_lines: tuple[str, ...] = ()      # print_skip's "..., skipping test" lines
    totals: dict[str, int] = field(default_factory=dict)
    problems: tuple[str, ...] = ()        # a result number twice, numbers out of order
    last_line: str = ""

    def failed(self) -> list[Result]:
        return [r for r in self.results if r.status == "fail"]

    def skipped(self) -> list[Result]:
        return [r for r in self.results if r.status == "skip"]

    def skip_reason(self) -> str:
        """The program's own words for a whole-program skip."""
        if self.plan == 0 and self.plan_reason:
            return _strip_skip(self.plan_reason)
        for r in reversed(self.results):
            if r.status == "skip" and r.reason:
                return r.reason
        if self.skip_lines:
            return self.skip_lines[-1]
        return ""


def _strip_skip(text: str) -> str:
    m = _DIRECTIVE.match(text.strip())
    return (m.group(2) if m and m.group(1).upper() == "SKIP" else text).strip().lstrip("-").strip()


def _result(match: re.Match, lineno: int) -> Result:
    ok = match.group(1) == "ok"
    number = int(match.group(2)) if match.group(2) else None
    rest = match.group(3)
    name, _, directive = rest.partition("#")
    name, directive = name.strip(), directive.strip()
    status: Status = "pass" if ok else "fail"
    reason = ""
    d = _DIRECTIVE.match(directive)  # None for an empty directive too
    if d:
        kind = d.group(1).upper()
        reason = d.group(2).strip().lstrip("-").strip()
        if kind == "SKIP":
            status = "skip"
        elif kind == "TODO":
            status = "todo"      # a known failure the test declares: not counted
        elif kind == "XFAIL":
            status = "xfail" if ok else "fail"
        elif kind == "ERROR":
            status = "fail"
    elif directive:
        reason = directive
    return Result(number, name, status, reason, lineno)


def _assertion(lines: list[str], start: int) -> Assertion | None:
    """The block after the header line at *start* (index of the header)."""
    body = lines[start + 1:]
    where = next((i for i, ln in enumerate(body) if ln.strip()), None)
    if where is None:
        return None
    m = _WHERE.match(body[where])
    if not m:
        return Assertion(file="?", line=0, expression=body[where].strip())
    errno_line = ""
    stack: list[str] = []
    message: list[str] = []
    for ln in body[where + 1:]:
        if not ln.strip() or not ln.startswith((" ", "\t")):
            break  # the block is indented; the first flush-left line ends it
        if _PID.match(ln) and not errno_line and not stack:
            errno_line = ln.strip()
        elif _STACK.match(ln):
            stack.append(ln.strip())
        else:
            message.append(ln.strip())
    return Assertion(file=m.group(1), line=int(m.group(2)), expression=m.group(3).strip(),
                     message=" ".join(message), errno_line=errno_line, stack=tuple(stack))


def parse(text: str) -> Parsed:
    """Read a selftest's combined stdout and stderr."""
    lines = text.splitlines()
    version, plan, plan_reason, bail = "", None, "", None
    results: list[Result] = []
    skips: list[str] = []
    totals: dict[str, int] = {}
    problems: list[str] = []
    assertion = None
    seen: dict[int, int] = {}
    detail = ""  # the harness's first located message since the last result
    for i, raw in enumerate(lines):
        ln = raw.strip()
        if ln == ASSERT_HEADER:
            if assertion is None:  # the first assertion is the cause; later ones are fallout
                assertion = _assertion(lines, i)
            continue
        if raw[:1] in (" ", "\t"):
            continue  # nested KTAP subtests and the assertion's own lines
        if m := _VERSION.match(ln):
            version = version or f"{m.group(1)} {m.group(2)}"
        elif m := _PLAN.match(ln):
            if plan is None:
                plan, plan_reason = int(m.group(1)), (m.group(2) or "").strip()
        elif m := _RESULT.match(ln):
            r = replace(_result(m, i + 1), detail=detail)
            detail = ""
            if r.number is not None:
                if r.number in seen:
                    problems.append(f"test {r.number} reported twice (lines {seen[r.number]} and {i + 1})")
                seen[r.number] = i + 1
            results.append(r)
        elif m := _BAIL.match(ln):
            bail = m.group(1).strip() or "(no reason given)"
        elif m := _TOTALS.match(ln):
            totals = {name: int(m.group(k + 1)) for k, name in enumerate(_TOTAL_NAMES)}
        elif m := _PRINT_SKIP.match(ln):
            skips.append(m.group(1).strip())
        elif (m := _HARNESS_WHERE.match(ln)) and not detail:
            detail = f"{m.group(1)}:{m.group(2)}: {m.group(3).strip()}"
    last = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return Parsed(version=version, plan=plan, plan_reason=plan_reason, results=tuple(results), bail_out=bail,
                  assertion=assertion, skip_lines=tuple(skips), totals=totals, problems=tuple(problems),
                  last_line=last)


@dataclass(frozen=True)
class Verdict:
    """A program's outcome and the one line that says why."""

    outcome: Outcome
    reason: str
    parsed: Parsed
    exit_code: int | None = None
    output: str = ""          # the text it was judged on


def signal_name(returncode: int) -> str:
    """``-11`` -> ``SIGSEGV`` (a Popen return code of a killed process)."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _failures(parsed: Parsed) -> list[str]:
    """Why the output itself says the program failed, whatever its exit status."""
    why = []
    if parsed.assertion is not None:
        why.append(f"assertion failed at {parsed.assertion.describe()}")
    for r in parsed.failed():
        said = r.reason or r.detail
        why.append(f"subtest {r.title} failed" + (f" ({said})" if said else ""))
    if parsed.bail_out is not None:
        why.append(f"bailed out: {parsed.bail_out}")
    totals = parsed.totals
    if totals and (totals["fail"] or totals["error"]):
        why.append(f"totals: fail {totals['fail']}, error {totals['error']}")
    return why


def judge(text: str, exit_code: int | None, *, timed_out: bool = False,
          timeout: float | None = None) -> Verdict:
    """The verdict on one run: *exit_code* as Popen gives it (negative: the
    signal that killed it), *timed_out* when the runner had to kill it."""
    parsed = parse(text)
    if timed_out:
        last = f"; last line: {parsed.last_line!r}" if parsed.last_line else "; it printed nothing"
        return Verdict("timeout", f"timed out after {timeout:g} s{last}" if timeout is not None
                       else f"timed out{last}", parsed, exit_code, text)
    if exit_code is None:
        raise ValueError("judge() needs the exit status of a program that finished")
    why = _failures(parsed)
    if exit_code < 0:
        crash = f"killed by {signal_name(exit_code)}"
        return Verdict("crash", "; ".join([crash, *why]), parsed, exit_code, text)
    if exit_code == KSFT_SKIP and _skip_stands(parsed):
        reason = parsed.skip_reason() or "exit 4 (KSFT_SKIP) without a reason line"
        if parsed.assertion is not None:  # test_assert() on EACCES: the block, then print_skip
            reason += f" (after assertion at {parsed.assertion.describe()})"
        return Verdict("skip", reason, parsed, exit_code, text)
    if exit_code == KSFT_PASS:
        if parsed.plan and len({r.number for r in parsed.results}) < parsed.plan:
            why.append(f"plan 1..{parsed.plan} but {len(parsed.results)} result(s) reported")
        if not why:
            return Verdict("pass", _pass_summary(parsed), parsed, exit_code, text)
        return Verdict("fail", f"exit 0 but {'; '.join(why)}", parsed, exit_code, text)
    status = {KSFT_FAIL: "exit 1 (KSFT_FAIL)", KVM_ASSERT_EXIT: "exit 254 (TEST_ASSERT)",
              KSFT_SKIP: "exit 4 (KSFT_SKIP)"}.get(exit_code, f"exit {exit_code}")
    if not why and parsed.last_line:
        why.append(f"last line: {parsed.last_line!r}")
    return Verdict("fail", "; ".join([status, *why]), parsed, exit_code, text)


def _skip_stands(parsed: Parsed) -> bool:
    """Exit 4 is a skip unless the output shows a failure; an assertion
    block counts as one unless ``print_skip`` followed it (assert.c skips on
    EACCES: access to /dev/kvm was refused, nothing was tested)."""
    if parsed.failed() or parsed.bail_out is not None:
        return False
    return parsed.assertion is None or bool(parsed.skip_lines)


def _pass_summary(parsed: Parsed) -> str:
    if not parsed.results:
        return "exit 0"
    counts: dict[str, int] = {}
    for r in parsed.results:
        counts[r.status] = counts.get(r.status, 0) + 1
    text = "exit 0; " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return text + "".join(f"; {p}" for p in parsed.problems)
