"""Get a component's source: resolve the ref, mirror it, check out clean.

Refs are resolved to a commit *before* the cache key is computed (the key
holds the commit, not the ref, so a moving branch makes a new build and a
re-tag of the same commit does not).  Git sources are mirrored once per URL
under ``<cache>/git`` and every build checks out from the mirror into a fresh
directory (``clone --shared``: no object copy), which is AMD's "clean
checkout" without re-downloading.  A local repository is mirrored with
``clone --local`` (hard links), so a Linux tree costs seconds, not a repack.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

from filelock import FileLock

from pytest_sev.build.errors import BuildError
from pytest_sev.build.sources import Source
from pytest_sev.build.steps import StepRunner, step
from pytest_sev.cache import cache_root, file_digest

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _git(*args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=_git_env())
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, ["git", *args], proc.stdout, proc.stderr)
    return proc.stdout


def _git_env() -> dict[str, str]:
    import os
    # no prompts for credentials: a private URL must fail, not hang a session
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def local_path(url: str) -> Path | None:
    """The directory of a ``file://`` URL or bare path, else None."""
    if url.startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


def missing_repository(source: Source) -> Path | None:
    """The local directory *source* names when no git repository is there
    (neither a work tree's ``.git`` nor a bare repository's ``HEAD``); None
    for a repository, a remote URL or a tarball."""
    path = local_path(source.url) if source.url else None
    if path is not None and not (path / ".git").exists() and not (path / "HEAD").exists():
        return path
    return None


def pick_ls_remote(output: str, ref: str) -> str | None:
    """Commit for *ref* in ``git ls-remote`` output (peeled tag wins). Pure."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        sha, _, name = line.partition("\t")
        found[name.strip()] = sha.strip()
    for name in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}",
                 f"{ref}^{{}}", ref):
        if name in found:
            return found[name]
    return None


def resolve(source: Source) -> str:
    """The commit (git) or ``sha256:DIGEST`` (tarball) a source pins."""
    if source.kind == "tarball":
        return "sha256:" + source.sha256
    if _COMMIT.fullmatch(source.ref):
        return source.ref
    try:
        out = _git("ls-remote", source.url, source.ref, f"{source.ref}^{{}}", timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        err = getattr(exc, "stderr", "") or str(exc)
        raise BuildError(source.component, "resolve ref",
                         detail=f"git ls-remote {source.url} {source.ref}: {err.strip()[-300:]}") from None
    commit = pick_ls_remote(out, source.ref)
    if commit is None:
        raise BuildError(source.component, "resolve ref",
                         detail=f"{source.ref!r} is neither a branch nor a tag of {source.url}")
    return commit


def mirror_dir(url: str) -> Path:
    return cache_root() / "git" / (hashlib.sha256(url.encode()).hexdigest()[:20] + ".git")


def ensure_mirror(source: Source, commit: str, runner: StepRunner) -> Path:
    """A bare mirror of ``source.url`` that holds *commit* (fetching if needed)."""
    mirror = mirror_dir(source.url)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(mirror) + ".lock"):
        if not (mirror / "HEAD").exists():
            shutil.rmtree(mirror, ignore_errors=True)
            local = local_path(source.url)
            origin = ["--local", str(local)] if local else [source.url]
            runner.run(step("mirror", "git", "clone", "--mirror", "--quiet", *origin, mirror))
        if not _has_commit(mirror, commit):
            runner.run(step("fetch", "git", "-C", mirror, "fetch", "--quiet", "--prune", "--tags",
                            source.url, "+refs/heads/*:refs/heads/*"))
        if not _has_commit(mirror, commit):
            # a bare commit id that no branch or tag carries (allowed by some servers)
            runner.run(step("fetch commit", "git", "-C", mirror, "fetch", "--quiet",
                            source.url, commit))
    return mirror


def _has_commit(repo: Path, commit: str) -> bool:
    try:
        _git("-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}", timeout=60)
        return True
    except subprocess.CalledProcessError:
        return False


def checkout(source: Source, commit: str, dest: Path, runner: StepRunner) -> None:
    """A clean tree of the pinned source at *dest* (must not exist yet)."""
    if source.kind == "tarball":
        tarball = fetch_tarball(source, runner)
        dest.mkdir(parents=True)
        runner.run(step("unpack", "tar", "-xf", tarball, "-C", dest, "--strip-components=1"))
        return
    mirror = ensure_mirror(source, commit, runner)
    runner.run(step("checkout", "git", "clone", "--quiet", "--shared", "--no-checkout", mirror, dest))
    runner.run(step("checkout", "git", "-c", "advice.detachedHead=false", "-C", dest,
                    "checkout", "--quiet", "--detach", commit))
    if source.submodules and (dest / ".gitmodules").exists():
        runner.run(step("submodules", "git", "-C", dest, "submodule", "update", "--init",
                        "--recursive", "--quiet"))


def fetch_tarball(source: Source, runner: StepRunner) -> Path:
    """The tarball, checked against its pinned sha256 (downloaded once)."""
    local = local_path(source.tarball)
    if local is not None:
        path = local
    else:
        store = cache_root() / "tarballs"
        store.mkdir(parents=True, exist_ok=True)
        path = store / f"{source.sha256}-{Path(urllib.parse.urlparse(source.tarball).path).name}"
        if not path.exists():
            runner.note(f"=== step download: {source.tarball}")
            tmp = path.with_suffix(".part")
            try:
                with urllib.request.urlopen(source.tarball, timeout=120) as r, open(tmp, "wb") as f:
                    shutil.copyfileobj(r, f)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise BuildError(source.component, "download", detail=f"{source.tarball}: {exc}") from None
            tmp.rename(path)
    if not path.exists():
        raise BuildError(source.component, "unpack", detail=f"tarball {path} does not exist")
    digest = file_digest(path)
    if digest != source.sha256:
        raise BuildError(source.component, "verify tarball",
                         detail=f"{path}: sha256 {digest}, pinned {source.sha256}")
    return path
