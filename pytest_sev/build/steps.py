"""Run a recipe's steps: argv lists, one full log, failure named by step.

Commands are argv lists, never shell strings, so a path or ref with a space
or a ``;`` is only ever an argument.  The one exception the recipes need,
sourcing edk2's ``edksetup.sh``, goes through :func:`bash_step`: a fixed
script with the values passed as positional arguments.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.build.errors import BuildError

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Step:
    """One command of a recipe: a name for humans, an argv, where to run it."""

    name: str
    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: Path | None = None  # a file fed on standard input (patch < file)
    timeout: float | None = None


def step(name: str, *argv: str | os.PathLike, cwd: Path | None = None,
         env: Mapping[str, str] | None = None, stdin: Path | None = None,
         timeout: float | None = None) -> Step:
    return Step(name, tuple(str(a) for a in argv), cwd, dict(env or {}), stdin, timeout)


def bash_step(name: str, script: str, *args: str | os.PathLike, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> Step:
    """``bash -c SCRIPT name ARGS...``: *script* is fixed text using ``"$1"``...

    Values never enter the script text, so nothing in them is interpreted.
    """
    return step(name, "bash", "-c", script, name, *args, cwd=cwd, env=env)


def nice_prefix(nice: int | None) -> list[str]:
    return ["nice", "-n", str(nice)] if nice else []


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class StepRunner:
    """Runs steps of one component's build, appending everything to *log*."""

    def __init__(self, component: str, log: Path, *, nice: int | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self.component = component
        self.log = log
        self.nice = nice
        self.env = dict(env or {})
        self.timings: list[tuple[str, float]] = []
        log.parent.mkdir(parents=True, exist_ok=True)

    def note(self, text: str) -> None:
        with open(self.log, "a") as f:
            f.write(text.rstrip("\n") + "\n")

    def run(self, s: Step) -> None:
        argv = nice_prefix(self.nice) + list(s.argv)
        env = {**os.environ, "LC_ALL": "C", **self.env, **s.env}
        self.note(f"\n=== step {s.name}: {shlex.join(argv)}  (cwd {s.cwd or os.getcwd()})")
        start = time.monotonic()
        try:
            with open(self.log, "ab") as out:
                stdin_file = open(s.stdin, "rb") if s.stdin else None
                try:
                    # umask 022: file modes that end up in packages do not depend on the caller's
                    proc = subprocess.run(argv, cwd=s.cwd, env=env, umask=0o022,
                                          stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, timeout=s.timeout)
                finally:
                    if stdin_file is not None:
                        stdin_file.close()
        except FileNotFoundError as exc:
            self.note(f"=== step {s.name}: cannot run: {exc}")
            raise BuildError(self.component, s.name, log_tail=tail(self.log), log=self.log,
                             detail=f"{argv[0]!r} not found") from None
        except subprocess.TimeoutExpired:
            self.note(f"=== step {s.name}: timed out after {s.timeout} s")
            raise BuildError(self.component, s.name, log_tail=tail(self.log), log=self.log,
                             detail=f"timed out after {s.timeout} s") from None
        seconds = time.monotonic() - start
        self.timings.append((s.name, round(seconds, 3)))
        self.note(f"=== step {s.name}: exit {proc.returncode} after {seconds:.1f} s")
        if proc.returncode != 0:
            raise BuildError(self.component, s.name, log_tail=tail(self.log), log=self.log,
                             detail=f"exit status {proc.returncode}")

    def run_all(self, steps: Sequence[Step]) -> None:
        for s in steps:
            self.run(s)
