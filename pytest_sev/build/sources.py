"""The sources file: AMD's ``stable-commits`` as TOML.

One table per component (``qemu``, ``ovmf``, ``kernel``, and the optional
``ovmf-amdsev``)::

    [kernel]
    url = "file://${PYTEST_SEV_SRC}/linux"   # git URL (any scheme) or path
    ref = "debian/6.1.187-1"                 # branch, tag or commit
    patches = "linux-patches"                # optional; every *.patch, name order
    base_config = "make:tinyconfig"          # kernel only, see kconfig.py
    fragments = ["../kernel/kvm-guest.config"]
    submodules = false                       # tree already holds them (default true)
    configure_args = ["--firmwarepath=..."]  # qemu only: after build.sh's arguments

    [kernel.expect]                          # optional: sha256 per artifact name
    vmlinuz = "3f1c..."                      # a build (or cache hit) that differs fails

or, instead of ``url``/``ref``, a source tarball pinned by its digest::

    tarball = "/srv/qemu-9.0.0.tar.xz"
    sha256 = "..."

Paths (``patches``, ``fragments``, a relative ``url`` or ``tarball``) are
relative to the file; ``~`` and ``${VAR}`` are expanded in URLs and paths so
one file serves every machine (``${PYTEST_SEV_SRC}`` defaults to
``~/.cache/pytest-sev/src``, where scripts/local-sources.sh puts its repos).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.build.errors import SourcesError
from pytest_sev.cache import cache_root

#: build.sh's order when no component is named.
COMPONENTS = ("qemu", "ovmf", "kernel")
#: Built only when named: the AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc) a
#: guest owner's attested launch and launch secret need.  Its table takes the
#: ``[ovmf]`` keys (the same edk2 tree, another platform file).
OPTIONAL_COMPONENTS = ("ovmf-amdsev",)
KNOWN_COMPONENTS = COMPONENTS + OPTIONAL_COMPONENTS
#: Tables that pin a tree for the host's own checks, not a guest component:
#: ``kvm-selftests`` is the kernel tree whose KVM SEV selftests
#: suites/test_upstream.py builds (:mod:`pytest_sev.build.selftests`); without
#: it, the ``[kernel]`` table's tree is used.  ``kvm-unit-tests`` is a
#: kvm-unit-tests tree whose ``x86/amd_sev`` runs as an EFI guest
#: (:mod:`pytest_sev.build.kut`); no registry carries one, so it has no default.
HOST_TEST_TABLES = ("kvm-selftests", "kvm-unit-tests")
#: Tables of tools built into the embedded guest: ``fio``, the DMA load, as one
#: static binary (:mod:`pytest_sev.build.fio`; scripts/setup.sh builds it).
TOOL_TABLES = ("fio",)

_KEYS = {"url", "ref", "patches", "tarball", "sha256", "base_config", "fragments",
         "package", "submodules", "configure_args", "expect"}
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/]+@[^/:]+:")


@dataclass(frozen=True)
class Source:
    """Where one component's source comes from, as written in the file."""

    component: str
    url: str = ""                  # git URL or local path; "" for a tarball
    ref: str = ""
    tarball: str = ""
    sha256: str = ""
    patches: Path | None = None
    base_config: str = ""          # kernel only
    fragments: tuple[Path, ...] = ()
    package: bool = True           # kernel only: bindeb-pkg / binrpm-pkg
    submodules: bool = True
    configure_args: tuple[str, ...] = ()  # qemu only: appended to build.sh's ./configure
    #: artifact name -> the sha256 a reproducible build must give (not part of the key)
    expect: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    origin: Path | None = field(default=None, compare=False)  # the TOML file

    @property
    def kind(self) -> str:
        return "tarball" if self.tarball else "git"


def default_src_root() -> Path:
    return Path(os.environ.get("PYTEST_SEV_SRC") or cache_root() / "src")


def _expand(text: str) -> str:
    env = dict(os.environ)
    env.setdefault("PYTEST_SEV_SRC", str(default_src_root()))
    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                      lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)
    return os.path.expanduser(expanded)


def _local_path(text: str, base: Path) -> Path:
    p = Path(_expand(text))
    return p if p.is_absolute() else (base / p).resolve()


def _location(text: str, base: Path) -> str:
    """A URL stays a URL; a bare path becomes absolute (relative to the file)."""
    text = _expand(text)
    if _URL_SCHEME.match(text):
        return text
    return str(_local_path(text, base))


def _base_config(spec: str, base: Path) -> str:
    """Keywords and ``make:TARGET`` stay; a path is made absolute."""
    if spec in ("", "auto", "host", "provisioned") or spec.startswith("make:"):
        return spec
    return str(_local_path(spec, base))


def parse_source(component: str, table: dict, base: Path, origin: Path | None = None) -> Source:
    where = f"{origin or 'sources'} [{component}]"
    unknown = set(table) - _KEYS
    if unknown:
        raise SourcesError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if bool(table.get("url")) == bool(table.get("tarball")):
        raise SourcesError(f"{where}: give exactly one of url (git) or tarball")
    if table.get("url") and not table.get("ref"):
        raise SourcesError(f"{where}: url needs a ref (branch, tag or commit)")
    if table.get("tarball") and not re.fullmatch(r"[0-9a-f]{64}", str(table.get("sha256", ""))):
        raise SourcesError(f"{where}: tarball needs sha256 = 64 hex digits (the pin)")
    frags = table.get("fragments", [])
    if not isinstance(frags, list):
        raise SourcesError(f"{where}: fragments must be a list of paths")
    cargs = table.get("configure_args", [])
    if not isinstance(cargs, list) or not all(isinstance(a, str) for a in cargs):
        raise SourcesError(f"{where}: configure_args must be a list of strings")
    if cargs and component != "qemu":
        raise SourcesError(f"{where}: configure_args is a qemu key")
    expect = table.get("expect", {})
    if not isinstance(expect, dict) or not all(
            isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in expect.values()):
        raise SourcesError(f"{where}: expect must map artifact names to sha256 (64 lowercase hex digits)")
    patches = table.get("patches")
    return Source(
        component=component,
        url=_location(table["url"], base) if table.get("url") else "",
        ref=str(table.get("ref", "")),
        tarball=_location(table["tarball"], base) if table.get("tarball") else "",
        sha256=str(table.get("sha256", "")),
        patches=_local_path(patches, base) if patches else None,
        base_config=_base_config(str(table.get("base_config", "")), base),
        fragments=tuple(_local_path(f, base) for f in frags),
        package=bool(table.get("package", True)),
        submodules=bool(table.get("submodules", True)),
        configure_args=tuple(cargs),
        expect=dict(expect),
        origin=origin,
    )


def load_sources(path: Path | str) -> dict[str, Source]:
    """Parse a sources file; every error is one line naming file and key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SourcesError(f"sources file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SourcesError(f"sources file {path}: {exc}") from None
    known = KNOWN_COMPONENTS + HOST_TEST_TABLES + TOOL_TABLES
    unknown = set(data) - set(known)
    if unknown:
        raise SourcesError(f"sources file {path}: unknown component(s) {', '.join(sorted(unknown))}"
                           f" (known: {', '.join(known)})")
    return {name: parse_source(name, table, path.parent.resolve(), path)
            for name, table in data.items()}


def default_sources_file() -> Path:
    """``$PYTEST_SEV_SOURCES``, else the checkout's fixtures/sources/local.toml."""
    env = os.environ.get("PYTEST_SEV_SOURCES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "local.toml"
