"""Source + recipe -> a cached build entry with its manifest and log.

Key = component, source location, resolved commit, recipe version, the
recipe's config inputs and the patch bytes (see :mod:`.patches`).  A hit is a
``git ls-remote`` plus a stat; concurrent workers building one key wait on
:class:`~pytest_sev.cache.ContentCache`'s lock; a failure leaves no entry
(the cache builds in a temporary directory) but keeps the full log under
``<cache>/build-logs`` and names the failing step.  The tree a build runs in
is the recipe's :meth:`~pytest_sev.build.recipes.Recipe.extract` (by default
a full checkout of the commit; the KVM selftests take a few paths of it).

Reproducible (see :mod:`.reproducible`): every step runs with the source's
date as ``SOURCE_DATE_EPOCH`` and the recipe's pinned environment, in a work
directory named by the key alone; a source may pin the sha256 of artifacts
(``expect``), checked on every build and every cache hit; :func:`verify`
rebuilds outside the cache and compares with an entry's manifest.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from pathlib import Path

from filelock import FileLock

from pytest_sev.build.errors import BuildError
from pytest_sev.build.fetch import resolve
from pytest_sev.build.manifest import Manifest, artifact_record, read_manifest, record_used, write_manifest
from pytest_sev.build.patches import patch_steps, patches_digest
from pytest_sev.build.recipes import RECIPES, BuildOptions, Recipe
from pytest_sev.build.reproducible import base_env, check_pins, compare_artifacts, toolchain
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import StepRunner
from pytest_sev.cache import ContentCache, cache_root, make_key

NAMESPACE = "builds"
_SEQ = itertools.count(1)  # two builds of one key in one second (verify) keep two logs


def logs_dir() -> Path:
    return cache_root() / "build-logs"


def build_key(source: Source, commit: str, recipe: Recipe, opts: BuildOptions) -> str:
    try:
        patches = patches_digest(source.patches)
    except FileNotFoundError as exc:
        raise BuildError(source.component, "patches", detail=str(exc)) from None
    return make_key(
        component=recipe.component, source=source.url or source.tarball, commit=commit,
        recipe=recipe.version, inputs=recipe.inputs(source, opts), patches=patches)


def build(source: Source, opts: BuildOptions | None = None, recipe: Recipe | None = None,
          cache: ContentCache | None = None) -> Manifest:
    """Build (or find) *source* with its recipe; returns the entry's manifest."""
    return build_or_find(source, opts, recipe, cache)[0]


def build_or_find(source: Source, opts: BuildOptions | None = None, recipe: Recipe | None = None,
                  cache: ContentCache | None = None) -> tuple[Manifest, bool]:
    """:func:`build`, also saying whether the entry was there already (a cache hit)."""
    opts = opts or BuildOptions()
    recipe = recipe or RECIPES[source.component]
    cache = cache or ContentCache(NAMESPACE)
    commit = resolve(source)
    key = build_key(source, commit, recipe, opts)
    hit = cache.get(key) is not None

    def run(out: Path) -> None:
        _build_into(out, source, commit, key, recipe, opts)

    entry = cache.get_or_build(key, run)
    manifest = read_manifest(entry)
    _check_pins(source, manifest)  # a cache hit too: an entry from elsewhere must match
    record_used(manifest)
    return manifest, hit


def _check_pins(source: Source, manifest: Manifest) -> None:
    problems = check_pins(source.component, manifest.artifacts, source.expect)
    if problems:
        where = f" (entry {manifest.entry})" if manifest.entry else ""
        raise BuildError(source.component, "verify artifacts",
                         detail="; ".join(problems) + where + "; toolchain " +
                         ", ".join(f"{k}: {v}" for k, v in manifest.toolchain.items()))


def rebuild(source: Source, dest: Path, opts: BuildOptions | None = None,
            recipe: Recipe | None = None) -> Manifest:
    """Build *source* again into *dest* (not the cache), whatever the cache holds."""
    opts = opts or BuildOptions()
    recipe = recipe or RECIPES[source.component]
    commit = resolve(source)
    key = build_key(source, commit, recipe, opts)
    dest.mkdir(parents=True, exist_ok=False)
    _build_into(dest, source, commit, key, recipe, opts, pins=False)
    return read_manifest(dest)


def verify(source: Source, opts: BuildOptions | None = None, recipe: Recipe | None = None,
           reference: Manifest | None = None,
           rebuild_: bool = True) -> tuple[Manifest, Manifest, list[tuple[str, str, str, bool]]]:
    """Compare artifacts: ``(reference, candidate, rows)``, a row per artifact.

    *reference* is another runner's manifest, or (None) this cache's entry,
    built first if missing.  The candidate is a rebuild into a temporary
    directory under ``<cache>/verify`` (removed afterwards), or, with
    ``rebuild_=False`` and another runner's *reference*, this cache's entry."""
    if reference is None:
        reference = build(source, opts, recipe)
        rebuild_ = True
    if not rebuild_:
        return _compared(source, reference, build(source, opts, recipe))
    root = cache_root() / "verify"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{source.component}-", dir=root))
    try:
        return _compared(source, reference, rebuild(source, tmp / "entry", opts, recipe))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compared(source: Source, reference: Manifest,
              again: Manifest) -> tuple[Manifest, Manifest, list[tuple[str, str, str, bool]]]:
    if reference.key and again.key != reference.key and _what_was_built(reference) != _what_was_built(again):
        # (the key also holds the source's location, which differs between machines)
        raise BuildError(source.component, "verify",
                         detail=f"the reference manifest is of key {reference.key[:12]}, this source and "
                                f"recipe make key {again.key[:12]} (another commit, recipe or inputs)")
    return reference, again, compare_artifacts(reference.artifacts, again.artifacts)


def _what_was_built(m: Manifest) -> tuple:
    return m.component, m.commit, m.recipe_version, m.inputs, m.patches


def _build_into(out: Path, source: Source, commit: str, key: str, recipe: Recipe,
                opts: BuildOptions, pins: bool = True) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = logs_dir() / f"{source.component}-{key[:12]}-{stamp}-{os.getpid()}-{next(_SEQ)}.log"
    runner = StepRunner(source.component, log, nice=opts.nice)
    runner.note(f"pytest-sev build of {source.component}: {source.url or source.tarball} "
                f"ref {source.ref or '-'} commit {commit} key {key}")
    # The work directory is named by the key alone (no random part): what a
    # build records of its path is then the same for every build of the key
    # under one work root, and -ffile-prefix-map removes the root itself.
    work = _work_root() / f"{source.component}-{key[:12]}"
    with FileLock(str(work) + ".lock"):  # two caches sharing a work root, or verify
        _build_in(work, out, source, commit, key, recipe, opts, runner, log, pins)


def _build_in(work: Path, out: Path, source: Source, commit: str, key: str, recipe: Recipe,
              opts: BuildOptions, runner: StepRunner, log: Path, pins: bool) -> None:
    shutil.rmtree(work, ignore_errors=True)  # a killed build of this key
    work.mkdir(parents=True)
    keep = os.environ.get("PYTEST_SEV_KEEP_WORK") == "1"
    start = time.monotonic()
    try:
        tree = work / "src"
        epoch = recipe.extract(source, commit, tree, work, runner)
        runner.env.update(base_env(epoch))
        runner.env.update(recipe.environment(source, tree, work, epoch))
        runner.note("=== reproducible build environment: " +
                    " ".join(f"{k}={v}" for k, v in sorted(runner.env.items()) if k != "PATH"))
        runner.run_all(patch_steps(source.patches, tree))
        runner.run_all(recipe.steps(source, tree, out, opts))
        built = recipe.collect(source, tree, out, opts)
        seconds = round(time.monotonic() - start, 1)
        runner.note(f"=== done in {seconds} s")
        shutil.copy2(log, out / "build.log")
        manifest = Manifest(
            component=source.component, source=source.url or source.tarball, ref=source.ref,
            commit=commit, version=built.version,
            artifacts={name: artifact_record(p, out) for name, p in built.artifacts.items()},
            build_seconds=seconds, recipe_version=recipe.version, key=key,
            inputs=recipe.inputs(source, opts),
            steps=[list(t) for t in runner.timings], notes=built.notes,
            source_date_epoch=epoch, toolchain=toolchain(), build_dir=str(tree),
            patches=patches_digest(source.patches))
        write_manifest(out, manifest)
        if pins:
            _check_pins(source, manifest)
    except BuildError:
        raise
    except Exception as exc:  # a recipe bug or I/O error: still name where
        raise BuildError(source.component, "collect", detail=f"{type(exc).__name__}: {exc}",
                         log=log) from exc
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _work_root() -> Path:
    root = Path(os.environ.get("PYTEST_SEV_BUILD_DIR") or cache_root() / "work")
    root.mkdir(parents=True, exist_ok=True)
    return root
