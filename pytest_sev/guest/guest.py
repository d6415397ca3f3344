"""A QEMU guest you can trust to answer truthfully and to go away.

:class:`Guest` renders its spec to an argv (:mod:`pytest_sev.qemu.argv`),
starts it with the one launcher (:mod:`pytest_sev.qemu.process`) with the
serial console and QMP each on a socketpair, waits for the guest to boot
(optionally through a boot menu and a login) within one deadline, runs framed
commands on its shell, and shuts it down in stages on every path: guest
``poweroff``, QMP ``quit``, SIGTERM, SIGKILL.

A guest whose command timed out (the command may still run), whose shell
died or whose console lost the framing is *unusable*: :attr:`Guest.unusable`
says why, :meth:`Guest.run` refuses with :class:`GuestUnusable` naming it,
and the ``guest`` fixture replaces it before the next test.  Its stop skips
the guest ``poweroff`` (nobody would read it) and asks QMP with a short
timeout; a QEMU that does not answer is killed: a frozen guest costs seconds.

Logs (``logging.getLogger(__name__)``): INFO tells the guest's life (argv,
boot time, the stop stage that ended it), DEBUG its console and QMP traffic.
``harness.log`` in the work directory says the same for the report: why it
replaced another guest, why it became unusable, every stop stage; the stop
stages also go into the QMP transcript.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_sev.console.panic import PANIC, panic_line, trace_head
from pytest_sev.console.serial import Console
from pytest_sev.deadline import Deadline
from pytest_sev.errors import (
    GuestDied,
    GuestError,
    GuestFrozen,
    GuestLaunchError,
    GuestPanicked,
    GuestTimeout,
    GuestUnusable,
    QMPLost,
)
from pytest_sev.guest.budget import asid_exhaustion
from pytest_sev.model.protocol import ConsoleLike
from pytest_sev.model.spec import GuestSpec
from pytest_sev.qemu.accel import AccelChoice, choose_accel
from pytest_sev.qemu.argv import build_argv
from pytest_sev.qemu.binary import qemu_version, resolve_qemu
from pytest_sev.qemu.firmware import vars_store
from pytest_sev.qemu.process import QemuProcess, StopStage
from pytest_sev.qemu.qmp import QMP

log = logging.getLogger(__name__)

#: the embedded guest's prompt: init starts a fresh shell with it when ours dies
FRESH_SHELL_PROMPT = rb"(?m)^sev-guest# "
#: how long QMP may take to answer during a stop before QEMU counts as frozen
QMP_STOP_TIMEOUT = 1.5


def new_log_dir(root: Path, name: str, index: int = 0) -> Path:
    """A new, empty directory under *root* for one guest's logs.

    Why not ``<index>-<name>-<epoch second>``: two guests started in the same
    second (two xdist workers, two runs in one checkout, each with its own
    index 0) shared it, so one harness.log got every line twice and the
    passing twin's cleanup deleted the failed twin's logs.  The name still
    starts with *index*, *name* and the start time (readable, sorted), then
    this process's pid and mkdtemp's random suffix, created atomically:
    no other guest anywhere can be handed the same directory.  *root* may be
    removed meanwhile by another factory finding it empty: made again."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[-80:] or "guest"
    prefix = f"{index}-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-"
    for _ in range(5):
        root.mkdir(parents=True, exist_ok=True)
        try:
            return Path(tempfile.mkdtemp(prefix=prefix, dir=root))
        except FileNotFoundError:  # another run's finish removed the empty root in between
            continue
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


class Guest:
    """Context manager around one QEMU guest; see the module docstring."""

    def __init__(self, spec: GuestSpec, *, qemu: str = "qemu-system-x86_64",
                 accel: str | AccelChoice = "auto", workdir: Path | None = None,
                 keep_workdir: bool = False, quiet_console: bool = True) -> None:
        self.spec = spec
        self.qemu = resolve_qemu(qemu)
        self.accel = accel if isinstance(accel, AccelChoice) else choose_accel(accel)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"sev-{spec.name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.workdir, 0o700)
        self.keep_workdir = keep_workdir
        self.quiet_console = quiet_console
        self.argv: list[str] = []
        self.process: QemuProcess | None = None
        self.console: ConsoleLike | None = None
        self.qmp: QMP | None = None
        self.boot_seconds: float | None = None
        self._shell_busy = False
        self._closed = False
        self._unusable: str | None = None

    # -- paths ---------------------------------------------------------------
    @property
    def logs(self) -> dict[str, Path]:
        return {"console log": self.workdir / "console.log",
                "qemu stderr": self.workdir / "qemu-stderr.log",
                "qmp transcript": self.workdir / "qmp.jsonl",
                "harness log": self.workdir / "harness.log"}

    def note(self, text: str) -> None:
        """One line in ``harness.log`` (and the INFO log): what the harness
        decided about this guest.  A log that cannot be written is skipped."""
        log.info("%s: %s", self.spec.name, text)
        try:
            with open(self.logs["harness log"], "a") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        except OSError:
            pass

    @property
    def shutdown_stage(self) -> str | None:
        """The stop stage that ended QEMU (None while it runs)."""
        return self.process.stop_stage if self.process is not None else None

    def _context(self, exited: bool = False) -> dict[str, Any]:
        ctx: dict[str, Any] = {"argv": self.argv, "logs": self.logs}
        proc = self.process
        if exited and proc is not None:
            proc.wait(3)  # the console saw EOF: give QEMU a moment to be reaped
        if proc is not None and not proc.alive and proc.pid is not None:
            ctx["exit"] = f"QEMU exit status {proc.returncode}; stderr: {proc.output_tail()}"
        return ctx

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Guest:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, before_boot: Callable[[QMP], Any] | None = None) -> None:
        """Launch QEMU, connect QMP and the console, and wait for a shell.

        A ``paused`` spec starts with ``-S``: *before_boot* then gets the QMP
        client while the guest has not run a single instruction (an SEV guest
        waits in state ``launch-secret``: the guest owner measures it and
        injects secrets here), and the guest is continued afterwards unless
        *before_boot* did so itself (QEMUMachine's pre/post launch steps)."""
        deadline = Deadline(self.spec.boot_timeout)
        ser_ours, ser_qemu = socket.socketpair()
        qmp_ours, qmp_qemu = socket.socketpair()
        try:
            fw = self.spec.firmware
            vars_path, _ = vars_store(fw, self.workdir / "OVMF_VARS.fd")
            self.argv = build_argv(self.spec, qemu=self.qemu, accel=self.accel.name,
                                   qemu_version=qemu_version(self.qemu)[:2],
                                   serial_fd=ser_qemu.fileno(), qmp_fd=qmp_qemu.fileno(),
                                   vars_path=vars_path)
            try:
                (self.workdir / "qemu-argv.txt").write_text("\n".join(self.argv) + "\n")
            except OSError as exc:  # a full log disk must not stop the guest
                log.warning("%s: cannot write %s: %s", self.spec.name, self.workdir, exc.strerror)
            self.process = QemuProcess(self.argv, name=self.spec.name, cwd=self.workdir,
                                       output=self.logs["qemu stderr"],
                                       pass_fds=(ser_qemu.fileno(), qmp_qemu.fileno()))
            self.process.on_stage = self._stop_stage_seen
            self.process.start()
            dead_shell = [FRESH_SHELL_PROMPT]
            if self.spec.login:
                dead_shell.append(self.spec.login.login_prompt.encode())
            self.console = Console(ser_ours, self.logs["console log"], self._context,
                                   name=self.spec.name, dead_shell=dead_shell,
                                   frozen=self.process.frozen)
            self.qmp = QMP(qmp_ours, self.logs["qmp transcript"], name=self.spec.name,
                           context=self._context, frozen=self.process.frozen)
        except BaseException:
            if self.console is None:
                ser_ours.close()
            if self.qmp is None:
                qmp_ours.close()
            raise
        finally:  # QEMU holds its own copies now (or never will)
            ser_qemu.close()
            qmp_qemu.close()
        try:
            self.qmp.connect(timeout=30)
        except Exception as exc:
            self.process.wait(0.2)
            exhausted = asid_exhaustion(self.process.output_tail(4000))
            if exhausted:
                raise GuestLaunchError(exhausted, argv=self.argv, logs=self.logs,
                                       detail=self.process.output_tail()) from None
            raise GuestLaunchError(f"QEMU's monitor did not answer: {exc!r}",
                                   argv=self.argv, logs=self.logs,
                                   detail=self._context().get("exit", "") or self.process.output_tail()) from None
        if self.spec.paused:
            if before_boot is not None:
                before_boot(self.qmp)
            if self.qmp.execute("query-status").get("status") in ("prelaunch", "paused"):
                self.qmp.execute("cont")
        elif before_boot is not None:
            raise GuestLaunchError("a before-boot step needs a paused spec (paused=True): the guest is already running",
                                   argv=self.argv, logs=self.logs)
        self._wait_boot(deadline)
        self.boot_seconds = deadline.elapsed
        log.info("%s: booted in %.1f s (%s)", self.spec.name, self.boot_seconds, self.accel.name)

    def _wait_boot(self, deadline: Deadline) -> None:
        spec, con = self.spec, self._con

        def left() -> float:
            return deadline.remaining(floor=1.0)

        if spec.boot_entry:
            from pytest_sev.console.grub import choose_entry  # only disk-image guests need it
            choose_entry(con, spec.boot_entry, left)
        if spec.login:
            # a prompt ends its line without a newline: $ anchors at the end of what arrived
            pats: list[Any] = [re.compile(spec.login.login_prompt.encode(), re.M), PANIC]
            if con.expect(pats, left(), "the login prompt") == 1:
                self._panicked("boot")
            con.sendline(spec.login.user)
            con.expect(spec.login.password_prompt.encode(), left(), "the password prompt")
            con.sendline(spec.login.password)
        else:
            if con.expect([spec.ready_pattern.encode(), PANIC], left(),
                          f"the guest to boot (/{spec.ready_pattern}/ on the console)") == 1:
                self._panicked("boot")
        if isinstance(con, Console):  # kernel messages off in the same round trip
            con.sync(left(), quiet_kernel=self.quiet_console)
        else:
            con.sync(left())
            if self.quiet_console:
                self.run("dmesg -n 1", timeout=left())

    @property
    def _con(self) -> ConsoleLike:
        if self.console is None:
            raise GuestError(f"guest {self.spec.name} was never started", argv=self.argv)
        return self.console

    def _panicked(self, when: str) -> None:
        try:  # the trace that follows a panic() call: read on briefly
            self._con.expect([rb"---\[ end Kernel panic[^\n]*"], 3, "the end of the panic")
        except GuestError:
            pass
        text = self._con.tail(20000)
        line = panic_line(text) or self._con.match.group(0).decode(errors="replace")
        head = trace_head(text)
        self.mark_unusable(f"its kernel panicked during {when}: {line}")
        raise GuestPanicked(f"guest kernel panicked during {when}: {line}",
                            detail=("--- oops head ---\n" + head) if head else "",
                            console_tail=self._con.tail(), argv=self.argv, logs=self.logs)

    # -- use -----------------------------------------------------------------
    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        """Run *cmd* in the guest shell: (stdout+stderr, exit status).

        Any failure while the command runs (a timeout, pytest-timeout, Ctrl-C,
        a dead shell, a panic) leaves the guest unusable: the shell may still
        be running the command, so nothing it answers later can be trusted."""
        if self.unusable:
            if self.process is not None and self.boot_seconds is not None and not self.alive:
                # QEMU died before the command: the same named failure as dying during it
                raise GuestDied(f"QEMU exited before command {cmd[:120]!r} ({self.process.describe_exit()})",
                                argv=self.argv, logs=self.logs, detail=f"guest {self.spec.name}: {self.unusable}")
            raise GuestUnusable(f"guest {self.spec.name} is unusable: {self.unusable}",
                                argv=self.argv, logs=self.logs,
                                detail=f"refused to run {cmd[:120]!r}")
        self._shell_busy = True
        try:
            out = self._con.run(cmd, timeout)
        except BaseException as exc:
            first = (str(exc).splitlines() or [""])[0]
            self.mark_unusable(f"{type(exc).__name__} during command {cmd[:120]!r}: {first}")
            raise
        self._shell_busy = False
        return out

    def mark_unusable(self, why: str) -> None:
        """Say (once) why this guest must not be used any more."""
        if self._unusable is None:
            self._unusable = why
            self.note(f"unusable: {why}")

    @property
    def unusable(self) -> str | None:
        """Why this guest cannot be used any more (None while it can)."""
        if self._unusable is None and self.qmp is not None and self.qmp.lost_reason:
            self.mark_unusable(self.qmp.lost_reason)
        if self._unusable is None and self.process is not None and not self.alive \
                and self.boot_seconds is not None:
            self.mark_unusable(f"QEMU exited ({self.process.describe_exit()})")
        return self._unusable

    def check(self, cmd: str, timeout: float = 60.0) -> str:
        """Like :meth:`run` but a non-zero exit status is an error."""
        out, status = self.run(cmd, timeout)
        if status != 0:
            raise GuestError(f"guest command {cmd!r} exited {status}", detail=out[-2000:],
                             console_tail=self._con.tail(), argv=self.argv, logs=self.logs)
        return out

    def kernel_log(self) -> str:
        return self.run("dmesg", timeout=60)[0]

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.alive

    @property
    def responsive(self) -> bool:
        """Booted, running, and usable (its shell not stuck in a command that
        timed out, not dead, the console in step)."""
        return (self.alive and self.boot_seconds is not None and not self._shell_busy
                and self.unusable is None)

    def frozen(self) -> str | None:
        """Why QEMU cannot answer although it runs (stopped), or None; the
        libvirt launcher finds its QEMU another way and says it alike."""
        return self.process.frozen() if self.process is not None else None

    def healthy(self, qmp_timeout: float = QMP_STOP_TIMEOUT) -> bool:
        """Responsive, QEMU not stopped, and its monitor answers within
        *qmp_timeout*: worth asking for evidence or another test.  A QEMU
        that does not answer is marked unusable (QMP lost)."""
        if not self.responsive or self.qmp is None:
            return False
        frozen = self.frozen()
        if frozen:
            self.mark_unusable(frozen)
            return False
        try:
            self.qmp.execute("query-status", timeout=qmp_timeout)
        except Exception:  # noqa: BLE001 - QMPLost or a refusal: not healthy either way
            return False
        return self.responsive

    # -- teardown ------------------------------------------------------------
    def _stop_stage_seen(self, stage: str, outcome: str) -> None:
        self.note(f"stop stage {stage}: {outcome}")
        if self.qmp is not None:
            self.qmp.note({"stop-stage": stage, "outcome": outcome})

    def _stop_stages(self) -> list[StopStage]:
        stages = []
        console, qmp = self.console, self.qmp
        if self.responsive and console is not None and qmp is not None:
            def poweroff() -> None:
                # a QEMU that does not answer its monitor is frozen: kill it
                qmp.execute("query-status", timeout=QMP_STOP_TIMEOUT)
                console.sendline("poweroff -f")
            stages.append(StopStage("guest poweroff", poweroff, 3, kill_if_fails=True))
        if qmp is not None:
            stages.append(StopStage("qmp quit", lambda: qmp.execute("quit", timeout=QMP_STOP_TIMEOUT),
                                    2, kill_if_fails=True))
        return stages

    def close(self) -> None:
        """Stop QEMU in stages and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.process is not None:
                self.process.stop(self._stop_stages())
        finally:
            for part in (self.console, self.qmp):
                if part is not None:
                    part.close()
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["Guest", "GuestError", "GuestFrozen", "GuestTimeout", "GuestUnusable", "QMPLost", "new_log_dir"]
