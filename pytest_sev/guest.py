"""A QEMU guest you can trust to answer truthfully and to go away.

:class:`Guest` starts QEMU from an argv list (never a shell), with the serial
console and QMP each on a socketpair, waits for the guest to boot (optionally
through a boot menu and a login), runs framed commands on its shell, and
shuts it down in stages on every path: guest ``poweroff``, QMP ``quit``,
SIGTERM, SIGKILL.  QEMU also gets ``PR_SET_PDEATHSIG`` so it cannot outlive a
harness that is killed outright.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .accel import AccelChoice, choose_accel
from .argv import build_argv
from .console import Console
from .errors import GuestError, GuestLaunchError, GuestTimeout
from .qemu_binary import qemu_version, resolve_qemu
from .qmp import QMP
from .spec import GuestSpec

PANIC = rb"Kernel panic - not syncing[^\r\n]*"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class Guest:
    """Context manager around one QEMU process; see the module docstring."""

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
        self.proc: subprocess.Popen | None = None
        self.console: Console | None = None
        self.qmp: QMP | None = None
        self.boot_seconds: float | None = None
        self.shutdown_stage: str | None = None
        self._shell_busy = False
        self._closed = False

    # -- paths ---------------------------------------------------------------
    @property
    def logs(self) -> dict[str, Path]:
        return {"console log": self.workdir / "console.log",
                "qemu stderr": self.workdir / "qemu-stderr.log",
                "qmp transcript": self.workdir / "qmp.jsonl"}

    def _context(self, exited: bool = False) -> dict:
        ctx: dict = {"argv": self.argv, "logs": self.logs}
        if exited and self.proc is not None:
            try:  # the console saw EOF: give QEMU a moment to be reaped
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is not None:
            ctx["exit"] = f"QEMU exit status {self.proc.returncode}; stderr: {self._stderr_tail()}"
        return ctx

    def _stderr_tail(self, n: int = 1500) -> str:
        try:
            return self.logs["qemu stderr"].read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self) -> "Guest":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _vars_file(self) -> Path | None:
        fw = self.spec.firmware
        if fw.kind != "ovmf":
            return None
        target = fw.vars_path or self.workdir / "OVMF_VARS.fd"
        if not target.exists():  # made once, then reused (launch-qemu.sh's IMAGE.fd)
            shutil.copyfile(fw.vars_template, target)
        return target

    def start(self) -> None:
        """Launch QEMU, connect QMP and the console, and wait for a shell."""
        started = time.monotonic()
        ser_ours, ser_qemu = socket.socketpair()
        qmp_ours, qmp_qemu = socket.socketpair()
        try:
            self.argv = build_argv(self.spec, qemu=self.qemu, accel=self.accel.name,
                                   qemu_version=qemu_version(self.qemu)[:2],
                                   serial_fd=ser_qemu.fileno(), qmp_fd=qmp_qemu.fileno(),
                                   vars_path=self._vars_file())
            (self.workdir / "qemu-argv.txt").write_text("\n".join(self.argv) + "\n")
            with open(self.logs["qemu stderr"], "ab") as err:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                    pass_fds=(ser_qemu.fileno(), qmp_qemu.fileno()),
                    preexec_fn=_die_with_parent, cwd=self.workdir)
        except BaseException:
            ser_ours.close()
            qmp_ours.close()
            raise
        finally:  # QEMU holds its own copies now (or never will)
            ser_qemu.close()
            qmp_qemu.close()
        self.console = Console(ser_ours, self.logs["console log"], self._context)
        self.qmp = QMP(qmp_ours, self.logs["qmp transcript"])
        try:
            self.qmp.connect(timeout=30)
        except Exception as exc:
            time.sleep(0.2)
            raise GuestLaunchError(f"QEMU's monitor did not answer: {exc!r}",
                                   argv=self.argv, logs=self.logs,
                                   detail=self._context().get("exit", "") or self._stderr_tail())
        self._wait_boot()
        self.boot_seconds = time.monotonic() - started

    def _wait_boot(self) -> None:
        spec, con = self.spec, self.console
        deadline = time.monotonic() + spec.boot_timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        if spec.boot_entry:
            self._choose_boot_entry(left)
        if spec.login:
            # a prompt ends its line without a newline: $ anchors at the end of what arrived
            pats = [re.compile(spec.login.login_prompt.encode(), re.M), PANIC]
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

    def _choose_boot_entry(self, left) -> None:
        """Walk a GRUB menu over serial down to the entry matching boot_entry."""
        from .grubmenu import choose_entry  # only disk-image guests need it
        choose_entry(self.console, self.spec.boot_entry, left)

    def _panicked(self, when: str) -> None:
        line = self.console.match.group(0).decode(errors="replace")
        raise GuestError(f"guest kernel panicked during {when}: {line}",
                         console_tail=self.console.tail(), argv=self.argv, logs=self.logs)

    # -- use -----------------------------------------------------------------
    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        """Run *cmd* in the guest shell: (stdout+stderr, exit status)."""
        self._shell_busy = True
        out = self.console.run(cmd, timeout)
        self._shell_busy = False
        return out

    def check(self, cmd: str, timeout: float = 60.0) -> str:
        """Like :meth:`run` but a non-zero exit status is an error."""
        out, status = self.run(cmd, timeout)
        if status != 0:
            raise GuestError(f"guest command {cmd!r} exited {status}", detail=out[-2000:],
                             console_tail=self.console.tail(), argv=self.argv, logs=self.logs)
        return out

    def kernel_log(self) -> str:
        return self.run("dmesg", timeout=60)[0]

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def responsive(self) -> bool:
        """Booted, running, and its shell not stuck in a command that timed out."""
        return self.alive and self.boot_seconds is not None and not self._shell_busy

    # -- teardown ------------------------------------------------------------
    def _wait_exit(self, seconds: float) -> bool:
        try:
            self.proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        """Stop QEMU in stages and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.responsive and self.console is not None:
                try:
                    self.console.sendline("poweroff -f")
                except OSError:
                    pass
                if self._wait_exit(5):
                    self.shutdown_stage = "guest poweroff"
            if self.alive and self.qmp is not None:
                try:
                    self.qmp.execute("quit")
                except Exception:  # the monitor may already be gone
                    pass
                if self._wait_exit(5):
                    self.shutdown_stage = "qmp quit"
            if self.alive:
                self.proc.terminate()
                if self._wait_exit(5):
                    self.shutdown_stage = "SIGTERM"
            if self.alive:
                self.proc.kill()
                self.proc.wait()
                self.shutdown_stage = "SIGKILL"
            if self.proc is not None and self.shutdown_stage is None:
                self.shutdown_stage = "exited by itself"
        finally:
            if self.alive:  # interrupted above: never leave QEMU behind
                self.proc.kill()
                self.proc.wait()
            for part in (self.console, self.qmp):
                if part is not None:
                    part.close()
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


__all__ = ["Guest", "GuestError", "GuestTimeout"]
