"""How the probe runs host commands (dmesg, uname, qemu --version, virsh ...).

The probe never calls :mod:`subprocess` itself: it asks a runner, so recorded
hosts replay their command outputs and the parsers are tested on real text.
The real runner takes an argv list (never a shell), bounds every command in
time (``virsh`` can hang on a dead libvirtd) and reports a missing program as
exit status 127 instead of raising, because a missing tool is evidence too.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

NOT_FOUND = 127
TIMED_OUT = 124


class Runner(Protocol):
    def run(self, argv: list[str]) -> tuple[int, str]:
        """Run ``argv``; return (exit status, stdout text)."""
        ...


class SubprocessRunner:
    """Runs commands on this machine, stdout captured, stderr discarded."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def run(self, argv: list[str]) -> tuple[int, str]:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            return NOT_FOUND, ""
        except PermissionError:
            return 126, ""
        except subprocess.TimeoutExpired:
            return TIMED_OUT, ""
        return done.returncode, done.stdout.decode("utf-8", errors="replace")


def command_key(argv: list[str]) -> str:
    """The name a recorded command is stored under: the program's base name
    plus its arguments, so ``/usr/local/bin/qemu-system-x86_64 --version`` and
    ``qemu-system-x86_64 --version`` replay the same recording."""
    program = argv[0].rsplit("/", 1)[-1]
    return " ".join([program, *argv[1:]])


class RecordingRunner:
    """Wraps a runner and keeps every (argv, status, stdout) it saw."""

    def __init__(self, inner: Runner) -> None:
        self.inner = inner
        self.log: dict[str, tuple[int, str]] = {}

    def run(self, argv: list[str]) -> tuple[int, str]:
        status, out = self.inner.run(argv)
        self.log[command_key(argv)] = (status, out)
        return status, out


class ReplayRunner:
    """Answers from recorded outputs; an unrecorded command was not found."""

    def __init__(self, answers: dict[str, tuple[int, str]]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    def run(self, argv: list[str]) -> tuple[int, str]:
        key = command_key(argv)
        self.asked.append(key)
        return self.answers.get(key, (NOT_FOUND, ""))
