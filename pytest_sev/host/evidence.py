"""What the probe read from the host, as plain data, before any judgement.

:func:`gather` is the only place that touches the machine: files under a
root directory (``/`` live, a recorded tree in tests), device reads with
``os.pread`` and commands through a :class:`~pytest_sev.host.commands.Runner`.
Turning :class:`Evidence` into checks is pure (``checks_*`` modules), and a
recording of a host is just its evidence written out (``recorded.py``).
"""

from __future__ import annotations

import fcntl
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.host.commands import Runner
from pytest_sev.host.parse_cpu import EXT_MAX_LEAF, SEV_LEAF, CpuidRegs, parse_cpuinfo, parse_rdmsr_output
from pytest_sev.host.qmp_probe import QmpAnswer, QmpProbe, query_sev_capabilities

SYSCFG_MSR = 0xC0010010
RMP_MSRS = (0xC0010132, 0xC0010133)  # RMP_BASE, RMP_END: where the BIOS put the SEV-SNP RMP table
KVM_GET_API_VERSION = 0xAE00
KVM_API_VERSION = 12
KVM_AMD_PARAMS = ("sev", "sev_es", "sev_snp")

# (code, vars) pairs looked for when no OVMF path is given: an AMD-script
# install under /usr/local first, then distribution packages.
OVMF_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/local/share/qemu/OVMF_CODE.fd", "/usr/local/share/qemu/OVMF_VARS.fd"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
)


@dataclass(frozen=True)
class DeviceAccess:
    path: str
    exists: bool
    readable: bool = False
    writable: bool = False
    error: str = ""
    kvm_api: int | None = None  # KVM_GET_API_VERSION answer, /dev/kvm only


@dataclass
class Evidence:
    cpuinfo: str | None = None
    cpuid: dict[int, CpuidRegs] = field(default_factory=dict)
    cpuid_error: str = ""
    syscfg: int | None = None
    syscfg_source: str = ""
    syscfg_error: str = ""
    rmp_msrs: tuple[int, int] | None = None  # (RMP_BASE, RMP_END), None when not read
    rmp_msrs_error: str = ""
    kvm_amd: dict[str, str] | None = None  # None: module not loaded
    dev_sev: DeviceAccess = DeviceAccess("/dev/sev", False)
    dev_kvm: DeviceAccess = DeviceAccess("/dev/kvm", False)
    kernel_log: str | None = None
    kernel_log_error: str = ""
    kernel_release: str | None = None
    qemu: str = "qemu-system-x86_64"
    qemu_version_text: str | None = None
    qmp: QmpAnswer = QmpAnswer("tcg", error_desc="not probed", launched=False)
    virsh: tuple[int, str] = (127, "")
    virt_host_validate: tuple[int, str] = (127, "")  # `virt-host-validate qemu`: its SEV lines say why not
    ovmf_code: str | None = None  # host path, when the file exists
    ovmf_vars: str | None = None
    ovmf_missing: list[str] = field(default_factory=list)
    limits: str | None = None

    @property
    def cpu_flags(self) -> frozenset[str]:
        return parse_cpuinfo(self.cpuinfo).flags if self.cpuinfo else frozenset()

    def kvm_usable(self) -> bool:
        """/dev/kvm opening is not enough (measured-here.md): the CPU must
        also offer hardware virtualization to the kernel."""
        return (self.dev_kvm.kvm_api == KVM_API_VERSION
                and bool(self.cpu_flags & {"svm", "vmx"}))


def under(root: Path, host_path: str) -> Path:
    return root / host_path.lstrip("/")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _read_cpuid(root: Path, runner: Runner) -> tuple[dict[int, CpuidRegs], str]:
    path = under(root, "/dev/cpu/0/cpuid")
    if not path.exists():
        status, _ = runner.run(["modprobe", "cpuid"])  # failure tolerated
        if not path.exists():
            return {}, f"no /dev/cpu/0/cpuid (modprobe cpuid: exit {status})"
    leaves: dict[int, CpuidRegs] = {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return {}, f"/dev/cpu/0/cpuid: {exc.strerror}"
    try:
        # offset = leaf (subleaf in the high 32 bits); a buffered read would
        # fetch the wrong leaf, pread asks for exactly this one.
        leaves[EXT_MAX_LEAF] = CpuidRegs.from_bytes(os.pread(fd, 16, EXT_MAX_LEAF))
        if leaves[EXT_MAX_LEAF].eax >= SEV_LEAF:
            leaves[SEV_LEAF] = CpuidRegs.from_bytes(os.pread(fd, 16, SEV_LEAF))
    except (OSError, ValueError) as exc:
        return leaves, f"/dev/cpu/0/cpuid: {getattr(exc, 'strerror', None) or exc}"
    finally:
        os.close(fd)
    return leaves, ""


def _read_syscfg(root: Path, runner: Runner) -> tuple[int | None, str, str]:
    path = under(root, "/dev/cpu/0/msr")
    if not path.exists():
        runner.run(["modprobe", "msr"])  # failure tolerated
    why = []
    if path.exists():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raw = os.pread(fd, 8, SYSCFG_MSR)
            finally:
                os.close(fd)
            if len(raw) == 8:
                return int.from_bytes(raw, "little"), "/dev/cpu/0/msr", ""
            why.append("/dev/cpu/0/msr: short read")
        except OSError as exc:
            why.append(f"/dev/cpu/0/msr: {exc.strerror}")
    else:
        why.append("no /dev/cpu/0/msr")
    status, out = runner.run(["rdmsr", "-p", "0", hex(SYSCFG_MSR)])
    value = parse_rdmsr_output(out) if status == 0 else None
    if value is not None:
        return value, "rdmsr", ""
    why.append(f"rdmsr: exit {status}")  # 127 is both "not installed" and rdmsr's own ENOENT
    return None, "", "; ".join(why)


def _read_rmp_msrs(root: Path, runner: Runner, syscfg_source: str) -> tuple[tuple[int, int] | None, str]:
    """RMP_BASE and RMP_END: the msr device when SYSCFG came from it, else rdmsr.

    Why rdmsr after a device read that fell short: a recorded host keeps the
    device as one sparse file, which cannot hold two adjacent 8-byte MSRs, so
    recordings store these two as rdmsr answers (recorded.save_recording). No
    fresh modprobe: the SYSCFG read already tried it."""
    why: list[str] = []
    path = under(root, "/dev/cpu/0/msr")
    if syscfg_source == "/dev/cpu/0/msr" and path.exists():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                raws = [os.pread(fd, 8, msr) for msr in RMP_MSRS]
            finally:
                os.close(fd)
            if all(len(raw) == 8 for raw in raws):
                base, end = (int.from_bytes(raw, "little") for raw in raws)
                return (base, end), ""
            why.append("/dev/cpu/0/msr: short read of the RMP MSRs")
        except OSError as exc:
            why.append(f"/dev/cpu/0/msr: {exc.strerror}")
    elif not syscfg_source:
        return None, "the MSRs were not readable (see syscfg)"
    values: list[int] = []
    for msr in RMP_MSRS:
        status, out = runner.run(["rdmsr", "-p", "0", hex(msr)])
        value = parse_rdmsr_output(out) if status == 0 else None
        if value is None:
            why.append(f"rdmsr {hex(msr)}: exit {status}")
            return None, "; ".join(why)
        values.append(value)
    return (values[0], values[1]), ""


def _device(root: Path, host_path: str) -> DeviceAccess:
    path = under(root, host_path)
    if not path.exists():
        return DeviceAccess(host_path, False)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        readable = os.access(path, os.R_OK)
        return DeviceAccess(host_path, True, readable, False, exc.strerror or str(exc))
    api = None
    try:
        if host_path == "/dev/kvm":
            if stat.S_ISCHR(os.fstat(fd).st_mode):
                api = fcntl.ioctl(fd, KVM_GET_API_VERSION)
            else:  # a recorded root stores the ioctl's answer as the file's text
                text = os.read(fd, 32).decode(errors="replace").strip()
                api = int(text) if text.isdigit() else None
    except OSError as exc:
        return DeviceAccess(host_path, True, True, True, f"KVM_GET_API_VERSION: {exc.strerror}")
    finally:
        os.close(fd)
    return DeviceAccess(host_path, True, True, True, "", api)


def _kernel_log(runner: Runner) -> tuple[str | None, str]:
    status, out = runner.run(["dmesg"])
    if status == 0 and out.strip():
        return out, ""
    jstatus, jout = runner.run(["journalctl", "-k", "-b", "--no-pager", "-o", "cat"])
    if jstatus == 0 and jout.strip():
        return jout, ""
    return None, f"dmesg: exit {status}; journalctl -k: exit {jstatus}"


def _ovmf(root: Path, code: str | None, vars_: str | None) -> tuple[str | None, str | None, list[str]]:
    if code is None and vars_ is None:
        for c, v in OVMF_CANDIDATES:
            if under(root, c).is_file() and under(root, v).is_file():
                return c, v, []
        return None, None, [c for c, _ in OVMF_CANDIDATES]
    found, missing = [], []
    for p in (code, vars_):
        ok = p is not None and under(root, str(p)).is_file()
        found.append(str(p) if ok else None)
        if p is not None and not ok:
            missing.append(str(p))
    return found[0], found[1], missing


def gather(root: Path, runner: Runner, qemu: str, ovmf_code: str | None,
           ovmf_vars: str | None, qmp: QmpProbe | None = None) -> Evidence:
    ev = Evidence(qemu=qemu)
    ev.cpuinfo = _read(under(root, "/proc/cpuinfo"))
    ev.cpuid, ev.cpuid_error = _read_cpuid(root, runner)
    ev.syscfg, ev.syscfg_source, ev.syscfg_error = _read_syscfg(root, runner)
    ev.rmp_msrs, ev.rmp_msrs_error = _read_rmp_msrs(root, runner, ev.syscfg_source)
    params = under(root, "/sys/module/kvm_amd/parameters")
    if under(root, "/sys/module/kvm_amd").is_dir():
        ev.kvm_amd = {}
        for name in KVM_AMD_PARAMS:
            text = _read(params / name)
            if text is not None:
                ev.kvm_amd[name] = text.strip()
    ev.dev_sev = _device(root, "/dev/sev")
    ev.dev_kvm = _device(root, "/dev/kvm")
    ev.kernel_log, ev.kernel_log_error = _kernel_log(runner)
    status, out = runner.run(["uname", "-r"])
    ev.kernel_release = out.strip() if status == 0 and out.strip() else None
    status, out = runner.run([qemu, "--version"])
    ev.qemu_version_text = out if status == 0 else None
    ev.qmp = (qmp or query_sev_capabilities)(qemu, "kvm" if ev.kvm_usable() else "tcg")
    ev.virsh = runner.run(["virsh", "domcapabilities"])
    ev.virt_host_validate = runner.run(["virt-host-validate", "qemu"])
    ev.ovmf_code, ev.ovmf_vars, ev.ovmf_missing = _ovmf(root, ovmf_code, ovmf_vars)
    ev.limits = _read(under(root, "/proc/self/limits"))
    return ev
