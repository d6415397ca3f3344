"""The static fio the embedded guest carries, found (or built once) in the cache.

Why a lookup of its own: the DMA guests' initramfs embeds fio; a static
build (:class:`pytest_sev.build.recipes.FioRecipe`, from the sources file's
``[fio]`` tree) makes that initramfs 88 MB smaller and every DMA boot
1.5-2 s shorter under TCG.  scripts/setup.sh builds it, so here it is a cache
hit; where the tree is missing (no deb-src, another sources file) or the build
fails, the guest falls back to the host's fio with its shared libraries, as
before, and the log says why: both run the same load.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from pytest_sev.build.engine import build_or_find
from pytest_sev.build.errors import BuildError, SourcesError
from pytest_sev.build.fetch import missing_repository
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import default_sources_file, load_sources

log = logging.getLogger(__name__)

COMPONENT = "fio"
#: how a missing tree is made
LOCAL_SOURCES_HINT = "bash scripts/local-sources.sh fio"


@functools.lru_cache(maxsize=4)
def static_fio(sources_file: Path | None = None) -> tuple[Path | None, str]:
    """(the static fio, how it was found) or (None, why not) for *sources_file*
    (default: :func:`default_sources_file`).  Memoized: one answer per run."""
    path = sources_file or default_sources_file()
    try:
        source = load_sources(path).get(COMPONENT)
    except SourcesError as exc:
        return None, str(exc)
    if source is None:
        return None, f"{path} has no [{COMPONENT}] table"
    missing = missing_repository(source)
    if missing is not None:
        return None, f"no fio tree at {missing} (make it: {LOCAL_SOURCES_HINT})"
    try:
        manifest, hit = build_or_find(source, BuildOptions(nice=19))
    except (BuildError, SourcesError) as exc:
        log.warning("static fio: %s", exc)
        return None, f"the static fio did not build: {str(exc).splitlines()[0]}"
    how = f"{manifest.version} commit {manifest.commit[:12]} ({'cache hit' if hit else 'built'}, entry {manifest.entry})"
    return manifest.artifact(COMPONENT), how
