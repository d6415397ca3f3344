"""RunConfig: every knob of a run, validated once at start-up.

Options come from the command line, then the ini file
(``[tool.pytest.ini_options]`` / ``pytest.ini``), then defaults.  Anything
that cannot work (a missing kernel, an unknown mode, ``swiotlb=-1``, a policy
that contradicts the mode) raises :class:`ConfigError` with one line; the
plugin turns it into ``pytest.UsageError`` before any guest boots.

Files are checked for what they must *be*, not only that they exist, so a
wrong path is one line at start-up instead of a guest that sits at the UEFI
shell until the boot timeout: the QEMU binary runs and reports a version;
a kernel has the bzImage header; an initrd is a cpio archive (or a
compressed one); OVMF code and vars have a flash size QEMU accepts; a disk
image is one (``qemu-img info``, a partition table, an EFI system partition
since image guests boot with OVMF); ``--accel=kvm`` only where KVM can run
guests; timeouts are finite and at least a second; the boot entry regex
compiles (and has an image to apply to); sink directories are writable.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_sev.errors import ConfigError
from pytest_sev.modes import RUN_MODES
from pytest_sev.sev.policy import es_mismatch

if TYPE_CHECKING:
    from pytest_sev.attest.snp_verify import MinTcb

ACCELS = ("auto", "kvm", "tcg")
FIRMWARES = ("seabios", "ovmf")
LAUNCHERS = ("qemu", "libvirt")


@dataclass(frozen=True)
class RunConfig:
    mode: str = "auto"
    qemu: str = "qemu-system-x86_64"
    accel: str = "auto"
    launcher: str = "qemu"  # "libvirt": guests are transient libvirtd domains
    ovmf_code: Path | None = None
    ovmf_vars: Path | None = None
    #: OVMF.amdsev.fd for attested launches (None: a distribution's, if any)
    ovmf_amdsev: Path | None = None
    #: AMD's signed CEK of this chip, for chains whose exported CEK lacks the ASK's signature
    sev_cek: Path | None = None
    guest_kernel: Path | None = None
    guest_initrd: Path | None = None
    guest_image: Path | None = None
    guest_firmware: str = "seabios"  # for plain guests; SEV guests always use OVMF
    guest_timeout: float = 300.0
    guest_user: str = "root"
    guest_password: str = ""
    guest_boot_entry: str | None = None
    sev_policy: int | None = None
    allow_debug: bool = False
    dma_sizes: tuple[str, ...] = ()
    #: guests at once on this host (None: pytest_sev.guest.budget.default_max_guests)
    max_guests: int | None = None
    #: VCEK certificates for SNP reports when the host gives none (--snp-cert-dir)
    snp_cert_dir: Path | None = None
    #: minimum REPORTED_TCB of SNP reports (--snp-min-tcb), parsed by attest.snp_verify.parse_min_tcb
    snp_min_tcb: MinTcb | None = None
    dma_baseline: Path | None = None
    dma_record_baseline: Path | None = None
    log_dir: Path = Path("reports/guest-logs")
    extra: dict = field(default_factory=dict)

    @property
    def wants_sev(self) -> bool:
        return self.mode in ("sev", "sev-es", "sev-snp")


def _existing(name: str, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{name} {value}: no such file")
    if not path.is_file():  # /dev/null, a directory, a fifo: there, but no file QEMU could use
        raise ConfigError(f"{name} {value}: not a regular file")
    return path.resolve()  # QEMU runs in the guest's own directory


#: a sink with less free space than this is full for the purpose of a run
MIN_FREE_BYTES = 1 << 20


def check_writable_dir(path: Path, what: str) -> None:
    """ConfigError (one line) unless *path* is, or can become, a writable
    directory with some free space.  Leaves nothing behind: whether entries
    can be made in the nearest existing directory is asked of the kernel by
    making a probe directory there and removing it at once, because mode bits
    do not say it (root passes ``os.access`` on ``/proc``, whose statvfs then
    claims a full disk)."""
    path = Path(path).absolute()
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        where = "" if probe == path else f" ({probe} is in the way)"
        raise ConfigError(f"{what} {path}: not a directory{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {probe} is not writable (read-only file system or permissions)")
    try:
        st = os.statvfs(probe)
    except OSError:
        st = None
    # a file system without blocks (proc, sysfs) has no free space to speak of: the probe says why
    if st is not None and st.f_blocks and st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
        raise ConfigError(f"{what} {path}: no space left on device ({st.f_bavail * st.f_frsize} bytes free)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pytest-sev-probe-", dir=probe))
    except OSError as exc:
        kind = "cannot be created" if probe != path else "nothing can be created in it"
        where = f": {probe} does not take new entries" if probe != path else ""
        raise ConfigError(f"{what} {path}: {kind}{where} ({exc.strerror})") from None


# -- what a file must be ----------------------------------------------------------

def _head(path: Path, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def check_kernel(path: Path, what: str = "--guest-kernel") -> None:
    """An x86 bzImage: the ``HdrS`` setup header signature at 0x202."""
    head = _head(path, 0x210)
    if head[0x202:0x206] != b"HdrS":
        raise ConfigError(f"{what} {path}: not a Linux kernel (no bzImage 'HdrS' header at 0x202)")


#: what an initrd starts with: cpio (newc, crc, odc) or a compressor QEMU's kernel can unpack
INITRD_MAGIC = {b"070701": "cpio", b"070702": "cpio", b"070707": "cpio", b"\x1f\x8b": "gzip",
                b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bzip2",
                b"\x02\x21\x4c\x18": "lz4", b"\x04\x22\x4d\x18": "lz4", b"\x89LZO": "lzo",
                b"\x5d\x00\x00": "lzma"}


def check_initrd(path: Path, what: str = "--guest-initrd") -> str:
    head = _head(path, 16)
    for magic, kind in INITRD_MAGIC.items():
        if head.startswith(magic):
            return kind
    raise ConfigError(f"{what} {path}: not an initrd (neither a cpio archive nor gzip/xz/zstd/"
                      "bzip2/lz4/lzo/lzma compressed)")


FLASH_SECTOR = 4096
FLASH_MAX = 16 << 20


def check_flash(path: Path, what: str) -> None:
    """OVMF code/vars: QEMU maps them on pflash, which wants whole 4 KiB
    sectors (else "pflash has invalid size" when a guest starts)."""
    size = path.stat().st_size
    if size == 0 or size % FLASH_SECTOR or size > FLASH_MAX:
        raise ConfigError(f"{what} {path}: {size} bytes is not a flash image size "
                          f"(a non-zero multiple of 4 KiB up to 16 MiB)")


def check_amdsev(path: Path, what: str = "--ovmf-amdsev") -> None:
    """An AmdSev OVMF names its launch-secret page and supports QEMU's kernel
    hashes in its footer table; a plain OVMF_CODE.fd given here would make every
    attested row fail late, so it is refused now."""
    check_flash(path, what)
    from pytest_sev.attest.errors import MeasureError
    from pytest_sev.attest.measure import ovmf_facts
    try:
        facts = ovmf_facts(str(path))
    except MeasureError as exc:
        raise ConfigError(f"{what} {path}: {exc}") from None
    missing = [name for name, ok in (("launch-secret area", facts.secret_area is not None),
                                     ("kernel-hashes table", facts.kernel_hashes)) if not ok]
    if missing:
        raise ConfigError(f"{what} {path}: not an AmdSev OVMF (its footer table has no {' and no '.join(missing)}); "
                          "build one: python -m pytest_sev build ovmf-amdsev")


def check_cek(path: Path) -> None:
    """The ``--sev-cek`` file is one SEV certificate of usage CEK; anything else
    would make every attested launch refuse the chain late, so it is refused now."""
    from pytest_sev.attest.amdroots import read_cek_file
    from pytest_sev.attest.errors import AttestError
    try:
        read_cek_file(path)
    except AttestError as exc:
        raise ConfigError(f"--sev-cek {path}: {exc}") from None


ESP_GUID = bytes.fromhex("28732ac11ff8d211ba4b00a0c93ec93b")  # C12A7328-F81F-11D2-BA4B-00A0C93EC93B


def partitions_summary(head: bytes) -> tuple[str | None, bool]:
    """(table kind or None, has an EFI system partition) from the first
    sectors of a raw disk (pure)."""
    if len(head) >= 1024 and head[512:520] == b"EFI PART":
        start = int.from_bytes(head[512 + 72:512 + 80], "little") * 512
        count = int.from_bytes(head[512 + 80:512 + 84], "little")
        size = int.from_bytes(head[512 + 84:512 + 88], "little") or 128
        entries = head[start:start + min(count, 128) * size]
        esp = any(entries[i:i + 16] == ESP_GUID for i in range(0, len(entries), size))
        return "gpt", esp
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        types = [head[446 + 16 * i + 4] for i in range(4)]
        if any(types):
            return "mbr", 0xEF in types
    return None, False


#: superblock magics of file systems a kernel booted with -kernel may mount straight off a disk
FS_MAGIC = ((0x438, b"\x53\xef", "ext2/3/4"), (0, b"XFSB", "xfs"))


def check_disk_image(path: Path, what: str = "--guest-image", boot: bool = True) -> str:
    """A disk: ``qemu-img info`` names its format, and it has a partition
    table with an EFI system partition (image guests boot with OVMF).

    ``boot=False`` (launch's ``-hda`` beside ``-cdrom`` or ``-kernel``, where
    the disk is not what OVMF boots): no ESP needed, and a blank disk (an
    installer's target) or a bare ext/xfs file system passes too; any other
    file (``/etc/passwd``) is still no disk to hand QEMU as writable."""
    try:
        out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                             text=True, timeout=30)
    except FileNotFoundError:
        return "unknown"  # no qemu-img: QEMU will say it when the guest starts
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"{what} {path}: qemu-img info failed ({exc})") from None
    if out.returncode != 0:
        first = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"{what} {path}: not a disk image (qemu-img: {first})")
    fmt = str(json.loads(out.stdout).get("format", "raw"))
    head = b""
    if fmt == "raw":
        head = _head(path, 34 * 512)
    else:
        with tempfile.TemporaryDirectory(prefix="sev-imgcheck-") as scratch:
            raw = Path(scratch) / "head.raw"
            dd = subprocess.run(["qemu-img", "dd", "-f", fmt, "-O", "raw", "bs=512", "count=34",
                                 f"if={path}", f"of={raw}"], capture_output=True, text=True, timeout=30)
            if dd.returncode != 0:
                return fmt  # cannot look inside: QEMU will
            head = raw.read_bytes()
    table, esp = partitions_summary(head)
    if not boot and (table is not None or (len(head) >= 34 * 512 and not head.strip(b"\0"))
                     or any(head[at:at + len(magic)] == magic for at, magic, _ in FS_MAGIC)):
        return fmt
    if table is None:
        raise ConfigError(f"{what} {path}: {fmt} file without a partition table (not a bootable disk)")
    if not esp:
        raise ConfigError(f"{what} {path}: {fmt} disk ({table}) without an EFI system partition: "
                          "OVMF would stop at the UEFI shell")
    return fmt


def check_qemu(binary: str) -> tuple[int, int, int]:
    """The binary runs and says ``QEMU emulator version X.Y``."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ConfigError(f"--qemu {binary}: cannot run it ({exc})") from None
    m = re.search(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    if not m:
        said = (out.stdout + out.stderr).strip().splitlines()[:1] or ["nothing"]
        raise ConfigError(f"--qemu {binary}: not QEMU ('{binary} --version' printed {said[0][:80]!r}, "
                          f"exit status {out.returncode})")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def check_accel(accel: str) -> None:
    """``--accel=kvm`` only where KVM can run guests (else QEMU aborts later)."""
    if accel != "kvm":
        return
    from pytest_sev.qemu.accel import choose_accel  # reads /dev/kvm and /proc/cpuinfo
    auto = choose_accel("auto")
    if auto.name != "kvm":
        raise ConfigError(f"--accel kvm: KVM cannot run guests on this host ({auto.reason}); "
                          "use --accel=auto or --accel=tcg")


def parse_seconds(name: str, text: object, default: float) -> float:
    """A finite number of seconds, at least 1."""
    if text in (None, ""):
        return default
    try:
        value = float(str(text))
    except ValueError:
        raise ConfigError(f"{name} {text!r} is not a number of seconds") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name} {text}: must be a finite number of seconds")
    if value <= 0:
        raise ConfigError(f"{name} {value:g} must be positive")
    if value < 1:
        raise ConfigError(f"{name} {value:g}: must be at least 1 second")
    return value


def check_regex(name: str, text: str | None) -> None:
    if not text:
        return
    try:
        re.compile(text)
    except re.error as exc:
        raise ConfigError(f"{name} {text!r} is not a valid regex: {exc}") from None


def resolve_mode(sev_es: bool, sev: bool, sev_mode: str | None, sev_snp: bool = False) -> str:
    """Fold ``--sev-snp``, ``--sev-es``, ``--sev`` and ``--sev-mode`` into one mode."""
    if sev_mode is not None and sev_mode not in RUN_MODES:
        raise ConfigError(f"--sev-mode {sev_mode!r} is not one of {', '.join(RUN_MODES)}")
    flags = [m for m, on in (("sev-snp", sev_snp), ("sev-es", sev_es), ("sev", sev)) if on]
    if len(flags) > 1:
        raise ConfigError(f"{' and '.join('--' + f for f in flags)} are exclusive: "
                          "pick the mode the host must support")
    if flags and sev_mode is not None and sev_mode != flags[0]:
        raise ConfigError(f"--{flags[0]} contradicts --sev-mode={sev_mode}")
    return flags[0] if flags else (sev_mode or "auto")


def parse_policy(text: str | None) -> int | None:
    if text in (None, ""):
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise ConfigError(f"--sev-policy {text!r} is not a number (e.g. 0x5)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise ConfigError(f"--sev-policy {text} is outside 0..0xffffffff")
    return value


def check_policy_against_mode(policy: int | None, mode: str) -> None:
    """An explicit policy must agree with the mode on the ES bit (0x4)."""
    if policy is None:
        return
    problem = es_mismatch(policy, mode)
    if problem:
        raise ConfigError(f"--sev-policy {policy:#x} {problem}")


def parse_max_guests(text: str | None) -> int | None:
    """``--max-guests``: a positive whole number, or None when not given."""
    if text is None:
        return None
    if not str(text).isdigit() or int(text) < 1:
        raise ConfigError(f"--max-guests {text!r} is not a positive whole number")
    return int(text)


def check_dma_baseline(path: Path | None) -> Path | None:
    """``--dma-baseline``: a baseline file the DMA suite can load, read now
    (a wrong file would otherwise fail after the whole DMA load)."""
    if path is None:
        return None
    from pytest_sev.dma.baseline import load_baseline
    try:
        load_baseline(path)
    except ValueError as exc:
        raise ConfigError(f"--dma-baseline {path}: {exc}") from None
    return path


def check_record_baseline(value: str | None) -> Path | None:
    """``--dma-record-baseline``: a file that can be written at the end of the
    run (its directory writable now), and when it exists already a baseline,
    since recording adds to it."""
    if not value:
        return None
    target = Path(value).expanduser().absolute()
    if target.exists() and not target.is_file():
        raise ConfigError(f"--dma-record-baseline {value}: not a regular file")
    check_writable_dir(target.parent, "--dma-record-baseline: the directory")
    if target.exists() and target.stat().st_size:
        from pytest_sev.dma.baseline import load_baseline
        try:
            load_baseline(target)
        except ValueError as exc:
            raise ConfigError(f"--dma-record-baseline {value}: exists and is not a baseline to add to ({exc})") from None
    return target.resolve()


def check_readable_dir(value: str | None, what: str) -> Path | None:
    """A directory the run will read (``--snp-cert-dir``), or None when not given."""
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{what} {value}: not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"{what} {value}: not readable (permissions)")
    return path.resolve()


def parse_snp_min_tcb(text: str | None) -> MinTcb | None:
    """``--snp-min-tcb``: the CLI's ``--min-tcb`` syntax, parsed now (a typo is one line at start-up)."""
    if not text:
        return None
    from pytest_sev.attest.errors import AttestError
    from pytest_sev.attest.snp_verify import parse_min_tcb
    try:
        return parse_min_tcb(str(text))
    except AttestError as exc:
        raise ConfigError(f"--snp-min-tcb: {exc}") from None


def build_config(get) -> RunConfig:
    """Build a RunConfig from ``get(name) -> str|bool|None`` (option, then ini)."""
    mode = resolve_mode(bool(get("sev_es")), bool(get("sev")), get("sev_mode"), bool(get("sev_snp")))
    accel = get("accel") or "auto"
    if accel not in ACCELS:
        raise ConfigError(f"--accel {accel!r} is not one of {', '.join(ACCELS)}")
    launcher = get("launcher") or "qemu"
    if launcher not in LAUNCHERS:
        raise ConfigError(f"--launcher {launcher!r} is not one of {', '.join(LAUNCHERS)}")
    firmware = get("guest_firmware") or "seabios"
    if firmware not in FIRMWARES:
        raise ConfigError(f"--guest-firmware {firmware!r} is not one of {', '.join(FIRMWARES)}")
    timeout = parse_seconds("--guest-timeout", get("guest_timeout"), 300.0)
    policy = parse_policy(get("sev_policy"))
    check_policy_against_mode(policy, mode)
    kernel = _existing("--guest-kernel", get("guest_kernel"))
    initrd = _existing("--guest-initrd", get("guest_initrd"))
    if initrd and not kernel:
        raise ConfigError("--guest-initrd needs --guest-kernel")
    if kernel:
        check_kernel(kernel)
    if initrd:
        check_initrd(initrd)
    ovmf_code = _existing("--ovmf-code", get("ovmf_code"))
    ovmf_vars = _existing("--ovmf-vars", get("ovmf_vars"))
    for name, flash in (("--ovmf-code", ovmf_code), ("--ovmf-vars", ovmf_vars)):
        if flash:
            check_flash(flash, name)
    amdsev = _existing("--ovmf-amdsev", get("ovmf_amdsev"))
    if amdsev:
        check_amdsev(amdsev)
    cek = _existing("--sev-cek", get("sev_cek"))
    if cek:
        check_cek(cek)
    image = _existing("--guest-image", get("guest_image"))
    boot_entry = get("guest_boot_entry") or None
    check_regex("--guest-boot-entry", boot_entry)
    if boot_entry and not image:
        raise ConfigError("--guest-boot-entry needs --guest-image (it picks a GRUB entry of the image)")
    if image:
        check_disk_image(image)
    sizes = get("dma_sizes")
    sizes_t = tuple(s for s in (sizes or "").replace(",", " ").split() if s)
    if sizes is not None and not sizes_t:  # given, but empty: never silently the default sizes
        raise ConfigError(f"--dma-sizes {sizes!r} names no pool size (e.g. '1M 8M 64M auto'); "
                          "leave the option out for the default sizes")
    if sizes_t:
        from pytest_sev.dma.sizes import parse_size  # raises ValueError with one line
        for s in sizes_t:
            try:
                parse_size(s)
            except ValueError as exc:
                raise ConfigError(f"--dma-sizes: {exc}") from None
    max_guests = parse_max_guests(get("max_guests"))
    qemu = get("qemu")
    if qemu is not None:
        if not shutil.which(qemu):
            raise ConfigError(f"--qemu {qemu}: not an executable QEMU binary")
        check_qemu(shutil.which(qemu) or qemu)
    check_accel(accel)
    return RunConfig(
        mode=mode, qemu=qemu or "qemu-system-x86_64", accel=accel, launcher=launcher,
        ovmf_code=ovmf_code, ovmf_vars=ovmf_vars, ovmf_amdsev=amdsev, sev_cek=cek,
        guest_kernel=kernel, guest_initrd=initrd, guest_image=image,
        guest_firmware=firmware, guest_timeout=timeout,
        guest_user=get("guest_user") or "root", guest_password=get("guest_password") or "",
        guest_boot_entry=boot_entry,
        sev_policy=policy, allow_debug=bool(get("allow_debug")), dma_sizes=sizes_t, max_guests=max_guests,
        dma_baseline=check_dma_baseline(_existing("--dma-baseline", get("dma_baseline"))),
        dma_record_baseline=check_record_baseline(get("dma_record_baseline")),
        log_dir=Path(get("guest_log_dir") or "reports/guest-logs"),
        snp_cert_dir=check_readable_dir(get("snp_cert_dir"), "--snp-cert-dir"),
        snp_min_tcb=parse_snp_min_tcb(get("snp_min_tcb")),
    )
