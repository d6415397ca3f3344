"""The libvirt side: a connection to libvirtd, the daemon itself, and leftovers.

libvirt-python (``import libvirt``) is imported here only, and lazily, so the
rest of pytest-sev (and every QEMU-launcher run) works without it.

* :func:`connect` opens ``qemu:///system`` (or another URI) and turns
  "no daemon" into :class:`LibvirtUnavailable` naming the URI and what to do;
* :func:`ensure_daemon` starts ``virtlogd`` and ``libvirtd`` when none
  answers (no systemd here: ``-d`` daemonizes them), for set-up and tests,
  which must not assume a daemon is already running;
* :func:`sweep_orphans` destroys ``pytest-sev-*`` domains whose owning
  harness process is gone (the libvirt stand-in for QEMU's PDEATHSIG:
  a harness killed outright cannot destroy its transient domains itself).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from pytest_sev.errors import GuestError, PytestSevError

log = logging.getLogger(__name__)

DEFAULT_URI = "qemu:///system"
SYSTEM_SOCKET = Path("/run/libvirt/libvirt-sock")
LIBVIRTD_PIDFILE = Path("/run/libvirtd.pid")
QEMU_STATE_DIR = Path("/run/libvirt/qemu")
QEMU_LOG_DIR = Path("/var/log/libvirt/qemu")
REMEDY = ("start the daemon (scripts/setup.sh does: `virtlogd -d; libvirtd -d`, or "
          "`systemctl start libvirtd` where systemd runs) and install libvirt-python")


class LibvirtError(PytestSevError, RuntimeError):
    """libvirt refused or failed at something the harness asked."""


class LibvirtUnavailable(LibvirtError):
    """No libvirt client library, or no daemon answering on the URI."""


class LibvirtConnectionLost(GuestError):
    """libvirtd went away (or stopped answering) while a guest of it ran."""


def libvirt_module() -> Any:
    """``import libvirt``, with libvirt's own stderr printing silenced."""
    try:
        import libvirt
    except ImportError as exc:
        raise LibvirtUnavailable(f"libvirt-python is not installed ({exc}): pip install libvirt-python; "
                                 + REMEDY) from None
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def daemon_answers(sock: Path = SYSTEM_SOCKET) -> bool:
    """True when something accepts connections on libvirtd's socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    try:
        s.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        s.close()


def daemon_pid(pidfile: Path = LIBVIRTD_PIDFILE) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    """Running and not a zombie (a daemonized QEMU's parent may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state != ["Z"] and state != ["X"]


def ensure_daemon(timeout: float = 30.0) -> str:
    """Start virtlogd and libvirtd unless libvirtd already answers.

    Returns what was done ("already running" or "started"); raises
    :class:`LibvirtUnavailable` when the daemon cannot be started."""
    if daemon_answers():
        return "already running"
    if shutil.which("libvirtd") is None and not Path("/usr/sbin/libvirtd").exists():
        raise LibvirtUnavailable("libvirtd is not installed (apt-get install libvirt-daemon-system)")
    for daemon in ("virtlogd", "libvirtd"):
        binary = shutil.which(daemon) or f"/usr/sbin/{daemon}"
        if daemon == "virtlogd" and (not Path(binary).exists() or _virtlogd_answers()):
            continue
        res = subprocess.run([binary, "-d"], capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise LibvirtUnavailable(f"{daemon} -d exited {res.returncode}: {res.stderr.strip()[-500:]}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon_answers():
            log.info("libvirt: started virtlogd and libvirtd")
            return "started"
        time.sleep(0.2)
    raise LibvirtUnavailable(f"libvirtd did not answer on {SYSTEM_SOCKET} within {timeout:g}s")


def _virtlogd_answers() -> bool:
    return daemon_answers(Path("/run/libvirt/virtlogd-sock"))


def connect(uri: str = DEFAULT_URI) -> Any:
    """An open ``virConnect`` on *uri*; :class:`LibvirtUnavailable` otherwise."""
    libvirt = libvirt_module()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailable(f"libvirt: cannot connect to {uri}: {exc}; {REMEDY}") from None


def version_number(conn: Any) -> int:
    """libvirt's version as major * 1_000_000 + minor * 1000 + micro."""
    return int(conn.getLibVersion())


def qemu_pid(name: str) -> int | None:
    """The QEMU pid libvirt keeps for a running domain (root's state dir)."""
    try:
        pid = int((QEMU_STATE_DIR / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid


def domain_qemu_pid(name: str, state_dir: Path | None = None, recorded: int | None = None) -> int | None:
    """The pid of the QEMU running domain *name*, or None when it cannot be told.

    Read from libvirt's pid file (``<state_dir>/<name>.pid``, default
    :data:`QEMU_STATE_DIR`; *recorded*, the pid read at start, when the file
    cannot be read), and only trusted when that process is a QEMU whose
    ``-name`` is this domain (libvirt gives it ``guest=<name>,...``): a missing
    or unreadable file, garbage in it, or a pid reused by another process is
    None, never some other process.  Cheap (three small reads)."""
    try:
        pid: int | None = int(((state_dir or QEMU_STATE_DIR) / f"{name}.pid").read_text().strip())
    except (OSError, ValueError):
        pid = recorded
    if pid is None or pid <= 0:
        return None
    return pid if _runs_domain(process_argv(pid), name) else None


def _runs_domain(argv: list[str], name: str) -> bool:
    """*argv* is a QEMU's whose ``-name`` (``guest=NAME,...`` or ``NAME``) is *name*."""
    if not argv or "qemu" not in Path(argv[0]).name:
        return False
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("-name", "--name"):
            first = value.split(",", 1)[0]
            return first.removeprefix("guest=") == name
    return False


def process_argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def qemu_log(name: str) -> Path:
    """Where libvirt keeps what QEMU printed (and libvirt's start/stop lines)."""
    return QEMU_LOG_DIR / f"{name}.log"


def owner_pid(xml_text: str) -> int | None:
    """The harness pid recorded in a domain's <metadata> (None: not ours)."""
    m = re.search(r"<[\w.-]+:owner\b[^>]*\bpid=['\"](\d+)['\"]", xml_text)
    return int(m.group(1)) if m else None


def sweep_orphans(conn: Any, prefix: str = "pytest-sev-") -> list[str]:
    """Destroy our transient domains whose harness process is gone; their names."""
    libvirt = libvirt_module()
    swept: list[str] = []
    try:
        domains = conn.listAllDomains(0)
    except libvirt.libvirtError:
        return swept
    for dom in domains:
        try:
            name = dom.name()
            if not name.startswith(prefix):
                continue
            pid = owner_pid(dom.XMLDesc(0))
            if pid is None or pid_alive(pid):
                continue
            log.warning("libvirt: destroying %s, left by harness pid %d which is gone", name, pid)
            persistent = dom.isPersistent()  # a transient domain is gone once destroyed
            if dom.isActive():
                dom.destroy()
            swept.append(name)
            if persistent:
                dom.undefineFlags(_undefine_flags(libvirt))
        except libvirt.libvirtError as exc:
            log.info("libvirt: could not sweep a leftover domain: %s", exc)
    return swept


def _undefine_flags(libvirt: Any) -> int:
    return int(getattr(libvirt, "VIR_DOMAIN_UNDEFINE_NVRAM", 0))


def our_domains(conn: Any, prefix: str = "pytest-sev-") -> list[str]:
    """Names of every pytest-sev domain libvirt knows (running or defined)."""
    return sorted(d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix))


def kill_pid(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except OSError:
        return False
