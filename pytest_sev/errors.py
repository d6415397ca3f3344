"""Every error pytest-sev raises, under one root: :class:`PytestSevError`.

Why one root: a caller (a suite, the CLI, a person's own conftest) can catch
"anything the harness refused or failed at" with one ``except`` and still
tell the kinds apart.  Each class also keeps the builtin base it had before
(``ValueError`` for bad values, ``RuntimeError`` for failures), so code that
caught those keeps working.

Every failure on a guest says what was awaited, shows the tail of the serial
console, the QEMU command line and where the full logs are, so a red test in
a nightly report can be understood without re-running it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path


class PytestSevError(Exception):
    """Root of every error the package raises."""


# -- bad values: one line, at start-up -----------------------------------------

class ConfigError(PytestSevError, ValueError):
    """A bad option value; the message is one line a person can act on."""


class SpecError(PytestSevError, ValueError):
    """A guest spec cannot describe a bootable guest; the message says why."""


class SourcesError(PytestSevError, ValueError):
    """The sources file or a ``--components`` spec is wrong; one line says how."""


class LaunchError(PytestSevError, RuntimeError):
    """``python -m pytest_sev launch`` cannot go ahead; the message is the line to print."""


# -- things the harness needs but did not find -----------------------------------

class QemuNotFound(PytestSevError, FileNotFoundError):
    """No QEMU binary under the name or path given."""


class ProvisionError(PytestSevError, RuntimeError):
    """The default guest's kernel could not be fetched or is not provisioned."""


class InitramfsError(PytestSevError, RuntimeError):
    """The busybox initramfs could not be assembled."""


class DiskImageError(PytestSevError, RuntimeError):
    """The GRUB disk image could not be built."""


class MissingModule(PytestSevError, LookupError):
    """A requested kernel module is neither loadable nor built in."""


class BuildError(PytestSevError, RuntimeError):
    """A component build step failed (or a source could not be fetched)."""

    def __init__(self, component: str, step: str, *, log_tail: str = "",
                 log: Path | None = None, detail: str = "") -> None:
        self.component = component
        self.step = step
        self.log_tail = log_tail
        self.log = log
        self.detail = detail
        parts = [f"{component}: build step {step!r} failed"]
        if detail:
            parts[0] += f": {detail}"
        if log_tail:
            parts.append("--- log tail ---\n" + log_tail.rstrip() + "\n--- end of log tail ---")
        if log is not None:
            parts.append(f"full log: {log}")
        super().__init__("\n".join(parts))


# -- guests: what a guest did (or did not do) in time ---------------------------

class GuestError(PytestSevError, RuntimeError):
    """Base class of guest failures; carries the console tail, argv and log paths."""

    def __init__(self, what: str, *, console_tail: str = "", argv: Sequence[str] = (),
                 logs: dict[str, Path] | None = None, detail: str = "") -> None:
        self.what = what
        self.console_tail = console_tail
        self.argv = list(argv)
        self.logs = dict(logs or {})
        self.detail = detail
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.what]
        if self.detail:
            parts.append(self.detail)
        if self.console_tail:
            tail = self.console_tail.rstrip()
            parts.append("--- console tail ---\n" + tail + "\n--- end of console tail ---")
        if self.argv:
            parts.append("qemu command line: " + shlex.join(self.argv))
        for name, path in self.logs.items():
            parts.append(f"{name}: {path}")
        return "\n".join(parts)


class GuestBudgetTimeout(PytestSevError, TimeoutError):
    """No slot of the host's guest budget (CPUs, memory, SEV/SEV-ES ASIDs) became free in time."""


class GuestLaunchError(GuestError):
    """QEMU did not start, or exited before its monitor answered (QEMUMachine's
    ``VMLaunchFailure``): carries argv, exit status and QEMU's own output."""


class GuestTimeout(GuestError):
    """A wait on the guest expired (boot, login, a command)."""


class GuestFrozen(GuestError):
    """QEMU is alive but stopped (``/proc`` state ``T``: SIGSTOP, a job-control
    stop, or ``t``: a debugger): nothing it runs can answer, so a wait on its
    console or monitor fails within seconds naming the state instead of
    running into its timeout."""


class GuestDied(GuestError):
    """QEMU exited while the harness was waiting on the guest."""


class GuestProtocolError(GuestError):
    """The console answered, but not in the framing the harness expects."""


class GuestPanicked(GuestDied):
    """The guest kernel panicked: the first line of the message is the panic
    line, the detail the oops head (RIP, Call Trace) from the console."""


class QMPLost(GuestError):
    """QEMU's monitor connection broke or stopped answering: carries the last
    QMP command, argv and log paths."""


class ShellDied(GuestError):
    """The guest's shell ended under a command (killed, or exited): a fresh
    shell's prompt came back instead of the command's end marker."""


class GuestUnusable(GuestError):
    """A guest that an earlier failure left unusable (a command that timed out
    and may still run, a dead shell, a desynchronised console)."""
