"""A guest launched through libvirtd: the same interface as the QEMU launcher's.

:class:`LibvirtGuest` renders its spec to a domain (:mod:`.domain_xml`),
creates it as a *transient* domain (``createXML``, started paused), opens
the serial console's pty before the first instruction runs, resumes it and
then behaves exactly like :class:`~pytest_sev.guest.guest.Guest` (whose
boot, command and console code it reuses): the console is the same
:class:`~pytest_sev.console.serial.Console` (pexpect on the pty), QMP goes
through libvirt's monitor passthrough (``qemuMonitorCommand``) with the
same ``execute(cmd, **args)`` and the same ``ExecuteError`` on a QMP error.
Every witness and the DMA runner therefore run unchanged on it.

Stop, on every path: guest ``poweroff``, ``virDomainDestroy`` (libvirt's
SIGTERM then SIGKILL), and when libvirtd itself is gone, SIGKILL to the
QEMU pid libvirt recorded.  A transient domain disappears from libvirt
with its QEMU, so nothing stays defined.  ``argv`` is the QEMU command line
libvirt generated (read from ``/proc``), ``logs["qemu stderr"]`` a copy of
libvirt's per-domain QEMU log.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import threading
import time
import tty
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from qemu.qmp import ExecuteError
from qemu.qmp.message import Message
from qemu.qmp.models import ErrorResponse

from pytest_sev.console.serial import Console
from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestDied, GuestFrozen, GuestLaunchError, QMPLost
from pytest_sev.guest.guest import Guest
from pytest_sev.libvirt import connection as lv
from pytest_sev.libvirt.domain_xml import (
    KERNEL_HASHES_SINCE,
    DomainOptions,
    check_snp_libvirt,
    domain_name,
    domain_xml,
)
from pytest_sev.model.spec import GuestSpec
from pytest_sev.qemu import qmp as qemu_qmp
from pytest_sev.qemu.accel import AccelChoice
from pytest_sev.qemu.firmware import vars_store
from pytest_sev.qemu.process import frozen_state
from pytest_sev.sidelog import SideLog

log = logging.getLogger(__name__)

STOPPED = "exited by itself"


class PtyEnd:
    """Our end of the domain's serial pty, shaped like the socket Console takes
    (it only asks for ``fileno()`` and ``close()``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        tty.setraw(self._fd)  # no echo back to the guest, no line buffering, bytes as they are

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1


class PtyConsole(Console):
    """The serial console on the domain's pty.

    One difference from a socketpair: once QEMU has closed the pty's master,
    a write fails with EIO instead of vanishing into a socket buffer. The
    bytes have nowhere to go either way; the wait that follows sees the end
    of the console and raises GuestDied naming what it waited for."""

    def send(self, data: str | bytes) -> None:
        try:
            super().send(data)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            log.info("console: QEMU closed the pty; the next wait reports it")


class _Frozen(Exception):
    """QEMU was found stopped while libvirt waited for its reply (internal)."""


class _NoAnswer(Exception):
    """No reply within the caller's timeout (internal)."""


class LibvirtQmp:
    """QMP through ``virDomainQemuMonitorCommand``: ``execute`` like :class:`~pytest_sev.qemu.qmp.QMP`.

    A QMP error reply raises ``qemu.qmp.ExecuteError`` (``error_class``,
    ``str()`` is QEMU's ``desc``), as the QEMU launcher's client does; a
    libvirt that no longer answers raises
    :class:`~pytest_sev.libvirt.connection.LibvirtConnectionLost`; a domain
    that is gone raises :class:`~pytest_sev.errors.GuestDied`.

    Given ``frozen`` (the guest's :meth:`LibvirtGuest.frozen`), libvirt's call
    runs in a thread and is waited for in slices of the QEMU launcher's
    :data:`~pytest_sev.qemu.qmp.WATCH_EVERY`, QEMU's process state looked at
    between them: a stopped QEMU (libvirt would wait for it for ever) is
    :class:`~pytest_sev.errors.GuestFrozen` naming the state within about a
    second, and a *timeout* that runs out is
    :class:`~pytest_sev.errors.QMPLost`.  The abandoned call ends when QEMU
    runs again or is destroyed.
    """

    def __init__(self, guest: LibvirtGuest, transcript_path: Path | None, name: str,
                 frozen: Callable[[], str | None] | None = None) -> None:
        self._guest = guest
        self.name = name
        self.frozen = frozen
        self.transcript_path = transcript_path
        self._transcript = SideLog(transcript_path, "QMP transcript", name)
        self.last_command: str | None = None
        #: why this monitor cannot answer any more (libvirtd or the domain gone), as QMP's
        self.lost_reason: str | None = None

    def _record(self, cmd: str, args: dict[str, Any] | None, reply: Any, error: str | None) -> None:
        entry: dict[str, Any] = {"time": round(time.time(), 3), "execute": cmd, "via": "libvirt"}
        if args:
            entry["arguments"] = args
        entry["error" if error is not None else "return"] = error if error is not None else reply
        line = json.dumps(entry, default=str)
        log.debug("%s: qmp %s", self.name, line)
        self._transcript.write(line + "\n")

    def execute(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Run *cmd*; its ``return`` value.  *timeout* (seconds) bounds the
        wait only where QEMU's state is watched (``frozen`` given); else
        libvirt's own waiting decides."""
        self.last_command = cmd
        sent: dict[str, Any] = {"execute": cmd}
        if args:
            sent["arguments"] = args
        try:
            text = self._call(json.dumps(sent), cmd, timeout)
        except _Frozen as exc:
            self._record(cmd, args, None, f"GuestFrozen: {exc}")
            self.lost_reason = f"{exc} (no answer to QMP {cmd!r})"
            raise self._error(GuestFrozen, f"{exc}: no answer to QMP {cmd!r}") from None
        except _NoAnswer as exc:
            self._record(cmd, args, None, f"no answer within {exc}s")
            self.lost_reason = f"QMP lost: no answer to {cmd!r} within {exc}s (through libvirt)"
            raise self._error(QMPLost, self.lost_reason) from None
        except Exception as exc:
            self._record(cmd, args, None, f"{type(exc).__name__}: {exc}")
            self.lost_reason = f"QMP lost: {type(exc).__name__} from libvirt while sending {cmd!r}: {exc}"
            raise
        reply = json.loads(text)
        if "error" in reply:
            err = reply["error"]
            self._record(cmd, args, None, f"{err.get('class')}: {err.get('desc')}")
            raise ExecuteError(ErrorResponse(reply), Message(sent), Message(reply))
        self._record(cmd, args, reply.get("return"), None)
        return reply.get("return")

    def _call(self, text: str, cmd: str, timeout: float | None) -> str:
        """libvirt's monitor call; watched (see the class) when ``frozen`` is given."""
        if self.frozen is None:
            return self._guest.monitor_command(text)
        why = self.frozen()
        if why:  # do not leave a call waiting inside libvirt on a QEMU already stopped
            raise _Frozen(why)
        box: dict[str, Any] = {}

        def call() -> None:
            try:
                box["reply"] = self._guest.monitor_command(text)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=call, name=f"{self.name} QMP {cmd}", daemon=True)
        worker.start()
        deadline = Deadline(timeout) if timeout is not None else None
        while True:
            wait = qemu_qmp.WATCH_EVERY if deadline is None else min(qemu_qmp.WATCH_EVERY, deadline.remaining())
            worker.join(wait)
            if not worker.is_alive():
                break
            why = self.frozen()
            if why:
                raise _Frozen(why)
            if deadline is not None and deadline.expired:
                raise _NoAnswer(f"{timeout:g}")
        if "error" in box:
            raise box["error"]
        return str(box["reply"])

    def _error(self, cls: type[GuestFrozen] | type[QMPLost], what: str) -> GuestFrozen | QMPLost:
        ctx = self._guest._context()
        logs = dict(ctx.get("logs", {}))
        if self.transcript_path is not None:
            logs.setdefault("qmp transcript", self.transcript_path)
        return cls(what, argv=ctx.get("argv", ()), logs=logs,
                   detail=f"last QMP command: {self.last_command} (through libvirt, domain "
                          f"{self._guest.domain_name})")

    def events(self) -> list[dict[str, Any]]:
        return []  # libvirt consumes QEMU's events itself

    def close(self) -> None:
        self._transcript.close()


class LibvirtGuest(Guest):
    """A :class:`~pytest_sev.guest.guest.Guest` whose QEMU libvirtd starts."""

    def __init__(self, spec: GuestSpec, *, uri: str = lv.DEFAULT_URI, qemu: str = "qemu-system-x86_64",
                 accel: str | AccelChoice = "auto", workdir: Path | None = None,
                 keep_workdir: bool = False, quiet_console: bool = True,
                 kernel_hashes: bool | None = None) -> None:
        super().__init__(spec, qemu=qemu, accel=accel, workdir=workdir,
                         keep_workdir=keep_workdir, quiet_console=quiet_console)
        self.uri = uri
        self.kernel_hashes = kernel_hashes
        self.domain_name = domain_name(spec, uuid.uuid4().hex[:8])
        self.conn: Any = None
        self.dom: Any = None
        self.qemu_pid: int | None = None
        self.xml: str = ""
        self.stop_log: list[tuple[str, str]] = []
        self._stop_stage: str | None = None
        self._pty: PtyEnd | None = None

    # -- paths and state -----------------------------------------------------------
    @property
    def logs(self) -> dict[str, Path]:
        return {**super().logs, "domain xml": self.workdir / "domain.xml"}

    @property
    def shutdown_stage(self) -> str | None:
        return self._stop_stage

    @property
    def alive(self) -> bool:
        if self.qemu_pid is not None:
            return lv.pid_alive(self.qemu_pid)
        if self.dom is None:  # never created
            return False
        try:  # no pid file to read (another URI): ask libvirt
            return bool(self.dom.isActive())
        except Exception:
            return False

    def _context(self, exited: bool = False) -> dict[str, Any]:
        ctx: dict[str, Any] = {"argv": self.argv, "logs": self.logs}
        if exited and self.qemu_pid is not None:
            deadline = Deadline(3)
            while self.alive and not deadline.expired:
                time.sleep(0.05)
        if self.qemu_pid is not None and not self.alive:
            ctx["exit"] = f"libvirt domain {self.domain_name}: QEMU (pid {self.qemu_pid}) is gone; " \
                          f"libvirt's QEMU log: {self._qemu_log_tail()}"
        return ctx

    def frozen(self) -> str | None:
        """Why the domain's QEMU cannot answer although it runs (stopped:
        SIGSTOP, a debugger), or None, as :meth:`QemuProcess.frozen
        <pytest_sev.qemu.process.QemuProcess.frozen>` says it for the QEMU
        launcher; the console and QMP ask it once per second of a wait.  The
        pid is libvirt's (:func:`~pytest_sev.libvirt.connection.domain_qemu_pid`):
        one that cannot be read, or is not this domain's QEMU, is None (not
        known to be frozen), never a false alarm."""
        if self.dom is None:
            return None
        return frozen_state(lv.domain_qemu_pid(self.domain_name, recorded=self.qemu_pid))

    def _qemu_log_tail(self, nbytes: int = 1500) -> str:
        try:
            return lv.qemu_log(self.domain_name).read_text(errors="replace")[-nbytes:].strip()
        except OSError:
            return "(not readable)"

    # -- libvirt calls -----------------------------------------------------------
    def _lost(self, what: str, exc: Exception) -> lv.LibvirtConnectionLost:
        return lv.LibvirtConnectionLost(
            f"libvirtd stopped answering while {what}: {exc}", argv=self.argv, logs=self.logs,
            console_tail=self.console.tail() if self.console is not None else "",
            detail=f"domain {self.domain_name}, QEMU pid {self.qemu_pid} "
                   f"({'still running' if self.alive else 'gone'}); libvirtd "
                   f"{'answers' if lv.daemon_answers() else 'does not answer'} on {lv.SYSTEM_SOCKET}")

    def _connection_alive(self) -> bool:
        try:
            return bool(self.conn is not None and self.conn.isAlive() and lv.daemon_answers())
        except Exception:
            return False

    def monitor_command(self, text: str) -> str:
        """One QMP command through libvirt; named errors when libvirt or QEMU is gone."""
        libvirt = lv.libvirt_module()
        import libvirt_qemu
        if self.dom is None:
            raise GuestDied(f"guest {self.spec.name} has no libvirt domain (never started)", argv=self.argv)
        try:
            return str(libvirt_qemu.qemuMonitorCommand(self.dom, text, 0))
        except libvirt.libvirtError as exc:
            if not self._connection_alive():
                raise self._lost(f"QMP {text[:80]} was sent through it", exc) from None
            if not self.alive:
                raise GuestDied(f"QEMU of domain {self.domain_name} is gone: QMP {text[:80]} failed: {exc}",
                                argv=self.argv, logs=self.logs,
                                detail=self._context(exited=True).get("exit", "")) from None
            raise lv.LibvirtError(f"libvirt refused QMP {text[:80]}: {exc}") from None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, before_boot: Callable[[Any], Any] | None = None) -> None:
        """Create the transient domain paused, attach console and QMP, resume, wait for a shell.

        The domain is always created paused; *before_boot* (a paused spec's,
        as for :meth:`Guest.start`) gets the monitor before the first
        instruction: the guest owner measures the launch and injects its
        secret there (the owner's session is in ``<launchSecurity>``)."""
        if before_boot is not None and not self.spec.paused:
            raise GuestLaunchError("a before-boot step needs a paused spec (paused=True)",
                                   argv=self.argv, logs=self.logs)
        deadline = Deadline(self.spec.boot_timeout)
        libvirt = lv.libvirt_module()
        self.conn = lv.connect(self.uri)
        check_snp_libvirt(self.spec, lv.version_number(self.conn))  # before any domain: one line naming both versions
        lv.sweep_orphans(self.conn)
        fw = self.spec.firmware
        vars_path, _ = vars_store(fw, self.workdir / "OVMF_VARS.fd")
        kernel_hashes = self.kernel_hashes
        if kernel_hashes is None and self.spec.sev is not None and self.spec.sev.kernel_hashes:
            kernel_hashes = True  # the spec asks for an attested -kernel launch
        if kernel_hashes is not None and lv.version_number(self.conn) < KERNEL_HASHES_SINCE:
            log.info("%s: libvirt < 8.0 has no kernelHashes: left out", self.spec.name)
            kernel_hashes = None
        sev = self.spec.sev
        owner = ((sev.dh_cert_file.read_text(), sev.session_file.read_text())
                 if sev is not None and sev.dh_cert_file is not None and sev.session_file is not None
                 else (None, None))
        self.xml = domain_xml(self.spec, DomainOptions(
            name=self.domain_name, domain_type="kvm" if self.accel.name == "kvm" else "qemu",
            emulator=self.qemu, nvram=vars_path, kernel_hashes=kernel_hashes, owner_pid=os.getpid(),
            dh_cert=owner[0], session=owner[1]))
        self.logs["domain xml"].write_text(self.xml)
        log.info("%s: creating libvirt domain %s (%s)", self.spec.name, self.domain_name, self.uri)
        try:
            self.dom = self.conn.createXML(self.xml, libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            if not self._connection_alive():
                raise self._lost("the domain was created", exc) from None
            raise GuestLaunchError(f"libvirt could not start domain {self.domain_name}: {exc}",
                                   logs=self.logs, detail=self._qemu_log_tail()) from None
        self.qemu_pid = lv.qemu_pid(self.domain_name)
        self.argv = lv.process_argv(self.qemu_pid) if self.qemu_pid else []
        (self.workdir / "qemu-argv.txt").write_text("\n".join(self.argv) + "\n")
        log.info("%s: libvirt started QEMU pid %s: %s", self.spec.name, self.qemu_pid, " ".join(self.argv))
        pty = serial_pty(self.dom.XMLDesc(0))
        if pty is None:
            raise GuestLaunchError(f"domain {self.domain_name} has no serial pty in its live XML",
                                   argv=self.argv, logs=self.logs)
        self._pty = PtyEnd(pty)
        self.console = PtyConsole(cast(Any, self._pty), self.logs["console log"], self._context,
                                  name=self.spec.name, frozen=self.frozen)
        self.qmp = cast(Any, LibvirtQmp(self, self.logs["qmp transcript"], self.spec.name, frozen=self.frozen))
        assert self.qmp is not None
        if before_boot is not None:
            before_boot(self.qmp)
        status = self.qmp.execute("query-status")
        log.debug("%s: before resume: %s", self.spec.name, status)
        if not status.get("running"):  # else the before-boot step sent cont itself
            try:
                self.dom.resume()
            except libvirt.libvirtError as exc:
                if not self._connection_alive():
                    raise self._lost("the domain was resumed", exc) from None
                raise GuestLaunchError(f"libvirt could not resume domain {self.domain_name}: {exc}",
                                       argv=self.argv, logs=self.logs, detail=self._qemu_log_tail()) from None
        self._wait_boot(deadline)
        self.boot_seconds = deadline.elapsed
        log.info("%s: booted in %.1f s through libvirt (%s, domain type %s)", self.spec.name,
                 self.boot_seconds, self.accel.name, "kvm" if self.accel.name == "kvm" else "qemu")

    # -- teardown ------------------------------------------------------------------
    def _gone(self, grace: float) -> bool:
        deadline = Deadline(grace)
        while self.alive and not deadline.expired:
            time.sleep(0.05)
        return not self.alive

    def _stop(self) -> str:
        libvirt = lv.libvirt_module()
        if self.dom is None:
            return "never started"
        if not self.alive:
            self.stop_log.append((STOPPED, "QEMU had already exited"))
            return STOPPED
        console = self.console
        if self.responsive and console is not None:
            try:
                console.sendline("poweroff -f")
                if self._gone(5):
                    self.stop_log.append(("guest poweroff", "ended it"))
                    return "guest poweroff"
                self.stop_log.append(("guest poweroff", "still running after 5s"))
            except Exception as exc:
                self.stop_log.append(("guest poweroff", f"failed: {type(exc).__name__}: {exc}"))
        for attempt in ("virDomainDestroy", "virDomainDestroy (reconnected)"):
            try:
                if attempt.endswith("(reconnected)"):
                    if not lv.daemon_answers():
                        self.stop_log.append((attempt, "failed: libvirtd does not answer"))
                        break
                    self.conn = lv.connect(self.uri)
                    self.dom = self.conn.lookupByName(self.domain_name)
                if self.dom is not None:
                    self.dom.destroy()
                if self._gone(10):
                    self.stop_log.append((attempt, "ended it"))
                    return attempt
                self.stop_log.append((attempt, "still running after 10s"))
            except (libvirt.libvirtError, lv.LibvirtUnavailable) as exc:
                if not self.alive:
                    self.stop_log.append((attempt, "ended it (libvirt reported it gone)"))
                    return attempt
                self.stop_log.append((attempt, f"failed: {exc}"))
        if self.qemu_pid is not None:  # libvirtd is gone: QEMU must not outlive the test
            lv.kill_pid(self.qemu_pid, signal.SIGKILL)
        self._gone(10)
        self.stop_log.append(("SIGKILL", "ended it" if not self.alive else "still running"))
        return "SIGKILL"

    def _wait_forgotten(self, grace: float = 15.0) -> None:
        """Wait until libvirt has dropped the transient domain (it reaps QEMU
        and cleans up after the process is gone), so a run ends with none."""
        if self.conn is None or self.dom is None or not self._connection_alive():
            return
        libvirt = lv.libvirt_module()
        deadline = Deadline(grace)
        while not deadline.expired:
            try:
                self.conn.lookupByName(self.domain_name)
            except libvirt.libvirtError:
                return
            time.sleep(0.1)
        self.stop_log.append(("libvirt cleanup", f"domain still known to libvirt after {grace:g}s"))
        log.warning("%s: libvirt still knows domain %s after %gs", self.spec.name, self.domain_name, grace)

    def close(self) -> None:
        """Destroy the domain in stages and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            stage = "never started"
            try:
                stage = self._stop()
            finally:
                if self.alive and self.qemu_pid is not None:  # interrupted above: never leave QEMU behind
                    lv.kill_pid(self.qemu_pid, signal.SIGKILL)
                    stage = "SIGKILL"
                self._stop_stage = stage
                self._wait_forgotten()
                log.info("%s: domain %s stopped (%s)", self.spec.name, self.domain_name, stage)
        finally:
            for part in (self.console, self.qmp):
                if part is not None:
                    part.close()
            if self._pty is not None:
                self._pty.close()
            try:  # the workdir keeps the copy (and the report attaches it), like QEMU's stderr log
                shutil.copyfile(lv.qemu_log(self.domain_name), self.logs["qemu stderr"])
                lv.qemu_log(self.domain_name).unlink()
            except OSError:
                pass
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:  # a dead daemon's connection
                    pass
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)


def serial_pty(live_xml: str) -> str | None:
    """The ``/dev/pts/N`` of the first ``<serial type='pty'>`` in a running domain's XML."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(live_xml)
    except ET.ParseError:
        return None
    for serial in root.iterfind("./devices/serial"):
        if serial.get("type") == "pty":
            src = serial.find("source")
            if src is not None and src.get("path"):
                return src.get("path")
    return None
