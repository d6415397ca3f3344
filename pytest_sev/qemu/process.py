"""The one place pytest-sev starts QEMU: an argv list in, a process with a
staged stop out.

Why one launcher: a guest under test, the QMP capability probe and the
interactive ``launch`` tool all start QEMU.  Each needs the same guarantees,
and each copy of them drifted before (three PDEATHSIG calls, three stop
sequences).  In the spirit of QEMU's ``python/qemu/machine/machine.py``
(``launch()`` with cleanup on any error; ``shutdown()`` soft then hard; one
``VMLaunchFailure``):

* QEMU is started from an argv list, never through a shell, with
  ``PR_SET_PDEATHSIG`` so it cannot outlive a harness that is killed outright;
* its stdout and stderr go to one log file (or stay on the terminal, or a
  pseudo-terminal for a person at the serial console);
* a start that fails raises :class:`~pytest_sev.errors.GuestLaunchError`
  carrying the argv and what QEMU printed;
* :meth:`QemuProcess.stop` runs the caller's soft stages (guest ``poweroff``,
  QMP ``quit``) and then SIGTERM and SIGKILL, each with a short grace,
  logs every stage at INFO and names the stage that ended the process.
  It is bounded: a QEMU that is stopped (SIGSTOP, a debugger) or whose soft
  stage says it is not answering (``kill_if_fails``: its monitor timed out)
  goes straight to SIGKILL, so a frozen QEMU costs seconds, not minutes.
  Every stage, failed or not, is in :attr:`QemuProcess.stop_log` and goes to
  the ``on_stage`` callback (a guest writes it into its logs).
"""

from __future__ import annotations

import ctypes
import logging
import shlex
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestLaunchError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
#: what :meth:`QemuProcess.stop` answers when QEMU had already gone
EXITED = "exited by itself"


def die_with_parent() -> None:
    """Between fork and exec, in QEMU's process: SIGKILL it when we die."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _die_with_parent_keys_to_guest() -> None:
    """As :func:`die_with_parent`, and Ctrl-C/Ctrl-Z/Ctrl-\\ become keys for
    the guest instead of signals for QEMU (launch-qemu.sh's ``stty intr ^]``)."""
    die_with_parent()
    try:
        attrs = termios.tcgetattr(0)
        for cc in (termios.VINTR, termios.VQUIT, termios.VSUSP):
            attrs[6][cc] = b"\x00"
        termios.tcsetattr(0, termios.TCSANOW, attrs)
    except (termios.error, OSError):
        pass


@dataclass(frozen=True)
class StopStage:
    """One soft way of ending QEMU: ``action`` asks, ``grace`` is how long to wait."""

    name: str
    action: Callable[[], Any]
    grace: float = 5.0
    #: when the action fails (the monitor did not answer), skip to SIGKILL
    kill_if_fails: bool = False


def process_state(pid: int | None) -> str | None:
    """The state letter of *pid* in ``/proc/PID/stat`` (R, S, T, Z...), or None."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0] if ")" in stat else None


#: /proc states of a process that exists but runs nothing (QEMU cannot answer)
STOPPED_STATES = {"T": "stopped (SIGSTOP or a job-control stop)", "t": "stopped by a debugger (tracing stop)"}


def frozen_state(pid: int | None) -> str | None:
    """Why the process *pid* cannot answer (one line naming its ``/proc``
    state), or None when it is not stopped (running, sleeping, gone)."""
    state = process_state(pid)
    if state not in STOPPED_STATES:
        return None
    return f"QEMU (pid {pid}) is {STOPPED_STATES[state]}: /proc state {state!r}"


class QemuProcess:
    """One QEMU process.  Use :meth:`start` (or ``with``), then :meth:`stop`.

    ``output``: a file that gets QEMU's stdout and stderr (appended), or None
    to leave them on this process's own.  ``pass_fds``: socketpair ends QEMU
    inherits (console, QMP).  ``terminal=(rows, cols)`` runs QEMU on a
    pseudo-terminal of its own (:attr:`pty` is the pexpect child) for a
    person at the serial console.
    """

    def __init__(self, argv: Sequence[str], *, name: str = "qemu", cwd: Path | None = None,
                 output: Path | None = None, pass_fds: Sequence[int] = (),
                 terminal: tuple[int, int] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name
        self.cwd = cwd
        self.output = output
        self.pass_fds = tuple(pass_fds)
        self.terminal = terminal
        self.stop_stage: str | None = None
        #: every stop stage tried: (stage, "ended it" | "still running" | "failed: why")
        self.stop_log: list[tuple[str, str]] = []
        #: called with (stage, outcome) as each stop stage ends
        self.on_stage: Callable[[str, str], None] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.pty: Any = None  # pexpect.spawn when terminal is given
        self._out: IO[bytes] | None = None
        self.started_at: float | None = None

    # -- start -----------------------------------------------------------------
    def start(self) -> QemuProcess:
        """Start QEMU; GuestLaunchError (argv + output) when it cannot run."""
        log.info("%s: launching %s", self.name, shlex.join(self.argv))
        self.started_at = time.monotonic()
        try:
            if self.terminal is not None:
                import pexpect  # only a person's launch needs a pty
                self.pty = pexpect.spawn(self.argv[0], self.argv[1:], dimensions=self.terminal,
                                         echo=False, preexec_fn=_die_with_parent_keys_to_guest,
                                         cwd=str(self.cwd) if self.cwd else None)
                return self
            if self.output is not None:
                self._out = open(self.output, "ab")
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL if self._out is not None else None,
                stdout=self._out, stderr=self._out, pass_fds=self.pass_fds,
                preexec_fn=die_with_parent, cwd=self.cwd)
        except OSError as exc:
            self._close_output()
            raise GuestLaunchError(f"{self.name}: QEMU could not be started: {exc.strerror or exc}",
                                   argv=self.argv, detail=self.output_tail()) from exc
        return self

    def __enter__(self) -> QemuProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        if self.pty is not None:
            return int(self.pty.pid)
        return self._proc.pid if self._proc is not None else None

    def frozen(self) -> str | None:
        """Why QEMU cannot answer although it runs (stopped: SIGSTOP, a
        debugger), or None.  Cheap (one read of ``/proc/PID/stat``): the
        console and QMP ask it once per second of a wait."""
        return frozen_state(self.pid) if self.alive else None

    @property
    def alive(self) -> bool:
        if self.pty is not None:
            return bool(self.pty.isalive())
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status (Popen's: -N for signal N; on a pty 128 + N, as a shell says)."""
        if self.pty is not None:
            if self.pty.isalive():
                return None
            if self.pty.exitstatus is not None:
                return int(self.pty.exitstatus)
            return 128 + int(self.pty.signalstatus or 0)
        if self._proc is None or self._proc.poll() is None:
            return None
        return self._proc.returncode

    def wait(self, seconds: float) -> bool:
        """True when QEMU has exited within *seconds*."""
        if self.pty is not None:
            deadline = Deadline(seconds)
            while self.pty.isalive() and not deadline.expired:
                time.sleep(0.05)
            return not self.pty.isalive()
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def output_tail(self, nbytes: int = 1500) -> str:
        """The end of what QEMU printed (its log file), for error messages."""
        if self.output is None:
            return ""
        try:
            return self.output.read_text(errors="replace")[-nbytes:].strip()
        except OSError:
            return ""

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "QEMU is still running"
        return f"QEMU exit status {code}; output: {self.output_tail()}"

    # -- stop ------------------------------------------------------------------
    def _signal(self, sig: signal.Signals) -> None:
        if self.pty is not None:
            self.pty.kill(sig)
        elif self._proc is not None:
            self._proc.send_signal(sig)

    def _log_stage(self, stage: str, outcome: str) -> None:
        self.stop_log.append((stage, outcome))
        log.info("%s: stop stage %s: %s", self.name, stage, outcome)
        if self.on_stage is not None:
            try:
                self.on_stage(stage, outcome)
            except Exception as exc:  # a log sink that fails must not stop the stop
                log.debug("%s: on_stage failed: %s", self.name, exc)

    def stop(self, soft: Sequence[StopStage] = (), term_grace: float = 2.0) -> str:
        """End QEMU: *soft* stages in order, then SIGTERM, then SIGKILL.

        Safe to call twice and on every path (it never raises for a stage that
        fails: that is recorded in :attr:`stop_log`).  Returns the stage that
        ended the process, also kept in :attr:`stop_stage`.
        """
        if self.stop_stage is not None:
            return self.stop_stage
        stage = EXITED
        try:
            if self.pid is None:
                stage = "never started"
            elif self.alive:
                stage = self._stop_stages(soft, term_grace)
            else:
                stage = self._record_exit()
        finally:
            if self.alive:  # interrupted above (Ctrl-C): never leave QEMU behind
                self._signal(signal.SIGKILL)
                self.wait(10)
                stage = "SIGKILL"
                self._log_stage("SIGKILL", "ended it (the stop was interrupted)")
            self._reap()
            self._close_output()
        self.stop_stage = stage
        log.info("%s: stopped (%s); %s", self.name, stage, self.describe_exit()
                 if stage != "never started" else "QEMU never ran")
        return stage

    def _stop_stages(self, soft: Sequence[StopStage], term_grace: float) -> str:
        frozen = frozen_state(self.pid) if self.pty is None else None
        if frozen:
            self._log_stage("state", f"{frozen}: no soft stage can work")
            return self._sigkill()
        for st in soft:
            if not self.alive:
                return self._record_exit()
            started = time.monotonic()
            try:
                st.action()
            except Exception as exc:  # the monitor or the console may be gone already
                first = str(exc).splitlines()[0] if str(exc) else ""
                self._log_stage(st.name, f"failed after {time.monotonic() - started:.1f}s: "
                                         f"{type(exc).__name__}: {first}")
                if st.kill_if_fails:
                    if self.wait(0.5):  # it went away as it failed to answer
                        self._log_stage(st.name, "ended it (QEMU exited)")
                        return st.name
                    return self._sigkill()
                continue
            if self.wait(st.grace):
                self._log_stage(st.name, "ended it")
                return st.name
            self._log_stage(st.name, f"still running after {st.grace:g}s")
        if not self.alive:
            return self._record_exit()
        self._signal(signal.SIGTERM)
        if self.wait(term_grace):
            self._log_stage("SIGTERM", "ended it")
            return "SIGTERM"
        self._log_stage("SIGTERM", f"still running after {term_grace:g}s")
        return self._sigkill()

    def _sigkill(self) -> str:
        self._signal(signal.SIGKILL)
        self._log_stage("SIGKILL", "ended it" if self.wait(10) else "sent; QEMU not reaped after 10s")
        return "SIGKILL"

    def _record_exit(self) -> str:
        self._log_stage(EXITED, "QEMU had already exited")
        return EXITED

    def kill(self) -> None:
        """SIGKILL now (a watchdog's answer to a QEMU that will not answer)."""
        if self.alive:
            self._signal(signal.SIGKILL)

    @contextmanager
    def killed_after(self, seconds: float) -> Iterator[None]:
        """Kill QEMU if the block has not finished within *seconds*: killing it
        closes its sockets, which unblocks a QMP read that would wait forever."""
        timer = threading.Timer(seconds, self.kill)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _reap(self) -> None:
        if self.pty is not None:
            try:
                self.pty.close(force=True)
            except Exception:  # already closed with the terminal
                pass
        elif self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
