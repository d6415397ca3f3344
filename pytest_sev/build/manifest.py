"""What a build was: one JSON manifest per cache entry, and the session's list.

The manifest answers "which QEMU/OVMF/kernel did this run use, built from
what": component, URL, ref, resolved commit, version string, every artifact
with its sha256, how long the build took, and what a rebuild needs to
reproduce it (the ``SOURCE_DATE_EPOCH`` it used, the toolchain).  Another
runner's entry is checked against these hashes with
``python -m pytest_sev build --verify --against MANIFEST``.  The report lists the ones a
session used with :func:`session_manifests`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pytest_sev.cache import file_digest

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Manifest:
    component: str
    source: str                 # git URL, tarball, "system" or "prefix:PATH"
    ref: str
    commit: str
    version: str
    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {path, sha256}
    build_seconds: float = 0.0
    recipe_version: int = 0
    key: str = ""
    entry: str = ""
    inputs: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source_date_epoch: int = 0          # the clock every step saw (reproducible builds)
    toolchain: dict[str, str] = field(default_factory=dict)  # gcc/ld/make versions
    build_dir: str = ""                 # where it was built (the prefix map removes it)
    patches: list = field(default_factory=list)  # (name, sha256) of each patch applied

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def artifact(self, name: str) -> Path:
        return Path(self.artifacts[name]["path"])


def artifact_record(path: Path, root: Path | None = None) -> dict[str, str]:
    """``{path, sha256}``; *path* is stored relative to *root* when given."""
    shown = str(path.relative_to(root)) if root else str(path)
    return {"path": shown, "sha256": file_digest(path)}


def write_manifest(entry_dir: Path, manifest: Manifest) -> Path:
    out = entry_dir / MANIFEST_NAME
    out.write_text(manifest.to_json() + "\n")
    return out


def read_manifest(entry: Path) -> Manifest:
    """The manifest of a cache entry, artifact paths made absolute."""
    data = json.loads((entry / MANIFEST_NAME).read_text())
    for rec in data.get("artifacts", {}).values():
        if not Path(rec["path"]).is_absolute():
            rec["path"] = str(entry / rec["path"])
    data["entry"] = str(entry)
    return Manifest.from_dict(data)


_used: list[Manifest] = []
_lock = threading.Lock()


def record_used(manifest: Manifest) -> None:
    with _lock:
        if manifest not in _used:
            _used.append(manifest)


def session_manifests() -> list[Manifest]:
    """Manifests of every component this process used, in first-use order."""
    with _lock:
        return list(_used)


def clear_session() -> None:
    with _lock:
        _used.clear()
