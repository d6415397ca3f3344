"""Run one kernel selftest program on the host: argv, a time limit, the verdict.

Why a runner of its own instead of the kselftest runner.sh: runner.sh folds
each program into one ``ok``/``not ok`` line, where the suite wants the
program's own TAP/KTAP subtests, its skip reason and its assertion, with the
whole output kept.  This does what runner.sh does for one program (run it in
its directory, stdout and stderr in one stream, the tree's ``timeout=``)
and hands the text and exit status to :func:`pytest_sev.sev.ktap.judge`.

A program that outlives its limit is killed with its whole process group
(KVM selftests start vCPU threads and sometimes children) by coreutils
``timeout``, as runner.sh does, and is a ``timeout`` verdict with the output
so far; one killed by a signal is a ``crash``.  Which outcome the run's mode accepts is :func:`demanded`, pure.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.sev import ktap

log = logging.getLogger(__name__)

#: after the limit, TERM; this much later, KILL (timeout --kill-after)
_KILL_AFTER = 5.0
#: beyond both, how long the runner waits for timeout(1) itself
_DRAIN_SECONDS = 10.0
#: timeout(1)'s exit after it signalled the program (TERM: 124; KILL: 128 + 9)
_TIMEOUT_EXITS = (124, 137)


@dataclass(frozen=True)
class ProgramRun:
    """One run of one program: what ran, what it printed, how it ended."""

    program: str
    argv: tuple[str, ...]
    output: str
    exit_code: int | None
    timed_out: bool
    seconds: float
    timeout: float
    verdict: ktap.Verdict


def run_program(binary: Path, *, timeout: float, args: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> ProgramRun:
    """Run *binary* (an argv list, never a shell) in its directory; never waits past *timeout*.

    coreutils ``timeout`` enforces the limit, as the kselftest runner does:
    it runs the program in a process group of its own and, when the limit
    passes, signals the whole group (TERM, then KILL 5 s later), so vCPU
    threads and children go too and the output so far comes back.  Its exit
    status 124 (137 after the KILL) is a timeout only when the limit really
    passed; a program killed by a signal shows as that signal (``timeout``
    re-raises it), never as 128+N.  (Popen stays in qemu/process.py, the one
    module that starts processes it must watch.)"""
    argv = ("timeout", f"--kill-after={_KILL_AFTER:g}", f"{timeout:g}", str(binary), *args)
    log.info("selftest: %s (limit %g s)", " ".join(argv[3:]), timeout)  # pragma: no mutate, a log line
    start = time.monotonic()
    try:
        # never the caller's stdin: a terminal there would block a program that reads it
        proc = subprocess.run(argv, cwd=binary.parent,
                              stdin=subprocess.DEVNULL,  # pragma: no mutate, see above (CI has no terminal)
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              timeout=timeout + _KILL_AFTER + _DRAIN_SECONDS,  # pragma: no mutate, backstop only
                              env=None if env is None else {**os.environ, **env})
        out, code = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as exc:  # timeout(1) itself hung: the backstop
        out, code = exc.output, None  # pragma: no mutate, only reached if coreutils timeout hangs
    seconds = round(time.monotonic() - start, 2)  # pragma: no mutate, a duration shown to humans
    # (>= or >: equivalent, no program ends exactly on its limit)
    timed_out = code is None or (code in _TIMEOUT_EXITS and seconds >= timeout)  # pragma: no mutate, see above
    text = (out or b"").decode(errors="replace")
    verdict = ktap.judge(text, code, timed_out=timed_out, timeout=timeout)
    log.info("selftest: %s: %s (%s) after %.1f s",  # pragma: no mutate, a log line
             binary.name, verdict.outcome, verdict.reason, seconds)  # pragma: no mutate, a log line
    return ProgramRun(binary.name, argv, text, code, timed_out, seconds, timeout, verdict)


def host_kernel() -> str:
    """The running kernel's release: what the selftests test, whatever tree built them."""
    return platform.release()


@dataclass(frozen=True)
class Judged:
    """What the test item does with a run: pass, skip or fail, and why."""

    action: str   # "pass" | "skip" | "fail"
    reason: str


def demanded(verdict: ktap.Verdict, *, demanding_flag: str | None, kinds: Sequence[str] = ("SEV-ES",)) -> Judged:
    """The item's answer for *verdict* in this run. Pure.

    *demanding_flag* is the run's flag (``--sev-es``) when its mode demands
    what the program tests, else None (auto).  Under a demanding mode a
    skip, a skipped subtest, or a pass whose output says one of *kinds* is
    not supported (the program left that part out) is a failure, as any
    other SEV-ES item's skip is there; in auto they skip or pass, saying so.
    """
    parsed = verdict.parsed
    if verdict.outcome in ("fail", "timeout", "crash"):
        return Judged("fail", f"{verdict.outcome}: {verdict.reason}")
    if verdict.outcome == "skip":
        if demanding_flag:
            return Judged("fail", f"{demanding_flag} demands it, but it skipped: {verdict.reason}")
        return Judged("skip", verdict.reason)
    left_out = [f"subtest {r.title} skipped" + (f": {r.reason}" if r.reason else "") for r in parsed.skipped()]
    left_out += [f"said: {line!r}" for line in unsupported_lines(verdict.output, kinds)]
    if left_out and demanding_flag:
        return Judged("fail", f"{demanding_flag} demands it, but it passed with parts left out: "
                              + "; ".join(left_out))
    note = f" (left out: {'; '.join(left_out)})" if left_out else ""
    return Judged("pass", verdict.reason + note)


def unsupported_lines(text: str, kinds: Sequence[str]) -> list[str]:
    """Lines where the program says one of *kinds* is not supported (so it did not test it). Pure."""
    out = []
    for line in text.splitlines():
        low = line.lower()
        if "not supported" in low and any(_names_kind(low, k.lower()) for k in kinds):
            out.append(line.strip())
    return out


def _names_kind(low: str, kind: str) -> bool:
    """*kind* as a word of its own ("sev" is not in "sev-es" or "sev-snp")."""
    return re.search(rf"(?<![\w-]){re.escape(kind)}(?![\w-])", low) is not None
