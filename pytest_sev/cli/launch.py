"""``python -m pytest_sev launch``: AMD's ``launch-qemu.sh`` for a person.

Same options as the script (single dash: ``-sev``, ``-sev-es``, ``-sev-snp``, ``-hda``,
``-mem``, ``-smp``, ``-console``, ``-vnc``, ``-cdrom``, ``-gdb``,
``-allow-debug``, ``-novirtio``, ``-execpath``, plus ``-kernel``, ``-initrd``,
``-append`` from AMD's later branches) and the same QEMU command line, in the
script's order, so what a person learned from the README carries over.  The
options become a :class:`~pytest_sev.model.spec.GuestSpec` (validated: a typo fails
with one line, not a hung guest) and :func:`launch_argv` renders it.

Where it differs from the script, on purpose (``--print-argv`` shows it;
tests/test_launch.py compares it with
:func:`pytest_sev.sev.launchsh.launch_sh_argv` element by element):

* ``-hda`` must be a disk (the harness's ``--guest-image`` check,
  :func:`pytest_sev.config.check_disk_image`): a partition table with an EFI
  system partition, since OVMF boots it; beside ``-cdrom`` or ``-kernel`` a
  blank disk (an installer's target) or a bare ext/xfs file system passes too.
  The script hands QEMU any file as a writable raw disk;
* the files a launch derives from ``-hda`` (the variable store ``NAME.fd``,
  the QMP socket ``NAME.qmp``, the console log ``NAME.log``) live in a
  private 0700 directory of this user, ``$PYTEST_SEV_CACHE/launch/NAME-<hash
  of the image path>/`` (:func:`state_dir`), never beside the image, where
  they could overwrite a neighbour of it (or leak the socket to other users);
  the launcher prints where.  A ``-kernel`` launch without a disk keeps them
  in the current directory, as the script does;
* monitor: QMP on that unix socket instead of HMP on a pty and on
  ``./monitor`` (``qmp-shell DIR/NAME.qmp`` or ``socat`` to use it); the
  launcher itself uses it to stop QEMU;
* ``confidential-guest-support=sev0`` instead of ``memory-encryption=sev0``
  on QEMU >= 6.0; ``readonly=on`` instead of the bare ``readonly``;
* the variable store ``NAME.fd`` (the script: in the current directory) is
  made once from ``OVMF_VARS.fd`` in that private directory and reused;
* without SEV on a host whose KVM cannot run guests, ``-accel tcg`` instead of
  ``-enable-kvm``; with ``-sev``/``-sev-es`` the host is probed first
  (:func:`pytest_sev.host.probe_host`) and an unready host stops the launch
  with the failing check (exit 1); the C-bit comes from the probe;
* ``-sev-snp`` (AMD's snp-latest branch) launches with upstream QEMU's
  ``sev-snp-guest`` (QEMU >= 9.1: the one on PATH or in ``-execpath`` when it
  is new enough, else the one ``python -m pytest_sev provision qemu-snp`` put
  in the cache); the firmware is one ``-bios`` image (the AmdSev OVMF, else
  ``OVMF.fd``); ``-certs-path`` is refused: that property exists only in
  AMD's QEMU fork;
* networking is always user-mode (the script makes a tap on ``br0`` with sudo
  when that bridge exists).

The serial console (``-nographic``, as the script) is interactive: QEMU runs
on a pseudo-terminal of its own, the launcher puts the person's terminal in
raw mode and copies bytes both ways (``pexpect`` ``interact``), so Ctrl-C,
Ctrl-Z and Ctrl-\\ reach the guest (the pty's signal characters are switched
off, which the script did with ``stty intr ^]``); Ctrl-] leaves: QEMU is told
to ``quit`` over QMP (SIGTERM, then SIGKILL, if it does not) and the terminal
is restored.  Everything the console printed also goes to ``NAME.log`` in the
private directory (the script's ``stdout.log``; ``--log`` puts it elsewhere).  QEMU gets ``PR_SET_PDEATHSIG`` so it cannot outlive
the launcher.  Why a pty and not the harness's socketpair: the guest (and
QEMU's ``-nographic`` mux) expect a terminal; a pty gives them one, window
size included, and ``interact`` restores the person's terminal on every exit.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_sev.cache import cache_root
from pytest_sev.config import check_disk_image
from pytest_sev.errors import ConfigError, GuestError, LaunchError, SpecError
from pytest_sev.model.spec import AMD_FORK_ONLY, SNP_MIN_QEMU, Disk, Firmware, GuestSpec, SevLaunch, SevMode, SnpLaunch
from pytest_sev.qemu.accel import choose_accel
from pytest_sev.qemu.argv import DEFAULT_APPEND, SNP_DEFAULT_CPU, check_snp_qemu, launch_argv
from pytest_sev.qemu.binary import qemu_version
from pytest_sev.qemu.firmware import find_ovmf, find_snp_firmware, vars_store
from pytest_sev.qemu.process import EXITED, QemuProcess, StopStage
from pytest_sev.qemu.qmp import QMP
from pytest_sev.sev.launchsh import LaunchOptions, guest_name
from pytest_sev.sev.policy import policy_for, snp_policy_for

log = logging.getLogger(__name__)

ESCAPE = "\x1d"  # Ctrl-]
QEMU_NAME = "qemu-system-x86_64"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pytest_sev launch", allow_abbrev=False,
        description="Launch a guest like AMD's launch-qemu.sh, with an interactive serial "
                    "console (Ctrl-] stops the guest).")
    a = p.add_argument
    a("-sev", action="store_true", help="launch an SEV guest")
    a("-sev-es", dest="sev_es", action="store_true", help="launch an SEV-ES guest (implies -sev)")
    a("-sev-snp", dest="sev_snp", action="store_true",
      help="launch an SEV-SNP guest (upstream QEMU >= 9.1; implies -sev-es)")
    a("-certs-path", dest="certs_path", metavar="PATH",
      help="refused: a property of AMD's QEMU fork only, upstream QEMU has none")
    a("-hda", metavar="PATH", help="disk image (qcow2 when the name ends in qcow2, else raw)")
    a("-mem", metavar="MB", type=int, default=4096, help="guest memory in MiB (4096)")
    a("-smp", metavar="N", type=int, default=4, help="vCPUs (4)")
    a("-console", default="serial", help="serial (default) or a VGA type (std, qxl, ...)")
    a("-vnc", metavar="N", help="VNC display :N")
    a("-cdrom", metavar="PATH", help="ISO to boot from (installation)")
    a("-gdb", action="store_true", help="gdb server on tcp::1234 (-s)")
    a("-allow-debug", dest="allow_debug", action="store_true", help="SEV policy without NODBG")
    a("-novirtio", action="store_true", help="IDE disk instead of virtio-scsi")
    a("-execpath", metavar="PREFIX", default="/usr/local",
      help="where build.sh installed QEMU and OVMF (/usr/local); else the distro's")
    a("-kernel", metavar="PATH", help="direct kernel boot")
    a("-initrd", metavar="PATH", help="initrd for -kernel")
    a("-append", metavar="CMDLINE", help=f"kernel command line ({DEFAULT_APPEND})")
    a("--print-argv", action="store_true", help="print QEMU's command line and exit")
    a("--log", metavar="PATH", type=Path, help="console log (default: NAME.log beside the image)")
    a("--accel", choices=("auto", "kvm", "tcg"), default="auto",
      help="accelerator for non-SEV guests (auto: KVM when it can run guests)")
    a("--host-recorded", metavar="DIR", type=Path, help=argparse.SUPPRESS)
    return p


@dataclass(frozen=True)
class Resolved:
    """What the options resolve to on this host."""

    qemu: str
    qemu_version: tuple[int, int]
    accel: str
    spec: GuestSpec
    console: str
    vnc: str | None
    cdrom: Path | None
    gdb: bool
    qmp_socket: Path
    log: Path
    #: the directory of the derived files: with -hda a private 0700 one (made by
    #: :func:`prepare`, not by resolving), else the current directory
    state: Path
    private: bool


def find_qemu(execpath: Path) -> str:
    """``PREFIX/bin/qemu-system-x86_64`` when build.sh installed one, else PATH."""
    cand = execpath / "bin" / QEMU_NAME
    if os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which(QEMU_NAME)
    if not found:
        raise LaunchError(f"{QEMU_NAME} not found in {execpath}/bin or PATH "
                          "(install qemu-system-x86 or pass -execpath)")
    return found


def find_firmware(execpath: Path) -> tuple[Path, Path]:
    """OVMF from ``PREFIX/share/qemu`` (build.sh), then the distro's."""
    found = find_ovmf(execpath)
    if found is None:
        raise LaunchError(f"OVMF not found in {execpath}/share/qemu nor the distro's places "
                          "(install ovmf or pass -execpath)")
    return found


def _qemu_version(qemu: str) -> tuple[int, int]:
    try:
        return qemu_version(qemu)[:2]
    except (OSError, ValueError, subprocess.SubprocessError):
        return (0, 0)


def host_cbitpos(mode: str, recorded: Path | None, qemu: str,
                 ovmf: tuple[Path, Path]) -> int:
    """Probe the host (or replay a recorded one); C-bit, or LaunchError naming the check."""
    from pytest_sev.host.decide import why_not_ready
    from pytest_sev.host.probe import probe_host
    from pytest_sev.host.recorded import load_recorded
    if recorded is not None:
        with tempfile.TemporaryDirectory(prefix="sev-launch-host-") as scratch:
            report = load_recorded(recorded, Path(scratch)).probe()
    else:
        report = probe_host(qemu=qemu, ovmf_code=ovmf[0], ovmf_vars=ovmf[1])
    readiness = report.readiness(mode)
    if not readiness.ready:  # a failed check, or one the probe could not answer
        raise LaunchError(f"{why_not_ready(readiness)}\n(python -m pytest_sev host shows every check)")
    cbit = report.facts.get("cbitpos", "unknown")
    if not cbit.isdigit():
        raise LaunchError(f"host probe gave no C-bit position (cbitpos={cbit})")
    return int(cbit)


def _abs(path: str | None, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise LaunchError(f"{what} {path}: no such file")
    return p.resolve()  # the script resolves with readlink -e


def check_disk(hda: Path, boot: bool) -> None:
    """``-hda`` is a disk QEMU may write: the same check as the harness's
    ``--guest-image`` (one line naming what the file is not)."""
    try:
        check_disk_image(hda, "-hda", boot=boot)
    except ConfigError as exc:
        raise LaunchError(str(exc)) from None


#: longest QMP socket path used in place (sun_path holds 108 bytes)
MAX_SOCKET_PATH = 100


def state_dir(name: str, image: Path) -> Path:
    """Where the derived files of a launch from *image* live:
    ``CACHE/launch/NAME-<hash of the image's resolved path>``, so two images
    of the same name keep their own variable stores, and the same image keeps
    its store between launches."""
    digest = hashlib.sha256(str(image).encode()).hexdigest()[:12]
    return cache_root() / "launch" / f"{name[:60]}-{digest}"


def socket_path(state: Path, name: str) -> Path:
    """The QMP socket: ``STATE/NAME.qmp``, or a private directory of its own
    under the temporary directory when that path is too long for a socket."""
    qmp = state / f"{name}.qmp"
    if len(str(qmp)) <= MAX_SOCKET_PATH:
        return qmp
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"sev-launch-{os.getuid()}-{digest}" / "qmp"


def private_dir(path: Path) -> Path:
    """*path* as a directory only this user can enter (0700), made when
    missing; one that is a symlink, someone else's, or not a directory is
    refused (LaunchError): the VARS store and the QMP socket go there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = path.lstat()
    except OSError as exc:
        raise LaunchError(f"{path}: cannot make the launch's private directory ({exc.strerror})") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise LaunchError(f"{path}: not a private directory of this user (a symlink, a file or someone "
                          "else's): refusing to put the VARS store and the QMP socket there")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def prepare(res: Resolved) -> None:
    """Make the private directories the derived files go to (not done for
    ``--print-argv``, which changes nothing)."""
    if res.private:
        private_dir(res.state)
    if res.qmp_socket.parent != res.state:
        private_dir(res.qmp_socket.parent)


def check_sizes(args: argparse.Namespace) -> None:
    """-mem and -smp name themselves when wrong, before anything else is looked at."""
    if args.mem < 64:
        raise LaunchError(f"-mem {args.mem}: memory {args.mem} MiB is too small to boot (>= 64)")
    if not 1 <= args.smp <= 64:
        raise LaunchError(f"-smp {args.smp}: vcpus {args.smp} out of range 1..64")


def refuse_fork_only(args: argparse.Namespace) -> None:
    """Options of AMD's snp-latest script that only AMD's QEMU fork understands:
    upstream QEMU would stop with "Property not found"; say why up front."""
    if args.certs_path is not None:
        raise LaunchError(f"-certs-path: {AMD_FORK_ONLY[0]} exists only in AMD's QEMU fork "
                          "(AMDESE/qemu snp-latest); upstream QEMU's sev-snp-guest has no such property")


def snp_qemu(qemu: str) -> str:
    """A QEMU that can launch SNP: *qemu* when >= 9.1, else the provisioned one;
    neither is the one start-up line naming the version."""
    if _qemu_version(qemu) >= SNP_MIN_QEMU:
        return qemu
    from pytest_sev.images.qemu_snp import PROVISION_COMMAND, provisioned_snp_qemu
    cached = provisioned_snp_qemu()
    if cached is not None:
        os.environ.update(cached.environment())  # this launcher's own QEMU child inherits it
        return str(cached.binary)
    have = ".".join(map(str, _qemu_version(qemu)))
    raise LaunchError(f"SEV-SNP needs QEMU >= {SNP_MIN_QEMU[0]}.{SNP_MIN_QEMU[1]} (this one is {have}); "
                      f"`{PROVISION_COMMAND}` fetches one beside it, or pass -execpath")


def snp_launch(args: argparse.Namespace, execpath: Path, kernel: Path | None,
               cbitpos: int) -> tuple[Firmware, SnpLaunch]:
    """The one-image firmware and the ``sev-snp-guest`` of ``-sev-snp``: kernel
    hashes only with the AmdSev OVMF (it alone has their table)."""
    found = find_snp_firmware(execpath)
    if found is None:
        raise LaunchError(f"SEV-SNP needs a one-file OVMF (OVMF.amdsev.fd or OVMF.fd) in "
                          f"{execpath}/share/qemu or the distro's places; QEMU refuses pflash for SNP")
    kind, image = found
    firmware = Firmware("amdsev" if kind == "amdsev" else "bios", code=image)
    snp = SnpLaunch(cbitpos=cbitpos, policy=snp_policy_for(args.allow_debug),
                    kernel_hashes=kind == "amdsev" and kernel is not None)
    return firmware, snp


def resolve(args: argparse.Namespace) -> Resolved:
    check_sizes(args)
    refuse_fork_only(args)
    execpath = Path(args.execpath)
    qemu = find_qemu(execpath)
    if args.sev_snp:
        qemu = snp_qemu(qemu)
    code, vars_template = find_firmware(execpath)
    hda = _abs(args.hda, "-hda")
    cdrom = _abs(args.cdrom, "-cdrom")
    kernel = _abs(args.kernel, "-kernel")
    initrd = _abs(args.initrd, "-initrd")
    if initrd and not kernel:
        raise LaunchError("-initrd needs -kernel")
    if hda is None and kernel is None:
        raise LaunchError("nothing to boot: give -hda IMAGE (and -cdrom ISO to install) or -kernel")
    if hda is not None:
        check_disk(hda, boot=cdrom is None and kernel is None)
    name = guest_name(LaunchOptions(hda=args.hda, cdrom=args.cdrom)) or "guest"
    home = state_dir(name, hda) if hda is not None else Path.cwd()
    sev_mode: SevMode | None = "sev-es" if args.sev_es else ("sev" if args.sev else None)
    sev = None
    firmware = Firmware("ovmf", code, vars_template, vars_path=home / f"{name}.fd")
    snp = None
    if args.sev_snp:
        cbit = host_cbitpos("sev-snp", args.host_recorded, qemu, (code, vars_template))
        firmware, snp = snp_launch(args, execpath, kernel, cbit)
        accel = "kvm"
    elif sev_mode:
        cbit = host_cbitpos(sev_mode, args.host_recorded, qemu, (code, vars_template))
        sev = SevLaunch(sev_mode, policy_for(sev_mode, args.allow_debug), cbit)
        accel = "kvm"  # SEV is a KVM feature: no fallback
    else:
        accel = choose_accel(args.accel).name
    disks: tuple[Disk, ...] = ()
    if hda is not None:
        fmt: Literal["raw", "qcow2"] = "qcow2" if hda.name.endswith("qcow2") else "raw"  # the script's test
        disks = (Disk(hda, bus="ide" if args.novirtio else "virtio-scsi", format=fmt),)
    try:
        spec = GuestSpec(
            name=name, memory_mib=args.mem, vcpus=args.smp,
            cpu=SNP_DEFAULT_CPU if snp else "EPYC", machine="q35", firmware=firmware,
            kernel=kernel, initrd=initrd,
            append=args.append if args.append is not None else (DEFAULT_APPEND if kernel else ""),
            disks=disks, sev=sev, snp=snp, no_reboot=bool(args.sev_es or args.sev_snp))
        check_snp_qemu(spec, _qemu_version(qemu))
    except SpecError as exc:
        raise LaunchError(str(exc)) from None
    return Resolved(qemu=qemu, qemu_version=_qemu_version(qemu), accel=accel, spec=spec,
                    console=args.console, vnc=args.vnc, cdrom=cdrom, gdb=args.gdb,
                    qmp_socket=socket_path(home, name), log=args.log or home / f"{name}.log", state=home,
                    private=hda is not None)


def _stop_stages(qmp_socket: Path) -> list[StopStage]:
    """QMP ``quit`` over the launch's own socket (a person may also hold one)."""
    def quit_() -> None:
        qmp = QMP(qmp_socket, name="launch")
        try:
            qmp.connect(timeout=5)
            qmp.execute("quit")
        finally:
            qmp.close()
    return [StopStage("qmp quit", quit_, 10)]


def _remove_socket(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def run_interactive(argv: list[str], res: Resolved) -> int:
    rows, cols = shutil.get_terminal_size((80, 24))[::-1]
    proc = QemuProcess(argv, name=res.spec.name, cwd=res.state, terminal=(rows, cols))
    log = open(res.log, "ab")
    try:
        proc.start()
        proc.pty.logfile_read = log
        print(f"launch: QEMU pid {proc.pid}; serial console follows, Ctrl-] stops the guest\r\n"
              f"launch: console log {res.log}, QMP {res.qmp_socket}\r", file=sys.stderr)
        proc.pty.interact(escape_character=ESCAPE)
    finally:
        stage = proc.stop(_stop_stages(res.qmp_socket))
        log.close()
        _remove_socket(res.qmp_socket)
    status = proc.returncode or 0
    print(f"\r\nlaunch: guest stopped ({stage}), QEMU exit status {status}", file=sys.stderr)
    return 0 if stage != EXITED else int(status)


def run_plain(argv: list[str], res: Resolved) -> int:
    """No terminal on stdin (a pipe, CI): QEMU inherits stdio, like the script."""
    proc = QemuProcess(argv, name=res.spec.name, cwd=res.state)
    try:
        proc.start()
        _wait_forever(proc)
        return int(proc.returncode or 0)
    finally:
        proc.stop(_stop_stages(res.qmp_socket))
        _remove_socket(res.qmp_socket)


def _wait_forever(proc: QemuProcess) -> None:
    while not proc.wait(3600):
        pass


class Signalled(BaseException):
    """SIGINT/SIGTERM/SIGHUP reached the launcher: stop the guest, clean up, exit 128+N."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_signal(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:  # the cleanup (QMP quit, socket, terminal) must not be cut short
        signal.signal(sig, signal.SIG_IGN)
    raise Signalled(signum)


def _run_guarded(qemu_argv: list[str], res: Resolved) -> int:
    """Run QEMU with SIGINT/SIGTERM/SIGHUP turned into a clean stop: the
    runners' ``finally`` stops QEMU, removes the QMP socket and (pexpect's
    ``interact``) restores the terminal; one line says what happened."""
    previous = {signum: signal.signal(signum, _on_signal) for signum in STOP_SIGNALS}
    try:
        if sys.stdin.isatty():
            return run_interactive(qemu_argv, res)
        return run_plain(qemu_argv, res)
    except Signalled as stop:
        name = signal.Signals(stop.signum).name
        print(f"\r\nlaunch: {name}: guest stopped, {res.qmp_socket.name} removed", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["launch"]:
        argv = argv[1:]
    args = _parser().parse_args(argv)
    try:
        res = resolve(args)
    except LaunchError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    qemu_argv = launch_argv(res.spec, qemu=res.qemu, accel=res.accel,
                            qemu_version=res.qemu_version, console=res.console, vnc=res.vnc,
                            cdrom=res.cdrom, gdb=res.gdb, qmp_socket=res.qmp_socket)
    if args.print_argv:
        print(shlex.join(qemu_argv))
        return 0
    fw = res.spec.firmware
    try:
        prepare(res)
        vars_path, made = vars_store(fw, res.state / "OVMF_VARS.fd")
    except (OSError, LaunchError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1
    if made:  # made once, then reused
        print(f"launch: created {vars_path} from {fw.vars_template}", file=sys.stderr)
    log.info("launch: derived files in %s", res.state)
    try:
        return _run_guarded(qemu_argv, res)
    except (OSError, GuestError) as exc:
        print(f"launch: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
