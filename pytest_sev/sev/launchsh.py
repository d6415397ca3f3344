"""What AMD's ``launch-qemu.sh`` (AMDESE/AMDSEV, sev-es branch) generates.

Why: the README's workflow boots guests with that script, so a person
trusts its QEMU command line. pytest-sev builds its own argv; this module
re-implements, as a pure function, the argv the script *generates* for the
same options, so a parity test can show element by element where the two
differ and that every difference is one we chose (:data:`DOCUMENTED_DIFFERENCES`).

Faithful to the sev-es branch script as read (not to the summary in
sev-reference.md where they differ): the code pflash carries ``readonly``
(bare, not ``=on``); a CD-ROM is ``-drive file=ISO,media=cdrom -boot d``;
the network comes before the disk: user networking is
``-netdev user,id=vmnic -device e1000,netdev=vmnic,romfile=`` unless bridge
``br0`` exists (then a tap, :class:`BridgeTap`); the SEV machine option is
``memory-encryption=sev0,vmport=off``; ``policy=`` is only written when
``-allow-debug`` or ``-sev-es`` is given and is formatted with ``printf %#x``
(so 0 prints as ``0``, 5 as ``0x5``); plain ``-sev`` leaves QEMU's default
0x1. The sev-es branch has no ``-kernel/-initrd/-append``: those follow
AMD's later branches (after the SEV options, default append
``console=ttyS0 earlyprintk=serial root=/dev/sda2``, ``-initrd`` after it).

Paths: the script resolves files with ``readlink -e``; this function uses
them as given (pass absolute paths for a faithful result). The UEFI
variable store is ``WORKDIR/NAME.fd`` where NAME is the disk (or ISO) file
name without its last extension.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pytest_sev.sev.policy import ES, policy_for


@dataclass(frozen=True)
class BridgeTap:
    """The tap the script would create when bridge ``br0`` exists (host state)."""

    name: str
    mac: str


@dataclass(frozen=True)
class LaunchOptions:
    """The script's options, with its defaults."""

    sev: bool = False
    sev_es: bool = False
    hda: str | None = None
    mem: int = 4096
    smp: int | None = 4
    console: str = "serial"
    vnc: str | None = None
    cdrom: str | None = None
    gdb: bool = False
    allow_debug: bool = False
    novirtio: bool = False
    execpath: str = "/usr/local"
    kernel: str | None = None
    initrd: str | None = None
    append: str | None = None
    bridge: BridgeTap | None = None
    workdir: str = "."


#: The script's options that take a value -> LaunchOptions field.
_VALUE_OPTS = {"-hda": "hda", "-mem": "mem", "-smp": "smp", "-vnc": "vnc", "-console": "console",
               "-cdrom": "cdrom", "-execpath": "execpath", "-kernel": "kernel",
               "-initrd": "initrd", "-append": "append"}
_FLAG_OPTS = {"-sev": ("sev",), "-sev-es": ("sev", "sev_es"), "-gdb": ("gdb",),
              "-allow-debug": ("allow_debug",), "-novirtio": ("novirtio",)}


def parse_launch_args(args: list[str]) -> LaunchOptions:
    """Parse launch-qemu.sh's command-line options (``ValueError`` like its usage())."""
    kw: dict[str, object] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in _FLAG_OPTS:
            for f in _FLAG_OPTS[a]:
                kw[f] = True
        elif a in _VALUE_OPTS:
            if i + 1 >= len(args) or args[i + 1] == "":
                raise ValueError(f"option {a} needs a value")
            name, val = _VALUE_OPTS[a], args[i + 1]
            if name in ("mem", "smp"):
                if not val.isdigit() or int(val) <= 0:
                    raise ValueError(f"option {a} needs a positive number, got {val!r}")
                kw[name] = int(val)
            else:
                kw[name] = val
            i += 1
        else:
            raise ValueError(f"unknown launch-qemu.sh option {a!r}")
        i += 1
    return LaunchOptions(**kw)  # type: ignore[arg-type]


def cbitpos_from_cpuid_ebx(ebx: int) -> int:
    """C-bit position: CPUID 0x8000001F EBX bits 5:0 (the script's ``EBX & 0x3f``)."""
    return ebx & 0x3F


def guest_name(opts: LaunchOptions) -> str:
    """NAME of ``NAME.fd``: the disk (else ISO) basename without its last extension."""
    src = opts.hda or opts.cdrom
    if not src:
        return ""
    return re.sub(r"\.[^.]+$", "", os.path.basename(src))


def _printf_hash_x(n: int) -> str:
    # C printf("%#x"): the 0x prefix is omitted for zero.
    return "0" if n == 0 else f"{n:#x}"


def launch_sh_argv(opts: LaunchOptions, cbitpos: int | None = None) -> list[str]:
    """The argv (``argv[0]`` = QEMU binary) the script builds, in its order."""
    if opts.sev and (cbitpos is None or not 0 <= cbitpos <= 63):
        raise ValueError(f"SEV needs a C-bit position 0..63, got {cbitpos!r}")
    qemu = f"{opts.execpath}/bin/qemu-system-x86_64"
    uefi = f"{opts.execpath}/share/qemu"
    argv = [qemu, "-enable-kvm", "-cpu", "EPYC", "-machine", "q35"]
    if opts.smp:
        argv += ["-smp", f"{opts.smp},maxcpus=64"]
    argv += ["-m", f"{opts.mem}M,slots=5,maxmem=30G"]
    if opts.sev_es:
        argv += ["-no-reboot"]
    argv += ["-drive", f"if=pflash,format=raw,unit=0,file={uefi}/OVMF_CODE.fd,readonly"]
    argv += ["-drive", f"if=pflash,format=raw,unit=1,file={opts.workdir}/{guest_name(opts)}.fd"]
    if opts.cdrom:
        argv += ["-drive", f"file={opts.cdrom},media=cdrom", "-boot", "d"]
    if opts.bridge:
        tap, mac = opts.bridge.name, opts.bridge.mac
        if not opts.novirtio:
            argv += ["-netdev", f"type=tap,script=no,downscript=no,id=net0,ifname={tap}",
                     "-device", f"virtio-net-pci,mac={mac},netdev=net0,disable-legacy=on,"
                                "iommu_platform=true,romfile="]
        else:
            argv += ["-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
                     "-device", f"e1000,mac={mac},netdev=net0,romfile="]
    else:
        argv += ["-netdev", "user,id=vmnic", "-device", "e1000,netdev=vmnic,romfile="]
    if opts.hda:
        fmt = "qcow2" if opts.hda.endswith("qcow2") else "raw"
        if not opts.novirtio:
            argv += ["-drive", f"file={opts.hda},if=none,id=disk0,format={fmt}",
                     "-device", "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=true",
                     "-device", "scsi-hd,drive=disk0"]
        else:
            argv += ["-drive", f"file={opts.hda},format={fmt}"]
    if opts.sev:
        pol = ""
        if opts.allow_debug or opts.sev_es:
            p = policy_for("sev-es" if opts.sev_es else "sev", opts.allow_debug)
            assert bool(p & ES) == opts.sev_es
            pol = f",policy={_printf_hash_x(p)}"
        argv += ["-object", f"sev-guest,id=sev0{pol},cbitpos={cbitpos},reduced-phys-bits=1",
                 "-machine", "memory-encryption=sev0,vmport=off"]
    if opts.kernel:
        argv += ["-kernel", opts.kernel,
                 "-append", opts.append or "console=ttyS0 earlyprintk=serial root=/dev/sda2"]
        if opts.initrd:
            argv += ["-initrd", opts.initrd]
    if opts.console == "serial":
        argv += ["-nographic"]
    else:
        argv += ["-vga", opts.console]
    if opts.vnc:
        argv += ["-vnc", f":{opts.vnc}"]
    argv += ["-monitor", "pty", "-monitor", "unix:monitor,server,nowait"]
    if opts.gdb:
        argv += ["-s"]
    return argv


# --------------------------------------------------------------------------
# parity


@dataclass(frozen=True)
class Difference:
    """An intentional difference between pytest-sev's argv and the script's."""

    topic: str
    reference: str
    ours: str
    why: str


DOCUMENTED_DIFFERENCES: tuple[Difference, ...] = (
    Difference("monitor", "-monitor pty -monitor unix:monitor,server,nowait (HMP)",
               "QMP on a socketpair/unix socket (-chardev socket,... -mon chardev=...,mode=control or -qmp)",
               "the harness drives QEMU by machine (query-sev, pmemsave); the script has no QMP"),
    Difference("memory-encryption", "-machine memory-encryption=sev0",
               "-machine confidential-guest-support=sev0",
               "QEMU >= 6.0 prefers confidential-guest-support; it also defaults virtio "
               "devices to iommu_platform=on,disable-legacy=on"),
    Difference("pflash-readonly", "readonly", "readonly=on",
               "the bare boolean form is deprecated in newer QEMU; same meaning"),
    Difference("console", "-nographic (serial on stdio, HMP muxed)",
               "-display none, -serial chardev:ID with -chardev socket,id=ID,fd=N",
               "the harness reads the console through a socketpair it owns (pexpect), not a terminal"),
    Difference("accel", "-enable-kvm", "-accel kvm, or -accel tcg on hosts without SEV",
               "the harness also runs plain control guests on machines without usable KVM"),
)

_NO_ARG = {"-enable-kvm", "-no-reboot", "-nographic", "-s", "-S", "-no-shutdown",
           "-nodefaults", "-no-user-config", "-snapshot"}
_ACCEL_OPTS = {"-enable-kvm", "-accel"}
#: values that are not QEMU option strings: compared whole.
_OPAQUE = {"-append", "-kernel", "-initrd", "-bios", "-name", "-pidfile", "-D"}
_MONITOR_OPTS = {"-monitor", "-qmp", "-qmp-pretty", "-mon"}
_CONSOLE_OPTS = {"-nographic", "-display", "-serial"}


def _split_opts(argv: list[str]) -> list[tuple[str, str | None]]:
    items: list[tuple[str, str | None]] = []
    args = list(argv)
    if args and not args[0].startswith("-"):
        args = args[1:]  # the binary: chosen by components, not compared
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            a = a[1:]
        if a in _NO_ARG or i + 1 >= len(args):
            items.append((a, None))
            i += 1
        else:
            items.append((a, args[i + 1]))
            i += 2
    return items


def split_props(value: str) -> tuple[str | None, dict[str, str]]:
    """A QEMU option value as written: ``"q35,a=b,ro"`` -> (``"q35"``, {a: b, ro: on})."""
    head: str | None = None
    props: dict[str, str] = {}
    for n, part in enumerate(value.split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            props[k] = v
        elif n == 0:
            head = part
        elif part:
            props[part] = "on"
    return head, props


def _props(value: str) -> tuple[str | None, dict[str, str]]:
    """:func:`split_props` with booleans spelled one way: ``true``/``yes`` -> ``on``."""
    head, props = split_props(value)
    for k, v in list(props.items()):
        if v in ("true", "yes"):
            props[k] = "on"
        elif v in ("false", "no"):
            props[k] = "off"
    return head, props


def _mib(size: str | None) -> str | None:
    """QEMU ``-m`` sizes: a bare number is MiB; ``4G`` == ``4096M``."""
    m = re.fullmatch(r"(\d+)([MmGg]?)[Bb]?", size or "")
    if not m:
        return size
    n = int(m.group(1)) * (1024 if m.group(2) in ("G", "g") else 1)
    return f"{n}M"


def _same_value(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return int(a, 0) == int(b, 0)
    except ValueError:
        return False


def _normalise(argv: list[str]) -> dict[str, tuple[str | None, dict[str, str]]]:
    """Keyed, normalised options with the documented differences removed."""
    items = _split_opts(argv)
    chardevs_for_mon = {(_props(v)[1].get("chardev")) for o, v in items if o == "-mon" and v}
    chardevs_for_mon |= {v.split(":", 1)[1] for o, v in items
                         if o == "-serial" and v and v.startswith("chardev:")}
    out: dict[str, tuple[str | None, dict[str, str]]] = {}
    machine: dict[str, str] = {}
    mtype: str | None = None
    counts: dict[str, int] = {}
    for opt, val in items:
        if opt in _ACCEL_OPTS or opt in _MONITOR_OPTS or opt in _CONSOLE_OPTS:
            continue
        if val is None:
            out[opt] = (None, {})
            continue
        head, props = (val, {}) if opt in _OPAQUE else _props(val)
        if opt == "-chardev" and props.get("id") in chardevs_for_mon:
            continue
        if opt == "-machine" or opt == "-M":
            if head:
                mtype = head
            if "type" in props:
                mtype = props.pop("type")
            if "memory-encryption" in props:
                props["confidential-guest-support"] = props.pop("memory-encryption")
            props.pop("accel", None)
            machine.update(props)
            continue
        if opt == "-drive":
            if props.get("if") == "pflash":
                key = f"-drive pflash unit={props.get('unit', '0')}"
            elif props.get("media") == "cdrom":
                key = "-drive cdrom"
            elif "id" in props:
                key = f"-drive id={props['id']}"
            else:
                key = f"-drive file={props.get('file', head)}"
        elif opt == "-device":
            ident = props.get("id") or next(
                (f"{k}={props[k]}" for k in ("drive", "netdev", "chardev") if k in props), None)
            key = f"-device {head}" + (f" {ident}" if ident else "")
        elif opt in ("-object", "-netdev", "-chardev"):
            key = f"{opt} id={props.get('id', head)}"
        else:
            key = opt
        if opt == "-m":
            head = _mib(props.pop("size", head))
        n = counts.get(key, 0)
        counts[key] = n + 1
        out[key if n == 0 else f"{key} #{n + 1}"] = (head, props)
    out["-machine"] = (mtype, machine)
    return out


def compare_argv(ours: list[str], reference: list[str], ignore_paths: bool = False) -> list[str]:
    """Element-level differences between two QEMU argvs, documented ones normalised.

    Normalised away (see :data:`DOCUMENTED_DIFFERENCES`): the binary path,
    accelerator options, HMP/QMP monitor options (and the chardev a ``-mon``
    uses), console options (``-nographic``, ``-display``, ``-serial`` and the
    chardev a ``-serial chardev:ID`` uses), ``memory-encryption`` vs ``confidential-guest-support``, bare
    boolean properties vs ``=on``/``true``. Option order is not compared.
    Numbers compare by value (``policy=0x5`` equals ``policy=5``).
    ``ignore_paths`` drops ``file=`` properties and ``-kernel``/``-initrd``
    values (the two sides keep OVMF and disks in different places).
    Returns human-readable lines; empty means parity.
    """
    a, b = _normalise(ours), _normalise(reference)
    diffs: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            diffs.append(f"missing in ours: {key} {_fmt(b[key])}".rstrip())
            continue
        if key not in b:
            diffs.append(f"extra in ours: {key} {_fmt(a[key])}".rstrip())
            continue
        (ha, pa), (hb, pb) = a[key], b[key]
        if ignore_paths:
            pa = {k: v for k, v in pa.items() if k != "file"}
            pb = {k: v for k, v in pb.items() if k != "file"}
            if key in ("-kernel", "-initrd"):
                ha = hb
        if (ha or hb) and not _same_value(ha or "", hb or ""):
            diffs.append(f"{key}: ours {ha!r}, reference {hb!r}")
        for k in sorted(set(pa) | set(pb)):
            va, vb = pa.get(k), pb.get(k)
            if va is None:
                diffs.append(f"{key}: missing {k}={vb}")
            elif vb is None:
                diffs.append(f"{key}: extra {k}={va}")
            elif not _same_value(va, vb):
                diffs.append(f"{key}: {k} ours {va!r}, reference {vb!r}")
    return diffs


def _fmt(entry: tuple[str | None, dict[str, str]]) -> str:
    head, props = entry
    parts = ([head] if head else []) + [f"{k}={v}" for k, v in props.items()]
    return ",".join(parts)
