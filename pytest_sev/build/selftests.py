"""The kernel's own KVM SEV selftests, built from a pinned kernel tree, cached.

Why: KVM's SEV selftests (tools/testing/selftests/kvm: ``sev_smoke_test``,
``sev_init2_tests``, ``sev_migrate_tests``) are the kernel developers' own
checks of the host's SEV/SEV-ES support; running them beside the harness's
suites (suites/test_upstream.py) tests the host kernel with the tests its
authors wrote.  They test the *running* host kernel, whatever tree they come
from, so the manifest records the tree's commit and the suite names the host
kernel beside it.

Only what they need is taken from the tree (:data:`TREE_PATHS`, about 85 MB
of a 1.5 GB tree, via ``git archive`` from the engine's mirror): the top
Makefile, scripts/, include/ and arch/x86 for ``make headers`` (the 6.x
selftests read the uapi headers from ``usr/include``, which only ``make
headers`` fills), and tools/ parts the KVM selftests' Makefile reads.  Then
``make headers`` and ``make -C tools/testing/selftests/kvm`` of the SEV
programs only (their absolute target paths; the Makefile's own target list
would build some 150 programs).  Measured here (2 cores, shared): 15-39 s
in all (extraction 3-6 s, ``make headers`` 10-75 s depending on the load,
the three programs 5-11 s).  They build with ``-ffile-prefix-map``, so two
cache directories give the same bytes (measured).

The cache key is the engine's (:func:`pytest_sev.build.engine.build_key`):
component, source location, resolved commit, this recipe's version and
inputs, patch bytes; a second build is a lookup.  The tree's layout decides
the arch directory (``x86_64/`` up to 6.13, ``x86/`` after the rename); a
program the tree lacks is not built and is named in the manifest's notes.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from pytest_sev.build.engine import build_or_find
from pytest_sev.build.errors import BuildError
from pytest_sev.build.fetch import ensure_mirror, fetch_tarball, missing_repository
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import BuildOptions, Built, Recipe
from pytest_sev.build.reproducible import tree_epoch
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import StepRunner, step
from pytest_sev.cache import ContentCache

log = logging.getLogger(__name__)

COMPONENT = "kvm-selftests"
#: the SEV programs, in the order they are reported
PROGRAMS = ("sev_smoke_test", "sev_init2_tests", "sev_migrate_tests")
SELFTESTS = "tools/testing/selftests"
KVM_DIR = f"{SELFTESTS}/kvm"
#: what ``make headers`` and the KVM selftests' Makefile read (found by
#: trial on 6.12: without tools/lib, lib/rbtree.c's include fails)
TREE_PATHS = ("Makefile", "scripts", "include", "arch/x86",
              "tools/include", "tools/arch/x86", "tools/build", "tools/scripts", "tools/lib",
              f"{SELFTESTS}/lib.mk", f"{SELFTESTS}/kselftest.h", f"{SELFTESTS}/kselftest_harness.h", KVM_DIR)
#: the kselftest runner's per-program limit when the tree's settings file says none
DEFAULT_TIMEOUT = 120.0
#: how a missing local tree is made (scripts/local-sources.sh)
LOCAL_SOURCES_HINT = "bash scripts/local-sources.sh linux-6.12"

_TIMEOUT = re.compile(r"^\s*timeout\s*=\s*(\d+)\s*$", re.MULTILINE)


def settings_timeout(text: str) -> float | None:
    """``timeout=120`` of a kselftest ``settings`` file; None when it sets none. Pure."""
    m = _TIMEOUT.search(text)
    return float(m.group(1)) if m else None


def arch_dir(tree: Path) -> str:
    """``x86`` where the tree has the renamed directory, else ``x86_64``."""
    return "x86" if (tree / KVM_DIR / "x86").is_dir() else "x86_64"


def programs_in(tree: Path) -> list[str]:
    """The SEV programs whose source the tree has."""
    sub = tree / KVM_DIR / arch_dir(tree)
    return [p for p in PROGRAMS if (sub / f"{p}.c").is_file()]


class KvmSelftestsRecipe(Recipe):
    """``make headers``, then the SEV programs of the KVM selftests only."""

    component = COMPONENT
    version = 1

    def inputs(self, source: Source, opts: BuildOptions) -> dict:
        return {"programs": list(PROGRAMS), "paths": list(TREE_PATHS),
                "make": ["headers", "kvm selftests: SEV programs only"]}

    def extract(self, source: Source, commit: str, tree: Path, work: Path, runner: StepRunner) -> int:
        """Only :data:`TREE_PATHS` of the pinned commit into *tree* (a tarball:
        all of it); returns the source's epoch."""
        tree.mkdir(parents=True)
        if source.kind == "tarball":
            tarball = fetch_tarball(source, runner)
            runner.run(step("unpack", "tar", "-xf", tarball, "-C", tree, "--strip-components=1"))
            return tree_epoch(tree)
        mirror = ensure_mirror(source, commit, runner)
        listed = subprocess.run(["git", "-C", str(mirror), "ls-tree", "--name-only", commit, "--", *TREE_PATHS],
                                capture_output=True, text=True, timeout=120)
        present = [p for p in listed.stdout.splitlines() if p]
        if listed.returncode != 0 or not present:
            raise BuildError(COMPONENT, "extract", detail=f"git ls-tree {commit}: {listed.stderr.strip()[-300:]}")
        runner.note("=== paths taken from the tree: " + " ".join(present))
        archive = work / "tree.tar"
        runner.run(step("git archive", "git", "-C", mirror, "archive", "--format=tar", "-o", archive, commit,
                        "--", *present))
        runner.run(step("unpack", "tar", "-xf", archive, "-C", tree))
        archive.unlink()
        epoch = subprocess.run(["git", "-C", str(mirror), "show", "-s", "--format=%ct", commit],
                               capture_output=True, text=True, timeout=60).stdout.strip()
        return int(epoch)

    def steps(self, source, tree, out, opts):
        present = programs_in(tree)
        if not present:
            raise BuildError(COMPONENT, "find programs",
                             detail=f"the tree has none of {', '.join(PROGRAMS)} under {KVM_DIR}/{arch_dir(tree)}")
        kvm = tree / KVM_DIR
        targets = [kvm / arch_dir(tree) / p for p in present]
        # the prefix map keeps the build path out of the binaries' debug info
        # (-g): the same commit gives the same bytes in any cache directory
        return [
            step("make headers", "make", f"-j{opts.jobs}", "headers", cwd=tree),
            step("make SEV selftests", "make", "-C", kvm, f"-j{opts.jobs}",
                 f"EXTRA_CFLAGS=-ffile-prefix-map={tree}/=", *targets, cwd=tree),
        ]

    def collect(self, source, tree, out, opts):
        bindir = out / "bin"
        bindir.mkdir()
        arts: dict[str, Path] = {}
        present = programs_in(tree)
        for prog in present:
            built = tree / KVM_DIR / arch_dir(tree) / prog
            if not built.is_file():
                raise BuildError(COMPONENT, "collect", detail=f"make left no {built}")
            shutil.copy2(built, bindir / prog)
            arts[prog] = bindir / prog
        notes = [f"not in this tree: {p} ({KVM_DIR}/{arch_dir(tree)}/{p}.c)" for p in PROGRAMS if p not in present]
        settings = tree / KVM_DIR / "settings"
        if settings.is_file():
            shutil.copy2(settings, out / "settings")
            arts["settings"] = out / "settings"
        notes.append(f"programs from {KVM_DIR}/{arch_dir(tree)}")
        version = subprocess.run(["make", "-s", "kernelversion"], cwd=tree, capture_output=True, text=True,
                                 timeout=120).stdout.strip()
        return Built(arts, version, notes)


RECIPE = KvmSelftestsRecipe()


def local_tree_missing(source: Source) -> str | None:
    """Why a local (``file://``) source cannot be used, naming how to make it; None if it can."""
    path = missing_repository(source)
    return None if path is None else f"no kernel tree at {path} (make it: {LOCAL_SOURCES_HINT})"


def build_selftests(source: Source, opts: BuildOptions | None = None,
                    cache: ContentCache | None = None) -> Manifest:
    """Build (or find) the SEV selftests of *source*'s tree; the entry's manifest.

    The engine's build (key, cache, log, work directory, pins) with this
    recipe's extraction (:meth:`KvmSelftestsRecipe.extract`)."""
    manifest, hit = build_or_find(source, opts, RECIPE, cache)
    log.info("kvm-selftests: %s %s commit %s key %s (%s)", source.url or source.tarball, source.ref,
             manifest.commit[:12], manifest.key[:12],
             "cache hit" if hit else f"built in {manifest.build_seconds} s")
    return manifest


def programs_of(manifest: Manifest) -> dict[str, Path]:
    """Program name -> its binary in a manifest's entry."""
    return {p: manifest.artifact(p) for p in PROGRAMS if p in manifest.artifacts}


def timeout_of(manifest: Manifest) -> float:
    """The tree's own per-program limit (kvm/settings), else :data:`DEFAULT_TIMEOUT`."""
    if "settings" in manifest.artifacts:
        found = settings_timeout(manifest.artifact("settings").read_text())
        if found:
            return found
    return DEFAULT_TIMEOUT
