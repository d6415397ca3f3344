"""Patch directories, as AMD's ``linux-patches/``, ``qemu-patches/``...

Every ``*.patch`` in the directory is applied with ``patch -p1`` after a
clean checkout, in name order (``0001-...`` first).  Their names (the order)
and bytes are part of the cache key, so editing, adding, removing or
renaming a patch rebuilds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pytest_sev.build.steps import Step, step


def patch_files(directory: Path | None) -> list[Path]:
    if directory is None:
        return []
    if not directory.is_dir():
        raise FileNotFoundError(f"patch directory {directory} does not exist")
    return sorted(p for p in directory.iterdir() if p.suffix == ".patch" and p.is_file())


def patches_digest(directory: Path | None) -> list[tuple[str, str]]:
    """(name, sha256) per patch, in application order: the key's view."""
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in patch_files(directory)]


def patch_steps(directory: Path | None, tree: Path) -> list[Step]:
    return [step(f"patch {p.name}", "patch", "-p1", "--forward", "--batch", cwd=tree, stdin=p)
            for p in patch_files(directory)]
