"""The three recipes, step for step as AMD's build.sh runs them.

A recipe turns a clean, patched tree into artifacts under the entry
directory.  It declares its *inputs* (everything besides the source that
decides the result: prefix, base config bytes, fragments, package target),
which go into the cache key with :attr:`Recipe.version`; bump the version
when a recipe's steps change meaning.

Installed files go to ``<entry>/root/<prefix>`` via ``DESTDIR``: the build is
configured for the real prefix (``/usr/local`` by default, as build.sh), so
``python -m pytest_sev build --install /usr/local`` copies a cached entry in
place, and QEMU (relocatable) also runs straight from the cache.
"""

from __future__ import annotations

import glob
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.build.errors import BuildError
from pytest_sev.build.fetch import checkout
from pytest_sev.build.kconfig import (
    missing_required,
    nondeterministic_config,
    resolve_base,
    scripts_config_args,
    secret_notes,
    snp_report_notes,
    unhonoured,
)
from pytest_sev.build.packaging import host_os_release, package_target
from pytest_sev.build.reproducible import commit_epoch, kernel_env, tree_epoch, write_shims
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import Step, StepRunner, bash_step, step
from pytest_sev.kconfig import parse_config

DEFAULT_PREFIX = "/usr/local"


@dataclass
class BuildOptions:
    jobs: int = 2
    nice: int | None = None
    prefix: str = DEFAULT_PREFIX
    os_release: str | None = None      # text; None: the host's
    package: bool | None = None        # kernel packages; None: the source's choice

    def os_release_text(self) -> str:
        return host_os_release() if self.os_release is None else self.os_release


@dataclass
class Built:
    """What a recipe hands back: artifacts (name -> absolute path), version."""

    artifacts: dict[str, Path] = field(default_factory=dict)
    version: str = ""
    notes: list[str] = field(default_factory=list)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Recipe:
    component = ""
    version = 1

    def inputs(self, source: Source, opts: BuildOptions) -> dict:
        return {}

    def extract(self, source: Source, commit: str, tree: Path, work: Path, runner: StepRunner) -> int:
        """Put the pinned *commit* of *source* at *tree* (which does not exist
        yet; *work* is its parent, the build's scratch directory) and return
        the source's date, the build's ``SOURCE_DATE_EPOCH``.

        The default is the whole tree: a checkout from the engine's mirror
        (dated by the commit) or the unpacked tarball (dated by its newest
        file).  A recipe that needs only part of a large tree takes less
        (:class:`pytest_sev.build.selftests.KvmSelftestsRecipe`).  What it
        takes is not in the cache key: list it in :meth:`inputs`."""
        checkout(source, commit, tree, runner)
        return commit_epoch(tree) if source.kind == "git" else tree_epoch(tree)

    def environment(self, source: Source, tree: Path, work: Path, epoch: int) -> dict[str, str]:
        """Environment of every step beyond :func:`.reproducible.base_env`
        (``SOURCE_DATE_EPOCH``, ``TZ``, ``LC_ALL``), which the engine sets."""
        return {}

    def steps(self, source: Source, tree: Path, out: Path, opts: BuildOptions) -> list[Step]:
        raise NotImplementedError

    def collect(self, source: Source, tree: Path, out: Path, opts: BuildOptions) -> Built:
        raise NotImplementedError


def _staged(out: Path, prefix: str) -> Path:
    return out / "root" / prefix.lstrip("/")


class QemuRecipe(Recipe):
    """``./configure --target-list=x86_64-softmmu --prefix=P --disable-werror``,
    ``make -jN``, ``make install``.

    A source's ``configure_args`` go after build.sh's arguments (local.toml:
    ``--firmwarepath`` for Debian's firmware-less dfsg source)."""

    component = "qemu"
    version = 2  # 2: SOURCE_DATE_EPOCH, -ffile-prefix-map (reproducible builds)

    def inputs(self, source, opts):
        return {"prefix": opts.prefix, "target_list": "x86_64-softmmu",
                "configure_args": list(source.configure_args)}

    def steps(self, source, tree, out, opts):
        return [
            # the prefix map keeps the build path out of the debug info (QEMU
            # builds with -g and installs unstripped); it is path-derived, so
            # it is not an input (the recipe version stands for it)
            step("configure", "./configure", "--target-list=x86_64-softmmu",
                 f"--prefix={opts.prefix}", "--disable-werror", *source.configure_args,
                 f"--extra-cflags=-ffile-prefix-map={tree}/=", cwd=tree),
            step("make", "make", f"-j{opts.jobs}", cwd=tree),
            step("make install", "make", "install", f"DESTDIR={out / 'root'}", cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        binary = _staged(out, opts.prefix) / "bin" / "qemu-system-x86_64"
        if not binary.is_file():
            raise BuildError("qemu", "collect", detail=f"make install left no {binary}")
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
        version = proc.stdout.splitlines()[0] if proc.stdout else ""
        return Built({"qemu-system-x86_64": binary}, version)


#: Fixed script: values arrive as "$1" (jobs) only, never in the text.  ``set --``
#: first, because edksetup.sh reads the caller's positional parameters.
OVMF_BUILD_SCRIPT = (
    'jobs="$1"; set --; . ./edksetup.sh && '
    'build -t GCC5 -a X64 -p OvmfPkg/OvmfPkgX64.dsc -DDEBUG_ON_SERIAL_PORT=TRUE -n "$jobs"'
)
OVMF_FV = "Build/OvmfX64/DEBUG_GCC5/FV"


class OvmfRecipe(Recipe):
    """edk2 with submodules: ``make -C BaseTools``, ``. edksetup.sh``, ``build``;
    OVMF_CODE.fd and OVMF_VARS.fd installed under PREFIX/share/qemu."""

    component = "ovmf"
    version = 2  # 2: SOURCE_DATE_EPOCH, fixed work path (see README: reproducibility)

    def inputs(self, source, opts):
        return {"prefix": opts.prefix, "toolchain": "GCC5", "dsc": "OvmfPkg/OvmfPkgX64.dsc",
                "defines": ["DEBUG_ON_SERIAL_PORT=TRUE"]}

    def steps(self, source, tree, out, opts):
        return [
            step("make BaseTools", "make", "-C", "BaseTools", f"-j{opts.jobs}", cwd=tree),
            bash_step("edk2 build", OVMF_BUILD_SCRIPT, str(opts.jobs), cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        dest = _staged(out, opts.prefix) / "share" / "qemu"
        dest.mkdir(parents=True, exist_ok=True)
        arts = {}
        for name in ("OVMF_CODE.fd", "OVMF_VARS.fd"):
            src = tree / OVMF_FV / name
            if not src.is_file():
                raise BuildError("ovmf", "collect", detail=f"the edk2 build left no {src}")
            shutil.copy2(src, dest / name)
            arts[name] = dest / name
        return Built(arts, source.ref)


#: AmdSevX64.dsc's FDF embeds GRUB (OvmfPkg/AmdSev/Grub/grub.sh builds it with
#: the host's grub-mkimage and the ``sevsecret`` module, which Debian's GRUB
#: 2.06 lacks).  The harness boots with ``-kernel`` (QEMU's kernel hashes,
#: checked by BlobVerifierLibSevHashes) and never needs that GRUB, so, as AMD's
#: own build.sh does, an empty grub.efi newer than grub.sh stands in for it.
AMDSEV_BUILD_SCRIPT = (
    'jobs="$1"; set --; touch OvmfPkg/AmdSev/Grub/grub.efi && . ./edksetup.sh && '
    'build -t GCC5 -a X64 -p OvmfPkg/AmdSev/AmdSevX64.dsc -DDEBUG_ON_SERIAL_PORT=TRUE -n "$jobs"'
)
AMDSEV_FV = "Build/AmdSev/DEBUG_GCC5/FV"
#: The one-file image's installed name, as distributions that ship it (Ubuntu,
#: Debian from 2023.05) call it.
AMDSEV_NAME = "OVMF.amdsev.fd"


class AmdSevOvmfRecipe(Recipe):
    """The same edk2 tree built from ``OvmfPkg/AmdSev/AmdSevX64.dsc``: one
    image (no separate VARS) with the SEV launch-secret page (SecretPei,
    SecretDxe) and the kernel-hashes verifier, which a guest owner needs for
    an attested ``-kernel`` launch and ``efi_secret``.  Installed as
    ``PREFIX/share/qemu/OVMF.amdsev.fd``."""

    component = "ovmf-amdsev"
    version = 1

    def inputs(self, source, opts):
        return {"prefix": opts.prefix, "toolchain": "GCC5", "dsc": "OvmfPkg/AmdSev/AmdSevX64.dsc",
                "defines": ["DEBUG_ON_SERIAL_PORT=TRUE"], "grub": "empty grub.efi"}

    def steps(self, source, tree, out, opts):
        return [
            step("make BaseTools", "make", "-C", "BaseTools", f"-j{opts.jobs}", cwd=tree),
            bash_step("edk2 build (AmdSev)", AMDSEV_BUILD_SCRIPT, str(opts.jobs), cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        src = tree / AMDSEV_FV / "OVMF.fd"
        if not src.is_file():
            raise BuildError(self.component, "collect", detail=f"the edk2 build left no {src}")
        dest = _staged(out, opts.prefix) / "share" / "qemu"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / AMDSEV_NAME)
        return Built({AMDSEV_NAME: dest / AMDSEV_NAME}, source.ref)


class KernelRecipe(Recipe):
    """Base config, fragments, AMD's ``scripts/config`` SEV-ES edits,
    ``make olddefconfig``, ``make -jN``, then ``bindeb-pkg``/``binrpm-pkg``."""

    component = "kernel"
    # 2: LOCALVERSION= on make, as build.sh (no "+" from setlocalversion)
    # 3: reproducible: KBUILD_BUILD_TIMESTAMP/USER/HOST/VERSION, prefix map, date/gzip shims
    version = 3

    def _package(self, source, opts) -> str | None:
        wanted = source.package if opts.package is None else opts.package
        return package_target(opts.os_release_text()) if wanted else None

    def inputs(self, source, opts):
        base = resolve_base(source.base_config)
        return {
            "base": {"make": base.make_target} if base.make_target
            else {"file": str(base.file), "sha256": _sha(base.file)},
            "fragments": [self._fragment_key(f) for f in source.fragments],
            "edits": scripts_config_args(),
            "package": self._package(source, opts),
        }

    def environment(self, source, tree, work, epoch):
        return kernel_env(epoch, tree, write_shims(work / "shims"))

    @staticmethod
    def _fragment_key(frag: Path) -> list[str]:
        if not frag.is_file():
            raise BuildError("kernel", "config", detail=f"config fragment {frag} does not exist")
        return [frag.name, _sha(frag)]

    def steps(self, source, tree, out, opts):
        base = resolve_base(source.base_config)
        # build.sh passes an empty LOCALVERSION on the command line: the
        # config's "-sev-es" stays, and setlocalversion adds no "+" for a
        # tree that is not at a release tag.
        make = ["make", f"-j{opts.jobs}", "LOCALVERSION="]
        s: list[Step] = []
        if base.make_target:
            s.append(step(f"make {base.make_target}", "make", base.make_target, cwd=tree))
        else:
            s.append(step("base config", "cp", base.file, tree / ".config"))
        if source.fragments:
            s.append(step("merge fragments", "scripts/kconfig/merge_config.sh", "-m", "-O", ".",
                          ".config", *source.fragments, cwd=tree))
        s.append(step("scripts/config", "scripts/config", "--file", ".config",
                      *scripts_config_args(), cwd=tree))
        s.append(step("make olddefconfig", "make", "olddefconfig", cwd=tree))
        s.append(step("make", *make, cwd=tree))
        target = self._package(source, opts)
        if target:
            s.append(step(f"make {target}", *make, target, cwd=tree))
        return s

    def check_config(self, tree: Path) -> list[str]:
        """Fails when the SEV-ES essentials did not survive olddefconfig;
        returns notes on the edits that did not (expected for a guest-only config)."""
        text = (tree / ".config").read_text()
        missing = missing_required(text)
        if missing:
            raise BuildError("kernel", "check config",
                             detail="make olddefconfig dropped " + ", ".join(missing))
        cfg = parse_config(text)
        return ([f"not in final config: {m}" for m in unhonoured(text)] + secret_notes(cfg)
                + snp_report_notes(cfg) + nondeterministic_config(text))

    @staticmethod
    def build_path_leaks(tree: Path) -> list[str]:
        """Notes when the build path is in the image's uncompressed payload
        (``-ffile-prefix-map`` should keep it out)."""
        payload = tree / "arch" / "x86" / "boot" / "compressed" / "vmlinux.bin"
        if not payload.is_file():
            return []
        n = payload.read_bytes().count(str(tree).encode())
        return [f"not reproducible across build paths: {payload.name} holds the build path {n} time(s)"] if n else []

    def collect(self, source, tree, out, opts):
        notes = self.check_config(tree)
        release = subprocess.run(["make", "-s", "LOCALVERSION=", "kernelrelease"], cwd=tree, capture_output=True,
                                 text=True, timeout=120).stdout.strip()
        kdir = out / "kernel"
        kdir.mkdir()
        arts = {}
        for name, rel in (("vmlinuz", "arch/x86/boot/bzImage"), ("config", ".config"),
                          ("System.map", "System.map")):
            src = tree / rel
            if not src.is_file():
                raise BuildError("kernel", "collect", detail=f"the build left no {rel}")
            shutil.copy2(src, kdir / name)
            arts[name] = kdir / name
        pkgs = sorted(glob.glob(str(tree.parent / "*.deb")) + glob.glob(str(tree.parent / "*.rpm"))
                      + glob.glob(str(tree / "rpmbuild" / "RPMS" / "*" / "*.rpm")))
        if self._package(source, opts) and not pkgs:
            raise BuildError("kernel", "collect", detail="packaging produced no .deb or .rpm")
        for p in map(Path, pkgs):
            shutil.copy2(p, kdir / p.name)
            arts[p.name] = kdir / p.name
        return Built(arts, release, notes + self.build_path_leaks(tree))


class FioRecipe(Recipe):
    """fio as one static binary for the embedded guest's DMA load.

    Why: Debian's fio links 64 shared libraries (ceph, gluster, RDMA, ICU
    data through libxml2), which made the DMA guests' initramfs 88 MB and
    cost 1.5-2 s of every such boot under TCG unpacking it.  The guest needs
    the libaio engine and verify only: a ``--build-static`` fio without the
    network and persistent-memory engines is 2.8 MB stripped (measured here:
    configure + make in about 25 s on two cores).  ``-ffile-prefix-map`` and
    ``strip`` keep the build path out of the binary."""

    component = "fio"
    version = 1
    #: engines and libraries the guest never uses (each would also need its static library)
    DISABLED = ("numa", "rdma", "rados", "rbd", "http", "gfapi", "libnfs", "pmem", "native", "xnvme",
                "libzbc", "tcmalloc", "dfs")
    #: ./configure's arguments as the cache key holds them (the build path's cflag is added per build)
    CONFIGURE = ("--build-static", *(f"--disable-{d}" for d in DISABLED))

    def inputs(self, source: Source, opts: BuildOptions) -> dict:
        return {"configure": list(self.CONFIGURE), "targets": ["fio"], "strip": True}

    def steps(self, source, tree, out, opts):
        return [
            step("configure", "./configure", *self.CONFIGURE, f"--extra-cflags=-ffile-prefix-map={tree}/=",
                 cwd=tree),
            step("make fio", "make", f"-j{opts.jobs}", "fio", cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        built = tree / "fio"
        if not built.is_file():
            raise BuildError("fio", "collect", detail="make left no fio")
        dest = out / "fio"
        subprocess.run(["strip", "-o", str(dest), str(built)], check=True, timeout=120)
        version = subprocess.run([str(dest), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        ldd = subprocess.run(["ldd", str(dest)], capture_output=True, text=True, timeout=30)
        if "not a dynamic executable" not in ldd.stdout + ldd.stderr:
            raise BuildError("fio", "collect", detail=f"fio is not static: ldd says {ldd.stdout.strip()[:200]}")
        return Built({"fio": dest}, version, ["static (--build-static), libaio engine, stripped"])


RECIPES: dict[str, Recipe] = {r.component: r for r in (QemuRecipe(), OvmfRecipe(), AmdSevOvmfRecipe(),
                                                        KernelRecipe(), FioRecipe())}
