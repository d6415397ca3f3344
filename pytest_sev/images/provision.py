"""Provision the embedded default guest's kernel.

The default guest runs the distribution's cloud kernel (small, virtio as
modules, ``CONFIG_AMD_MEM_ENCRYPT=y``).  Its package is downloaded with
``apt-get download`` and unpacked with ``dpkg -x`` into the content-addressed
cache; it is never installed on the host.  A pointer file names the entry so
test runs find the kernel without the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.cache import ContentCache, cache_root, file_digest
from pytest_sev.errors import ProvisionError

DEFAULT_KERNEL_PACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class GuestKernel:
    """A kernel image with its modules tree, as the initramfs builder needs."""

    vmlinuz: Path
    modules_dir: Path  # .../lib/modules/<release>
    release: str
    package: str
    version: str
    sha256: str


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ProvisionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return proc.stdout


def _download(package: str, into: Path) -> Path:
    """``apt-get download`` *package*, refreshing the lists once if needed."""
    try:
        _run(["apt-get", "download", package], cwd=into)
    except ProvisionError:
        _run(["apt-get", "update", "-q"])
        _run(["apt-get", "download", package], cwd=into)
    debs = sorted(into.glob("*.deb"))
    if not debs:
        raise ProvisionError(f"apt-get download {package} produced no .deb")
    return debs[-1]


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field]).strip()


def _real_package(deb: Path) -> str | None:
    """The versioned image a meta-package (``linux-image-cloud-amd64``) depends on."""
    for dep in _deb_field(deb, "Depends").split(","):
        name = dep.strip().split(" ")[0]
        if name.startswith("linux-image-") and name[len("linux-image-"):][:1].isdigit():
            return name
    return None


def _pointer(package: str) -> Path:
    return cache_root() / "kernels" / f"current-{package}.json"


def _load(entry: Path) -> GuestKernel:
    meta = json.loads((entry / "manifest.json").read_text())
    return GuestKernel(
        vmlinuz=entry / "vmlinuz",
        modules_dir=entry / "lib" / "modules" / meta["release"],
        release=meta["release"],
        package=meta["package"],
        version=meta["version"],
        sha256=meta["sha256"],
    )


def provisioned_kernel(package: str = DEFAULT_KERNEL_PACKAGE) -> GuestKernel | None:
    """The kernel a previous ``provision`` put in the cache, without network."""
    ptr = _pointer(package)
    if not ptr.exists():
        return None
    entry = Path(json.loads(ptr.read_text())["entry"])
    if not (entry / ".complete").exists():
        return None
    return _load(entry)


def _unpack(deb: Path, package: str, version: str, sha: str, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="sev-deb-") as tmp:
        _run(["dpkg-deb", "-x", str(deb), tmp])
        images = sorted(Path(tmp, "boot").glob("vmlinuz-*"))
        if not images:
            raise ProvisionError(f"{deb.name} holds no boot/vmlinuz-*")
        release = images[0].name[len("vmlinuz-"):]
        shutil.copy2(images[0], out / "vmlinuz")
        config = Path(tmp, "boot", f"config-{release}")
        if config.exists():
            shutil.copy2(config, out / "config")
        mods = Path(tmp, "lib", "modules", release)
        if not mods.is_dir():
            mods = Path(tmp, "usr", "lib", "modules", release)
        (out / "lib" / "modules").mkdir(parents=True)
        shutil.copytree(mods, out / "lib" / "modules" / release, symlinks=True)
        _run(["depmod", "-b", str(out), release])
    (out / "manifest.json").write_text(json.dumps(
        {"package": package, "version": version, "release": release, "sha256": sha}, indent=1))


def provision_kernel(package: str = DEFAULT_KERNEL_PACKAGE, offline: bool = False) -> GuestKernel:
    """Fetch (or reuse) the distro kernel *package* and return it.

    With ``offline`` or when the download fails but a kernel is already
    cached, the cached one is returned.
    """
    cached = provisioned_kernel(package)
    if offline:
        if cached is None:
            raise ProvisionError(f"no cached {package}; run `python -m pytest_sev provision` online")
        return cached
    with tempfile.TemporaryDirectory(prefix="sev-dl-") as tmp:
        try:
            deb = _download(package, Path(tmp))
            real = _real_package(deb)
            if real:
                for old in Path(tmp).glob("*.deb"):
                    old.unlink()
                deb = _download(real, Path(tmp))
        except (ProvisionError, OSError, subprocess.TimeoutExpired):
            if cached is not None:
                return cached
            raise
        sha = file_digest(deb)
        name, version = _deb_field(deb, "Package"), _deb_field(deb, "Version")
        entry = ContentCache("kernels").get_or_build(
            sha, lambda out: _unpack(deb, name, version, sha, out))
    ptr = _pointer(package)
    ptr.write_text(json.dumps({"entry": str(entry), "package": name, "version": version}))
    return _load(entry)
