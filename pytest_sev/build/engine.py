"""Source + recipe -> a cached build entry with its manifest and log.

Key = component, source location, resolved commit, recipe version, the
recipe's config inputs and the patch bytes (see :mod:`.patches`).  A hit is a
``git ls-remote`` plus a stat; concurrent workers building one key wait on
:class:`~pytest_sev.cache.ContentCache`'s lock; a failure leaves no entry
(the cache builds in a temporary directory) but keeps the full log under
``<cache>/build-logs`` and names the failing step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from pytest_sev.build.errors import BuildError
from pytest_sev.build.fetch import checkout, resolve
from pytest_sev.build.manifest import Manifest, artifact_record, read_manifest, record_used, write_manifest
from pytest_sev.build.patches import patch_steps, patches_digest
from pytest_sev.build.recipes import RECIPES, BuildOptions, Recipe
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import StepRunner
from pytest_sev.cache import ContentCache, cache_root, make_key

NAMESPACE = "builds"


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
    opts = opts or BuildOptions()
    recipe = recipe or RECIPES[source.component]
    cache = cache or ContentCache(NAMESPACE)
    commit = resolve(source)
    key = build_key(source, commit, recipe, opts)

    def run(out: Path) -> None:
        _build_into(out, source, commit, key, recipe, opts)

    entry = cache.get_or_build(key, run)
    manifest = read_manifest(entry)
    record_used(manifest)
    return manifest


def _build_into(out: Path, source: Source, commit: str, key: str, recipe: Recipe,
                opts: BuildOptions) -> None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = logs_dir() / f"{source.component}-{key[:12]}-{stamp}-{os.getpid()}.log"
    runner = StepRunner(source.component, log, nice=opts.nice)
    runner.note(f"pytest-sev build of {source.component}: {source.url or source.tarball} "
                f"ref {source.ref or '-'} commit {commit} key {key}")
    prefix = f"{source.component}-{key[:12]}-"
    for stale in _work_root().glob(prefix + "*"):  # a killed build of this key (we hold its lock)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=_work_root()))
    keep = os.environ.get("PYTEST_SEV_KEEP_WORK") == "1"
    start = time.monotonic()
    try:
        tree = work / "src"
        checkout(source, commit, tree, runner)
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
            steps=[list(t) for t in runner.timings], notes=built.notes)
        write_manifest(out, manifest)
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
