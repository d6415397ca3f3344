"""``python -m pytest_sev build [qemu|ovmf|ovmf-amdsev|kernel|fio|kvm-selftests|kvm-unit-tests] [--install PREFIX] [--sources FILE]``.

build.sh's behaviour: without a component all three are built in its order
(qemu, ovmf, kernel); ``fio`` (the embedded guest's static fio,
:mod:`pytest_sev.build.fio`: into the cache only) and ``ovmf-amdsev`` (the AmdSev OVMF an attested launch
needs) are built only when named.  ``--install PREFIX`` (default /usr/local)
must be an existing directory; QEMU is installed under PREFIX, OVMF_CODE.fd,
OVMF_VARS.fd and OVMF.amdsev.fd under PREFIX/share/qemu, and the kernel packages (.deb/.rpm)
are copied to ``--output`` (default: the current directory, where build.sh
leaves them).  Builds go through the same cache as the ``components``
fixture, so a component already built by a test session installs at once.

``--verify`` rebuilds each component outside the cache and compares every
artifact's sha256 with the cache entry (built first when missing), or with
another runner's ``manifest.json`` given by ``--against``; ``--against``
alone compares that manifest with this cache's entry, without a rebuild.
Any difference exits 1 and names the artifact and both hashes (an artifact
known to record the build path, when the paths differ, is listed but
expected: see :mod:`pytest_sev.build.reproducible`).  Pins in the sources file
(``[kernel.expect]``) are checked on every build and cache hit.

``kvm-selftests`` (the kernel's KVM SEV selftests, from the ``[kvm-selftests]``
tree, else the ``[kernel]`` one) and ``kvm-unit-tests`` (``x86/amd_sev.efi``
from the ``[kvm-unit-tests]`` tree) are host checks, not guest components:
built only when named, into the cache (nothing is installed), and printed
with their entry, as suites/test_upstream.py finds them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from pytest_sev.build.engine import build, verify
from pytest_sev.build.errors import BuildError, SourcesError
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import DEFAULT_PREFIX, BuildOptions
from pytest_sev.build.reproducible import path_dependent
from pytest_sev.build.sources import (
    COMPONENTS,
    HOST_TEST_TABLES,
    KNOWN_COMPONENTS,
    TOOL_TABLES,
    Source,
    default_sources_file,
    load_sources,
)

#: built into the cache only, one at a time: the guest's tools and the host checks
CACHE_ONLY = TOOL_TABLES + HOST_TEST_TABLES
#: everything a user may name
NAMEABLE = KNOWN_COMPONENTS + CACHE_ONLY


def _component(name: str) -> str:
    """argparse type: a known component (choices= would list nargs='*''s [] among them)."""
    if name not in NAMEABLE:
        raise argparse.ArgumentTypeError(f"unknown component {name!r} (choose from {', '.join(NAMEABLE)})")
    return name


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_sev build",
                                description="Build QEMU, OVMF and an SEV-ES kernel from pinned sources "
                                            "(AMD build.sh equivalent), cached.")
    p.add_argument("component", nargs="*", type=_component, metavar="COMPONENT",
                   help="qemu, ovmf, kernel, ovmf-amdsev, fio, kvm-selftests and/or kvm-unit-tests "
                        "(default: the first three, in that order)")
    p.add_argument("--install", metavar="PREFIX", default=DEFAULT_PREFIX,
                   help=f"install prefix, must exist (default {DEFAULT_PREFIX})")
    p.add_argument("--sources", metavar="FILE", default=None,
                   help=f"TOML source pins (default {default_sources_file()})")
    p.add_argument("--output", metavar="DIR", default=".", help="where kernel packages are copied")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="make -jN (default: nproc)")
    p.add_argument("--nice", type=int, default=None, help="run build steps under nice -n N")
    p.add_argument("--no-install", action="store_true", help="build into the cache only")
    p.add_argument("--verify", action="store_true",
                   help="rebuild outside the cache and compare every artifact's sha256 with the cache entry")
    p.add_argument("--against", metavar="MANIFEST", default=None,
                   help="compare with this manifest.json (another runner's cache entry): alone, this "
                        "cache's entry (built if missing); with --verify, a fresh rebuild")
    return p


def _reference(path: str | None) -> Manifest | None:
    if path is None:
        return None
    import json
    try:
        return Manifest.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise SourcesError(f"--against {path}: not a build manifest ({exc})") from None


def verify_main(comps: list[str], sources: dict, opts: BuildOptions, against: str | None,
                rebuild: bool = True) -> int:
    """``--verify`` / ``--against``: 0 when every artifact is bit-identical."""
    try:
        reference = _reference(against)
    except SourcesError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    if reference is not None:
        comps = [c for c in comps if c == reference.component] or [reference.component]
    differ = expected = 0
    for comp in comps:
        how = "rebuilding" if rebuild else "comparing the cache entry of"
        print(f"build: verify {comp}: {how} {sources[comp].url or sources[comp].tarball} "
              f"{sources[comp].ref}", flush=True)
        try:
            ref, again, rows = verify(sources[comp], opts, reference=reference, rebuild_=rebuild)
        except (BuildError, SourcesError) as exc:
            print(f"build: {exc}", file=sys.stderr)
            return 1
        where = against or ref.entry
        what = f"rebuilt in {again.build_seconds} s" if rebuild else f"entry {again.entry}"
        print(f"build: {comp} commit {again.commit[:12]} {what}; reference {where}")
        other_path = bool(ref.build_dir) and ref.build_dir != again.build_dir
        mine = "rebuilt" if rebuild else "here"
        for name, a, b, same in rows:
            if same:
                print(f"  same     {a}  {name}")
            elif other_path and path_dependent(name):
                # known: reproducible only at one build path (see build/reproducible.py)
                expected += 1
                print(f"  differs  {name}: reference sha256 {a}, {mine} {b} (expected: it records the "
                      f"build path, {ref.build_dir} vs {again.build_dir}; use one PYTEST_SEV_BUILD_DIR)")
            else:
                differ += 1
                print(f"  DIFFERS  {name}: reference sha256 {a}, {mine} {b}")
        if ref.toolchain and ref.toolchain != again.toolchain:
            print(f"  toolchain differs: reference {ref.toolchain}, here {again.toolchain}")
    if differ:
        print(f"build: verify: {differ} artifact(s) differ")
    elif expected:
        print(f"build: verify: bit-identical except {expected} artifact(s) that record the build path (expected)")
    else:
        print("build: verify: all artifacts bit-identical")
    return 1 if differ else 0


def install_tree(manifest: Manifest, prefix: Path) -> list[Path]:
    """Copy ``<entry>/root/<configured prefix>`` into *prefix*."""
    staged = Path(manifest.entry) / "root" / manifest.inputs["prefix"].lstrip("/")
    copied = []
    for src in sorted(staged.rglob("*")):
        dest = prefix / src.relative_to(staged)
        if src.is_dir() and not src.is_symlink():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        shutil.copy2(src, dest, follow_symlinks=False)
        copied.append(dest)
    return copied


def copy_packages(manifest: Manifest, output: Path) -> list[Path]:
    out = []
    for name, rec in manifest.artifacts.items():
        if name.endswith((".deb", ".rpm")):
            dest = output / name
            shutil.copy2(rec["path"], dest)
            out.append(dest)
    return out


def _host_check_source(comp: str, sources: dict[str, Source]) -> Source:
    """The tree a cache-only build takes: its own table (kvm-selftests falls back to [kernel])."""
    source = sources.get(comp) or (sources.get("kernel") if comp == "kvm-selftests" else None)
    if source is None:
        fallback = " or [kernel]" if comp == "kvm-selftests" else ""
        raise SourcesError(f"the sources file has no [{comp}]{fallback} table")
    return source


def build_cache_only(comp: str, sources: dict[str, Source], opts: BuildOptions) -> int:
    """Build one guest tool or host check into the cache and print what was built."""
    from pytest_sev.build import kut, selftests  # only when named
    try:
        source = _host_check_source(comp, sources)
        print(f"build: {comp} from {source.url or source.tarball} {source.ref}", flush=True)
        if comp == "kvm-selftests":
            m = selftests.build_selftests(source, opts)
        elif comp == "kvm-unit-tests":
            m = kut.build_amd_sev(source, opts)
        else:
            m = build(source, opts)
    except (BuildError, SourcesError) as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 1
    _print_built(comp, m)
    return 0


def _print_built(comp: str, m: Manifest) -> None:
    """What a build gave: version, commit, time, entry, each artifact's sha256, the notes."""
    print(f"build: {comp} {m.version} commit {m.commit[:12]} ({m.build_seconds} s), entry {m.entry}")
    for name, rec in m.artifacts.items():
        print(f"  {rec['sha256']}  {name}")
    for note in m.notes:
        print(f"  note: {note}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    checks = [c for c in CACHE_ONLY if c in args.component]
    if checks:
        if len(checks) != len(args.component) or args.verify or args.against:
            print(f"build: {', '.join(CACHE_ONLY)} are built into the cache on their own (no guest component, "
                  "--verify or --against with them)", file=sys.stderr)
            return 2
        try:
            sources = load_sources(args.sources or default_sources_file())
        except SourcesError as exc:
            print(f"build: {exc}", file=sys.stderr)
            return 2
        opts = BuildOptions(jobs=args.jobs, nice=args.nice)
        return max(build_cache_only(c, sources, opts) for c in checks)
    comps = [c for c in KNOWN_COMPONENTS if c in args.component] if args.component else list(COMPONENTS)
    prefix = Path(args.install).resolve()
    if not (args.no_install or args.verify or args.against) and not prefix.is_dir():
        print(f"build: install dir {prefix} does not exist (create it first, as build.sh requires)",
              file=sys.stderr)
        return 2
    try:
        sources = load_sources(args.sources or default_sources_file())
        missing = [c for c in comps if c not in sources]
        if missing:
            raise SourcesError(f"the sources file has no table for {', '.join(missing)}")
    except SourcesError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    # the configured prefix is part of the key: build for where it will live
    opts = BuildOptions(jobs=args.jobs, nice=args.nice, prefix=str(prefix))
    if args.verify or args.against:
        return verify_main(comps, sources, opts, args.against, rebuild=args.verify)
    for comp in comps:
        print(f"build: {comp} from {sources[comp].url or sources[comp].tarball} "
              f"{sources[comp].ref}", flush=True)
        try:
            m = build(sources[comp], opts)
        except (BuildError, SourcesError) as exc:
            print(f"build: {exc}", file=sys.stderr)
            return 1
        _print_built(comp, m)
        if args.no_install:
            continue
        if comp in ("qemu", "ovmf", "ovmf-amdsev"):
            n = len(install_tree(m, prefix))
            print(f"build: installed {n} files of {comp} under {prefix}")
        else:
            for p in copy_packages(m, Path(args.output)):
                print(f"build: kernel package {p}")
    return 0
