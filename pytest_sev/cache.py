"""Content-addressed cache shared by every pytest-sev process on a machine.

An entry is a directory named after the SHA-256 of everything that decides its
contents (the *key*).  Entries are built in a private temporary directory and
renamed into place, so a reader never sees a half-written entry, and builders
of the same key serialise on a file lock (pytest-xdist workers wait for one
build instead of racing).  A hit costs a stat.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def cache_root() -> Path:
    """Where entries live: ``$PYTEST_SEV_CACHE`` or ``~/.cache/pytest-sev``."""
    env = os.environ.get("PYTEST_SEV_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-sev"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed (kernel packages are tens of MiB).

    Remembered per (path, size, mtime, inode) for the life of the process:
    every guest spec asks for its initramfs, whose key hashes fio's ~80 MiB
    of libraries, and those files do not change between guests."""
    st = os.stat(path)
    return _digest(str(path), st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=512)
def _digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_key(**inputs: object) -> str:
    """Stable key from named inputs (strings, numbers, lists, dicts)."""
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


class ContentCache:
    """One namespace (``kernels``, ``initramfs``, ...) of the cache."""

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.dir = (root or cache_root()) / namespace
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.dir / key

    def get(self, key: str) -> Path | None:
        entry = self.path(key)
        return entry if (entry / ".complete").exists() else None

    def get_or_build(self, key: str, build: Callable[[Path], None]) -> Path:
        """Return the entry for *key*, calling ``build(tmpdir)`` once if absent.

        ``build`` fills an empty directory; on any exception nothing is left
        behind in the cache and the exception propagates.
        """
        hit = self.get(key)
        if hit:
            return hit
        with FileLock(str(self.dir / f"{key}.lock")):
            hit = self.get(key)
            if hit:
                return hit
            for stale in self.dir.glob(f".{key[:12]}-*"):  # left by a killed builder of this key
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.dir))
            try:
                build(tmp)
                (tmp / ".complete").write_text(key + "\n")
                final = self.path(key)
                if final.exists():  # a stale, incomplete entry from a crash
                    shutil.rmtree(final)
                tmp.rename(final)
                return final
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
