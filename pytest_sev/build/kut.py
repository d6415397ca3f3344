"""kvm-unit-tests' ``x86/amd_sev`` as an EFI program, built from a given tree, cached.

Why: ``amd_sev`` is the SEV check of KVM's own unit-test suite: a tiny guest
that asks the CPU (CPUID 0x8000001F, the SEV_STATUS MSR) whether it runs
encrypted and, under SEV-ES, does string I/O through the #VC handler and the
GHCB.  It needs UEFI (``./configure --enable-efi``: OVMF sets up the C-bit
page tables and the GHCB), so it is built as ``amd_sev.efi`` and booted from a
FAT disk by OVMF (pytest_sev.guest.efi_app).

No package registry carries kvm-unit-tests, so there is no default tree: a
runner names one in the sources file's ``[kvm-unit-tests]`` table (``url``
a git URL or local repository, ``ref``); without it the items skip saying so.
Only the one program is built (``make x86/amd_sev.efi``; the whole suite
would be some 60 programs); measured here: about 3 s.

The cache key is the engine's (component, source, resolved commit, this
recipe's version and inputs, patch bytes), so a second build is a lookup.
The objects are built with ``-ffile-prefix-map`` of the tree, so the path
of the work directory does not reach the debug link.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pytest_sev.build.engine import build
from pytest_sev.build.errors import BuildError
from pytest_sev.build.fetch import missing_repository
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import BuildOptions, Built, Recipe
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import step

log = logging.getLogger(__name__)

COMPONENT = "kvm-unit-tests"
#: the program, by its name in x86/unittests.cfg's sense
PROGRAM = "amd_sev"
#: the make target of the EFI build
TARGET = f"x86/{PROGRAM}.efi"


class KvmUnitTestsRecipe(Recipe):
    """``./configure --enable-efi``, then ``make x86/amd_sev.efi`` only."""

    component = COMPONENT
    version = 1

    def inputs(self, source: Source, opts: BuildOptions) -> dict:
        return {"configure": ["--enable-efi"], "targets": [TARGET]}

    def steps(self, source, tree, out, opts):
        if not (tree / "x86" / f"{PROGRAM}.c").is_file():
            raise BuildError(COMPONENT, "find program",
                             detail=f"the tree has no x86/{PROGRAM}.c: is it a kvm-unit-tests tree?")
        return [
            step("configure", "./configure", "--enable-efi", f"--cflags=-ffile-prefix-map={tree}/=", cwd=tree),
            step(f"make {TARGET}", "make", f"-j{opts.jobs}", TARGET, cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        built = tree / TARGET
        if not built.is_file():
            raise BuildError(COMPONENT, "collect", detail=f"make left no {built}")
        dest = out / f"{PROGRAM}.efi"
        shutil.copy2(built, dest)
        return Built({f"{PROGRAM}.efi": dest}, "kvm-unit-tests",
                     [f"{TARGET} only, EFI build (./configure --enable-efi)"])


RECIPE = KvmUnitTestsRecipe()


def tree_missing(source: Source) -> str | None:
    """Why a local source cannot be used (no repository there); None if it can."""
    path = missing_repository(source)
    return None if path is None else f"no kvm-unit-tests repository at {path} ([{COMPONENT}] url in the sources file)"


def build_amd_sev(source: Source, opts: BuildOptions | None = None) -> Manifest:
    """Build (or find in the cache) ``amd_sev.efi`` of *source*'s tree."""
    manifest = build(source, opts or BuildOptions(), recipe=RECIPE)
    log.info("kvm-unit-tests: %s %s commit %s (%s s, entry %s)", source.url or source.tarball, source.ref,
             manifest.commit[:12], manifest.build_seconds, manifest.entry)
    return manifest  # the engine recorded it as used this session


def program_of(manifest: Manifest) -> Path:
    """The built ``amd_sev.efi`` of a manifest's entry."""
    return manifest.artifact(f"{PROGRAM}.efi")
