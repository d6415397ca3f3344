"""A real disk-image guest for tests: GPT, an EFI system partition, GRUB, a menu.

The README's workflow boots an installed distro from ``IMAGE.qcow2`` through
OVMF and GRUB and has a person pick the SEV-ES kernel in the boot menu.  This
module builds the smallest disk that exercises that same path without an
installer or root privileges:

* a GPT disk (``sgdisk``) with one EFI system partition, formatted FAT
  (``mkfs.vfat``) and filled with ``mtools`` (no loop mounts);
* ``\\EFI\\BOOT\\BOOTX64.EFI``: GRUB from the distribution's
  ``grub-efi-amd64-bin``, made with ``grub-mkstandalone`` so its config is
  embedded (a memdisk); the config puts GRUB's output on the serial port
  (``serial --unit=0``, ``terminal_output serial``) and reads keys through
  the firmware console (``terminal_input console``: OVMF's own serial
  terminal driver polls the same UART and steals bytes from GRUB's serial
  input), and finds the ESP by its FAT volume id;
* menu entries named like a Debian install with AMD's ``-sev-es`` kernel
  beside the distro one (:func:`default_entries`); every entry boots the
  default guest kernel with a marker ``pytest_sev.entry=NAME`` on its command
  line, so a test proves through ``/proc/cmdline`` which entry booted;
* the default guest's busybox initramfs, told by ``sev.login=USER:PASS`` to
  ask for a login (``sev-guest login:`` / ``Password:``) like a real distro.

Entries are content-addressed in the ``diskimages`` namespace of
:class:`~pytest_sev.cache.ContentCache` (a hit costs a stat).  The cached
image is never booted directly: :meth:`DiskImage.instance` makes a private
copy-on-write overlay (qcow2) or a sparse copy (raw) for each guest, so
parallel guests never fight over QEMU's image write lock.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.cache import ContentCache, file_digest, make_key
from pytest_sev.errors import DiskImageError
from pytest_sev.images.default_kernel import BASE_APPEND, default_kernel
from pytest_sev.images.initramfs import build_initramfs
from pytest_sev.images.provision import GuestKernel

RECIPE_VERSION = 1  # bump when the layout, the config or a tool's use changes meaning

GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")
#: FAT volume id of the ESP: GRUB's config finds its root with it.
ESP_VOLUME_ID = "5E5E0001"
ESP_UUID = "5E5E-0001"
SECTOR = 512
ESP_START = 2048  # sectors: 1 MiB alignment, as partitioning tools do
#: Marker every entry puts on the kernel command line: pytest_sev.entry=NAME.
ENTRY_MARKER = "pytest_sev.entry"
GRUB_MODULES = ("normal", "linux", "search", "search_fs_uuid", "part_gpt", "fat", "serial",
                "terminal", "terminfo", "echo", "test", "configfile", "gzio", "sleep")
REQUIRED_TOOLS = {"sgdisk": "gdisk", "mkfs.vfat": "dosfstools", "mcopy": "mtools",
                  "mmd": "mtools", "grub-mkstandalone": "grub-common", "qemu-img": "qemu-utils"}


@dataclass(frozen=True)
class MenuEntry:
    """One GRUB menu entry: its title and its marker (``pytest_sev.entry=NAME``)."""

    title: str
    name: str
    extra_append: str = ""

    def __post_init__(self) -> None:
        if "'" in self.title or "\n" in self.title:
            raise ValueError(f"menu title {self.title!r} may not hold quotes or newlines")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"entry name {self.name!r} must be one word")


def default_entries(release: str) -> tuple[MenuEntry, ...]:
    """A Debian-like menu: distro kernel first (the default), its recovery
    entry, then AMD's ``-sev-es`` kernel (build.sh sets LOCALVERSION=-sev-es)."""
    return (
        MenuEntry(f"Debian GNU/Linux, with Linux {release}", "default"),
        MenuEntry(f"Debian GNU/Linux, with Linux {release} (recovery mode)", "recovery",
                  "single"),
        MenuEntry(f"Debian GNU/Linux, with Linux {release}-sev-es", "sev-es"),
    )


@dataclass(frozen=True)
class DiskImage:
    """A built image in the cache (read-only: boot an :meth:`instance`)."""

    raw: Path
    qcow2: Path
    key: str
    entries: tuple[MenuEntry, ...]
    user: str
    password: str
    kernel_release: str
    grub_timeout: int
    size_bytes: int = field(default=0)

    def path(self, fmt: str = "qcow2") -> Path:
        if fmt not in ("raw", "qcow2"):
            raise ValueError(f"format must be raw or qcow2, not {fmt!r}")
        return self.qcow2 if fmt == "qcow2" else self.raw

    def instance(self, dest: Path, fmt: str = "qcow2", name: str = "IMAGE") -> Path:
        """A private, writable copy in *dest*: ``NAME.qcow2`` (an overlay
        backed by the cached image) or ``NAME.img`` (a sparse copy)."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if fmt == "qcow2":
            out = overlay(self.qcow2, dest, name)
        elif fmt == "raw":
            out = dest / f"{name}.img"
            _run(["cp", "--sparse=always", str(self.raw), str(out)])
        else:
            raise ValueError(f"format must be raw or qcow2, not {fmt!r}")
        return out

    def entry(self, name: str) -> MenuEntry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(f"no menu entry named {name!r} in {[e.name for e in self.entries]}")


def _run(argv: list[str], timeout: float = 300) -> str:
    tool = argv[0]
    if shutil.which(tool) is None:
        pkg = REQUIRED_TOOLS.get(tool, tool)
        raise DiskImageError(f"{tool} not found: install the {pkg} package "
                             "(scripts/setup.sh installs grub-efi-amd64-bin mtools dosfstools gdisk)")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise DiskImageError(f"{' '.join(argv)} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[-600:]}")
    return proc.stdout


def grub_config(entries: tuple[MenuEntry, ...], *, user: str, password: str,
                timeout: int = 15, base_append: str = BASE_APPEND) -> str:
    """The embedded ``grub.cfg``: serial console, the menu, kernel + initrd from the ESP."""
    lines = [
        "serial --unit=0 --speed=115200",
        # Input through the firmware's console (OVMF's serial terminal driver):
        # that driver keeps polling the UART, so GRUB's own serial input loses
        # keys to it (measured: 2 of 4 arrow keys lost); output goes straight
        # to the UART.
        "terminal_input console",
        "terminal_output serial",
        f"set timeout={int(timeout)}",
        "set default=0",
        f"search --no-floppy --fs-uuid --set=root {ESP_UUID}",
        "",
    ]
    for e in entries:
        append = " ".join(p for p in (base_append, f"sev.login={user}:{password}",
                                      f"{ENTRY_MARKER}={e.name}", e.extra_append) if p)
        lines += [
            f"menuentry '{e.title}' --id {e.name} {{",
            f"\techo 'Loading Linux {e.name} ...'",
            f"\tlinux /vmlinuz {append}",
            "\techo 'Loading initial ramdisk ...'",
            "\tinitrd /initrd.img",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _grub_digest(grub_dir: Path = GRUB_EFI_DIR) -> str:
    """One digest over the GRUB platform files that go into BOOTX64.EFI."""
    if not (grub_dir / "kernel.img").exists():
        raise DiskImageError(f"{grub_dir}/kernel.img not found: install grub-efi-amd64-bin")
    h = hashlib.sha256()
    for f in sorted(grub_dir.iterdir()):
        if f.suffix in (".mod", ".img", ".lst"):
            h.update(f.name.encode() + file_digest(f).encode())
    return h.hexdigest()


def _validate_credentials(user: str, password: str) -> None:
    for what, val in (("user", user), ("password", password)):
        if not val or any(c.isspace() or c in "'\":\\" for c in val):
            raise ValueError(f"login {what} {val!r}: one word without quotes, colons or backslashes")


def build_disk_image(kernel: GuestKernel, *, user: str = "root", password: str = "sev-es",
                     entries: tuple[MenuEntry, ...] | None = None,
                     grub_timeout: int = 15, esp_mib: int = 64) -> DiskImage:
    """Build (or find in the cache) the test disk image for *kernel*."""
    _validate_credentials(user, password)
    entries = entries or default_entries(kernel.release)
    if len({e.name for e in entries}) != len(entries):
        raise ValueError("menu entry names must be unique")
    initrd = build_initramfs(kernel, with_fio=False)
    cfg = grub_config(entries, user=user, password=password, timeout=grub_timeout)
    key = make_key(recipe=RECIPE_VERSION, kernel=kernel.sha256, initramfs=initrd.key,
                   grub=_grub_digest(), cfg=cfg, modules=GRUB_MODULES, esp_mib=esp_mib)

    def build(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="sev-disk-") as tmp:
            t = Path(tmp)
            (t / "grub.cfg").write_text(cfg)
            efi = t / "BOOTX64.EFI"
            _run(["grub-mkstandalone", "-O", "x86_64-efi", "-o", str(efi),
                  "--locales=", "--fonts=", "--themes=",
                  "--install-modules=" + " ".join(GRUB_MODULES),
                  "--modules=part_gpt fat",
                  f"boot/grub/grub.cfg={t / 'grub.cfg'}"])
            esp = t / "esp.img"
            _run(["mkfs.vfat", "-C", "-F", "32", "-i", ESP_VOLUME_ID, "-n", "SEV-ESP",
                  str(esp), str(esp_mib * 1024)])
            mt = ["-i", str(esp)]
            _run(["mmd", *mt, "::/EFI", "::/EFI/BOOT"])
            _run(["mcopy", *mt, str(efi), "::/EFI/BOOT/BOOTX64.EFI"])
            _run(["mcopy", *mt, str(kernel.vmlinuz), "::/vmlinuz"])
            _run(["mcopy", *mt, str(initrd.path), "::/initrd.img"])
            _run(["mcopy", *mt, str(t / "grub.cfg"), "::/EFI/BOOT/grub.cfg.txt"])  # for people
            raw = out / "disk.img"
            esp_sectors = esp_mib * 1024 * 1024 // SECTOR
            total = (ESP_START + esp_sectors + 2048) * SECTOR  # + room for the backup GPT
            with open(raw, "wb") as f:
                f.truncate(total)
            _run(["sgdisk", "-o", "-U", "5e5e0000-0000-4000-8000-000000000001",
                  "-n", f"1:{ESP_START}:{ESP_START + esp_sectors - 1}", "-t", "1:ef00",
                  "-c", "1:EFI System", "-u", "1:5e5e0000-0000-4000-8000-0000000000e5",
                  str(raw)])
            with open(esp, "rb") as src, open(raw, "r+b") as dst:
                dst.seek(ESP_START * SECTOR)
                shutil.copyfileobj(src, dst, 1 << 20)
            _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw),
                  str(out / "disk.qcow2")])
            (out / "grub.cfg").write_text(cfg)

    entry = ContentCache("diskimages").get_or_build(key, build)
    return DiskImage(raw=entry / "disk.img", qcow2=entry / "disk.qcow2", key=key,
                     entries=tuple(entries), user=user, password=password,
                     kernel_release=kernel.release, grub_timeout=grub_timeout,
                     size_bytes=(entry / "disk.img").stat().st_size)


def default_disk_image(**kw) -> DiskImage:
    """:func:`build_disk_image` for the provisioned default guest kernel."""
    return build_disk_image(default_kernel(), **kw)


def image_format(path: Path) -> str:
    """``qcow2`` for a qcow2 file (by its magic, else by its name), else ``raw``."""
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"QFI\xfb":
                return "qcow2"
    except OSError:
        pass
    return "qcow2" if str(path).endswith("qcow2") else "raw"


def overlay(image: Path, dest: Path, name: str | None = None) -> Path:
    """A qcow2 overlay of *image* in *dest*: a guest writes there, never to *image*."""
    image = Path(image).resolve()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{name or image.stem}.qcow2"
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image),
          "-F", image_format(image), str(out)])
    return out
