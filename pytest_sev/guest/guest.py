"""A QEMU guest you can trust to answer truthfully and to go away.

:class:`Guest` renders its spec to an argv (:mod:`pytest_sev.qemu.argv`),
starts it with the one launcher (:mod:`pytest_sev.qemu.process`) with the
serial console and QMP each on a socketpair, waits for the guest to boot
(optionally through a boot menu and a login) within one deadline, runs framed
commands on its shell, and shuts it down in stages on every path: guest
``poweroff``, QMP ``quit``, SIGTERM, SIGKILL.

Logs (``logging.getLogger(__name__)``): INFO tells the guest's life (argv,
boot time, the stop stage that ended it), DEBUG its console and QMP traffic.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from pytest_sev.console.protocol import ConsoleLike
from pytest_sev.console.serial import Console
from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestError, GuestLaunchError, GuestTimeout
from pytest_sev.guest.budget import asid_exhaustion
from pytest_sev.guest.spec import GuestSpec
from pytest_sev.qemu.accel import AccelChoice, choose_accel
from pytest_sev.qemu.argv import build_argv
from pytest_sev.qemu.binary import qemu_version, resolve_qemu
from pytest_sev.qemu.firmware import vars_store
from pytest_sev.qemu.process import QemuProcess, StopStage
from pytest_sev.qemu.qmp import QMP

log = logging.getLogger(__name__)

PANIC = rb"Kernel panic - not syncing[^\r\n]*"


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

    # -- paths ---------------------------------------------------------------
    @property
    def logs(self) -> dict[str, Path]:
        return {"console log": self.workdir / "console.log",
                "qemu stderr": self.workdir / "qemu-stderr.log",
                "qmp transcript": self.workdir / "qmp.jsonl"}

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

    def start(self) -> None:
        """Launch QEMU, connect QMP and the console, and wait for a shell."""
        deadline = Deadline(self.spec.boot_timeout)
        ser_ours, ser_qemu = socket.socketpair()
        qmp_ours, qmp_qemu = socket.socketpair()
        try:
            fw = self.spec.firmware
            vars_path, _ = vars_store(fw.kind, fw.vars_template, fw.vars_path,
                                      self.workdir / "OVMF_VARS.fd")
            self.argv = build_argv(self.spec, qemu=self.qemu, accel=self.accel.name,
                                   qemu_version=qemu_version(self.qemu)[:2],
                                   serial_fd=ser_qemu.fileno(), qmp_fd=qmp_qemu.fileno(),
                                   vars_path=vars_path)
            (self.workdir / "qemu-argv.txt").write_text("\n".join(self.argv) + "\n")
            self.process = QemuProcess(self.argv, name=self.spec.name, cwd=self.workdir,
                                       output=self.logs["qemu stderr"],
                                       pass_fds=(ser_qemu.fileno(), qmp_qemu.fileno()))
            self.process.start()
            self.console = Console(ser_ours, self.logs["console log"], self._context,
                                   name=self.spec.name)
            self.qmp = QMP(qmp_ours, self.logs["qmp transcript"], name=self.spec.name)
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
        con.sync(left())
        if self.quiet_console:
            self.run("dmesg -n 1", timeout=left())

    @property
    def _con(self) -> ConsoleLike:
        if self.console is None:
            raise GuestError(f"guest {self.spec.name} was never started", argv=self.argv)
        return self.console

    def _panicked(self, when: str) -> None:
        con = self.console
        assert con is not None, "a panic is only seen on a console"
        line = con.match.group(0).decode(errors="replace")
        raise GuestError(f"guest kernel panicked during {when}: {line}",
                         console_tail=con.tail(), argv=self.argv, logs=self.logs)

    # -- use -----------------------------------------------------------------
    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        """Run *cmd* in the guest shell: (stdout+stderr, exit status)."""
        self._shell_busy = True
        out = self._con.run(cmd, timeout)
        self._shell_busy = False
        return out

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
        """Booted, running, and its shell not stuck in a command that timed out."""
        return self.alive and self.boot_seconds is not None and not self._shell_busy

    # -- teardown ------------------------------------------------------------
    def _stop_stages(self) -> list[StopStage]:
        stages = []
        console, qmp = self.console, self.qmp
        if self.responsive and console is not None:
            stages.append(StopStage("guest poweroff", lambda: console.sendline("poweroff -f"), 5))
        if qmp is not None:
            stages.append(StopStage("qmp quit", lambda: qmp.execute("quit"), 5))
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


__all__ = ["Guest", "GuestError", "GuestTimeout"]
