"""Build the embedded default guest's initramfs, content-addressed.

Contents: busybox-static, the kernel modules the harness needs (closure from
``modules.dep``), fio as ``/usr/bin/fio`` (a given binary, the static
build of pytest_sev.build.fio; else the host's, with every shared library
``ldd`` names), and :file:`data/init.sh`.  The cache key covers every input's bytes,
so a second build of the same inputs is a lookup, and any change (a new
kernel package, a new busybox) makes a new entry.
"""

from __future__ import annotations

import gzip
import lzma
import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pytest_sev.cache import ContentCache, file_digest, make_key
from pytest_sev.errors import InitramfsError
from pytest_sev.images.modules import DEFAULT_GUEST_MODULES, OPTIONAL_GUEST_MODULES, load_order
from pytest_sev.images.provision import GuestKernel

RECIPE_VERSION = 3  # bump when the layout or init changes meaning


@dataclass(frozen=True)
class Initramfs:
    path: Path
    key: str
    has_fio: bool


def _init_script() -> bytes:
    return resources.files("pytest_sev").joinpath("data/init.sh").read_bytes()


def find_busybox() -> Path:
    for cand in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(cand).exists():
            return Path(cand)
    raise InitramfsError("busybox not found: install busybox-static (scripts/setup.sh does)")


def shared_libraries(binary: Path) -> list[Path]:
    """Every library ``ldd`` resolves for *binary*, plus the dynamic loader."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def _copy_into(root: Path, src: Path) -> None:
    """Copy *src* to the same absolute path under *root*, resolving symlinks."""
    dest = root / str(src).lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src.resolve(), dest)


def _copy_module(kernel: GuestKernel, rel: str, root: Path) -> str:
    """Place one module, decompressed (busybox insmod takes plain ``.ko``)."""
    src = kernel.modules_dir / rel
    plain_rel = re.sub(r"\.ko\.(xz|zst|gz)$", ".ko", rel)
    dest = root / "lib" / "modules" / plain_rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if rel.endswith(".xz"):
        dest.write_bytes(lzma.decompress(src.read_bytes()))
    elif rel.endswith(".gz"):
        dest.write_bytes(gzip.decompress(src.read_bytes()))
    elif rel.endswith(".zst"):
        with open(dest, "wb") as out:
            subprocess.run(["zstd", "-dc", str(src)], stdout=out, check=True)
    else:
        shutil.copy2(src, dest)
    return plain_rel


def _write_cpio(root: Path, out: Path) -> None:
    """newc cpio of *root*, names sorted, timestamps dropped (reproducible)."""
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    listing = ("\n".join(["."] + names) + "\n").encode()
    with open(out, "wb") as f:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "--reproducible", "-R", "0:0"],
                       input=listing, stdout=f, cwd=root, check=True)


def build_initramfs(kernel: GuestKernel, modules: tuple[str, ...] = DEFAULT_GUEST_MODULES,
                    with_fio: bool = True, fio_binary: Path | None = None) -> Initramfs:
    """The initramfs of *kernel* (cached by its inputs); with fio: *fio_binary*
    (a static build needs no libraries), else the host's ``fio``."""
    busybox = find_busybox()
    found = (fio_binary or shutil.which("fio")) if with_fio else None
    fio = Path(found) if found else None
    libs = shared_libraries(fio) if fio else []
    dep_text = (kernel.modules_dir / "modules.dep").read_text()
    builtin = kernel.modules_dir / "modules.builtin"
    order = load_order(modules, dep_text, builtin.read_text() if builtin.exists() else "",
                       optional=OPTIONAL_GUEST_MODULES)
    key = make_key(
        recipe=RECIPE_VERSION, kernel=kernel.sha256, modules=order,
        busybox=file_digest(busybox), init=_init_script().hex(),
        fio=file_digest(fio) if fio else None,
        libs={str(lib): file_digest(lib) for lib in libs},
    )

    def build(out: Path) -> None:
        root = out / "root"
        for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "usr/bin", "lib/modules"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, root / "bin" / "busybox")
        init = root / "init"
        init.write_bytes(_init_script())
        init.chmod(0o755)
        placed = [_copy_module(kernel, rel, root) for rel in order]
        (root / "etc" / "modules.order").write_text("\n".join(placed) + "\n")
        profile = ["export PATH=/bin:/sbin:/usr/bin:/usr/sbin"]
        if fio:
            (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy2(fio.resolve(), root / "usr" / "bin" / "fio")  # where init.sh and the load find it
            for lib in libs:
                _copy_into(root, lib)
            if libs:
                dirs = sorted({str(lib.parent) for lib in libs})
                profile.append("export LD_LIBRARY_PATH=" + ":".join(dirs))
        (root / "etc" / "profile").write_text("\n".join(profile) + "\n")
        _write_cpio(root, out / "initrd.cpio")
        shutil.rmtree(root)

    entry = ContentCache("initramfs").get_or_build(key, build)
    return Initramfs(path=entry / "initrd.cpio", key=key, has_fio=bool(fio))
