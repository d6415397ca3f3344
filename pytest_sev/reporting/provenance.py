"""What a guest actually ran, read from its QEMU argv (not from configuration).

The configuration says what a run *meant* to use; overrides (``--components``),
per-test specs and fallbacks decide what each guest really got.  The argv is
the one record of that: QEMU binary, OVMF code (and the VARS store), kernel,
initrd, disks.  This module

- parses an argv into the files it names (:func:`argv_files`, pure),
- describes each with path and sha256 (:func:`describe`: the kernel's release
  from its bzImage header, a qcow2 disk's backing chain, the OVMF VARS
  template the guest's store was copied from, the build manifest an artifact
  came from),
- groups guests whose artifacts are the same into *sets* (:func:`set_id`),
  so a run whose guests differ (a plain and an SEV-ES guest on different
  kernels) lists each distinct set, and a guest's attachment names its set,
- remembers every guest of this process (:func:`record`), which the report
  plugin merges across xdist workers at session end.

Files a guest writes (its VARS store, a writable scratch disk) are listed by
path but not hashed: their content is the run's output, not its input.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pytest_sev.cache import file_digest

#: roles in the order a person reads them
ROLE_ORDER = ("qemu", "bios", "ovmf.code", "ovmf.vars-template", "ovmf.vars", "kernel", "initrd")


@dataclass(frozen=True)
class ArgvFile:
    """A file the argv names, with what the argv says about it."""

    role: str                 # qemu, ovmf.code, ovmf.vars, bios, kernel, initrd, disk0, ...
    path: str
    writable: bool = False    # the guest may change it during the run
    fmt: str = ""             # disks: raw / qcow2 as given


@dataclass(frozen=True)
class Artifact:
    role: str
    path: str
    sha256: str = ""          # "" when not hashed (see note)
    detail: str = ""          # kernel release and version string, QEMU version, disk format
    origin: str = ""          # the build manifest it came from, when one matches
    note: str = ""

    def line(self) -> str:
        digest = self.sha256 or "-"
        extra = "; ".join(x for x in (self.detail, self.origin, self.note) if x)
        return f"{self.role:<20} {digest}  {self.path}" + (f"\n{'':<20} {extra}" if extra else "")


@dataclass
class GuestProvenance:
    guest: str
    artifacts: list[Artifact] = field(default_factory=list)

    @property
    def set_id(self) -> str:
        return set_id(self.artifacts)

    def artifact(self, role: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.role == role), None)

    def to_dict(self) -> dict:
        return {"guest": self.guest, "set": self.set_id, "artifacts": [asdict(a) for a in self.artifacts]}

    @classmethod
    def from_dict(cls, data: Mapping) -> GuestProvenance:
        return cls(str(data["guest"]), [Artifact(**a) for a in data.get("artifacts", [])])

    def text(self) -> str:
        head = f"{self.guest}: artifact set {self.set_id} (what its QEMU argv named)"
        return "\n".join([head, *(a.line() for a in self.artifacts)]) + "\n"


# -- argv -> files (pure) --------------------------------------------------------

def split_opts(text: str) -> dict[str, str]:
    """QEMU's ``key=value,key=value`` (``,,`` is a literal comma). Pure.

    A bare first word (``-drive file.img``: implied ``file=``) is kept under ""."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "," and text[i + 1:i + 2] == ",":
            cur.append(",")
            i += 2
            continue
        if ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    out: dict[str, str] = {}
    for n, part in enumerate(parts):
        key, eq, value = part.partition("=")
        if eq:
            out[key] = value
        elif n == 0 and part:
            out[""] = part
        elif part:
            out[part] = "on"
    return out


def _on(value: str | None) -> bool:
    return value in ("on", "true", "yes", "1")


def argv_files(argv: Sequence[str]) -> list[ArgvFile]:
    """Every file a QEMU argv makes the guest run or read, in argv order. Pure."""
    if not argv:
        return []
    files = [ArgvFile("qemu", argv[0])]
    disk = 0
    pflash = 0
    it = iter(range(1, len(argv)))
    for i in it:
        opt, value = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if value is None:
            break
        if opt in ("-kernel", "-initrd", "-bios"):
            files.append(ArgvFile(opt[1:], value))
        elif opt == "-pflash":
            files.append(ArgvFile("ovmf.code" if pflash == 0 else "ovmf.vars", value, writable=pflash > 0))
            pflash += 1
        elif opt == "-device" and value.startswith("loader,"):
            # QEMU's generic loader: bytes copied into guest memory (a preload)
            path = split_opts(value).get("file")
            if path:
                files.append(ArgvFile("preload", path))
        elif opt in ("-hda", "-hdb", "-hdc", "-hdd", "-cdrom"):
            files.append(ArgvFile(f"disk{disk}", value, writable=opt != "-cdrom"))
            disk += 1
        elif opt in ("-drive", "-blockdev"):
            o = split_opts(value)
            path = o.get("file") or o.get("filename") or o.get("")
            if not path or "fd=" in path or path.startswith(("nbd:", "iscsi:", "/dev/fd/")):
                next(it, None)
                continue
            readonly = _on(o.get("readonly")) or _on(o.get("read-only"))
            if o.get("if") == "pflash":
                code = o.get("unit") == "0" or (o.get("unit") is None and pflash == 0) or readonly
                files.append(ArgvFile("ovmf.code" if code else "ovmf.vars", path, writable=not readonly))
                pflash += 1
            else:
                scratch = not readonly and not _on(o.get("snapshot")) and o.get("media") != "cdrom"
                files.append(ArgvFile(f"disk{disk}", path, writable=scratch, fmt=o.get("format", "")))
                disk += 1
        else:
            continue
        next(it, None)  # the value was consumed
    return files


def qcow2_backing(header: bytes) -> str | None:
    """The backing file name a qcow2 header names, or None. Pure."""
    if len(header) < 20 or header[:4] != b"QFI\xfb":
        return None
    offset, size = struct.unpack_from(">QI", header, 8)
    if not offset or not size or offset + size > len(header):
        return None
    return header[offset:offset + size].decode(errors="replace")


def set_id(artifacts: Iterable[Artifact]) -> str:
    """Short digest of the hashed artifacts (role, path, sha256): guests with
    the same one ran the same binaries. Pure."""
    rows = sorted((a.role, a.path, a.sha256) for a in artifacts if a.sha256)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:10]


# -- files -> artifacts (I/O) ----------------------------------------------------

@functools.lru_cache(maxsize=32)
def _qemu_version(path: str, mtime_ns: int) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.splitlines()[0].strip() if out.strip() else ""


def _resolve(path: str, role: str) -> Path:
    if role == "qemu" and os.sep not in path:
        found = shutil.which(path)
        if found:
            return Path(found)
    return Path(path)


def _hashed(role: str, path: Path, detail: str = "", note: str = "", origin: str = "") -> Artifact:
    if not path.is_file():
        return Artifact(role, str(path), detail=detail, note="missing when the report was written")
    return Artifact(role, str(path.resolve()), file_digest(path), detail, origin, note)


def _kernel_detail(path: Path) -> str:
    from pytest_sev.images.bzimage import kernel_version_string
    try:
        with open(path, "rb") as f:
            version = kernel_version_string(f.read(64 * 1024))
    except (OSError, ValueError) as exc:
        return f"no bzImage version ({exc})"
    release, _, rest = version.partition(" ")
    return f"release {release}; {rest}".strip("; ")


def _backing_chain(image: Path, depth: int = 8) -> list[Path]:
    chain: list[Path] = []
    current = image
    for _ in range(depth):
        try:
            with open(current, "rb") as f:
                head = f.read(64 * 1024)
        except OSError:
            break
        name = qcow2_backing(head)
        if not name:
            break
        nxt = Path(name) if os.path.isabs(name) else current.parent / name
        chain.append(nxt)
        current = nxt
    return chain


def origins(manifests: Iterable) -> dict[str, str]:
    """sha256 -> ``built kernel 6.1.187-sev-es from <source> <ref> commit <c> (recipe N)``
    for every artifact of the given build manifests (built ones only)."""
    out: dict[str, str] = {}
    for m in manifests:
        if not m.commit:
            continue
        label = (f"built {m.component} {m.version or ''} from {m.source} {m.ref} commit {m.commit[:12]} "
                 f"(recipe {m.recipe_version}, key {m.key[:12]})")
        for rec in m.artifacts.values():
            out.setdefault(rec["sha256"], " ".join(label.split()))
    return out


def describe(files: Sequence[ArgvFile], vars_template: Path | None = None,
             built: Mapping[str, str] | None = None) -> list[Artifact]:
    """Path, sha256 and details of every file (see the module doc)."""
    built = built or {}
    out: list[Artifact] = []
    for f in files:
        path = _resolve(f.path, f.role)
        if f.role == "ovmf.vars":
            if vars_template is not None:
                out.append(_hashed("ovmf.vars-template", Path(vars_template), note="the guest's VARS store is a copy"))
            out.append(Artifact(f.role, str(path), note="the guest's own VARS store (written by the guest), not hashed"))
            continue
        if f.writable and f.role.startswith("disk"):
            out.append(Artifact(f.role, str(path), detail=f.fmt,
                                note="writable disk (the run's output), not hashed"))
            continue
        detail = ""
        if f.role == "kernel":
            detail = _kernel_detail(path)
        elif f.role == "qemu" and path.is_file():
            detail = _qemu_version(str(path), path.stat().st_mtime_ns)
        elif f.role.startswith("disk"):
            detail = f.fmt
        art = _hashed(f.role, path, detail)
        if art.sha256 in built:
            art = Artifact(art.role, art.path, art.sha256, art.detail, built[art.sha256], art.note)
        out.append(art)
        if f.role.startswith("disk"):
            for n, back in enumerate(_backing_chain(path)):
                out.append(_hashed(f"{f.role}.backing{n or ''}", back))
    return out


def guest_provenance(name: str, argv: Sequence[str], vars_template: Path | None = None,
                     built: Mapping[str, str] | None = None) -> GuestProvenance:
    return GuestProvenance(name, describe(argv_files(argv), vars_template, built))


# -- the session's guests --------------------------------------------------------

_guests: list[GuestProvenance] = []
_lock = threading.Lock()


def record(prov: GuestProvenance) -> None:
    with _lock:
        _guests.append(prov)


def session_records() -> list[dict]:
    """Every guest this process described, as dicts (JSON for xdist workers)."""
    with _lock:
        return [g.to_dict() for g in _guests]


def clear_session() -> None:
    with _lock:
        _guests.clear()


def distinct_sets(records: Iterable[Mapping]) -> list[tuple[str, list[str], list[Artifact]]]:
    """``(set id, guest names, artifacts)`` per distinct set, in first-seen order. Pure."""
    sets: dict[str, tuple[list[str], list[Artifact]]] = {}
    for rec in records:
        prov = GuestProvenance.from_dict(rec)
        sid = prov.set_id
        if sid not in sets:
            # the set's own artifacts: the hashed ones (per-guest files differ by path)
            sets[sid] = ([], [a for a in prov.artifacts if a.sha256])
        sets[sid][0].append(prov.guest)
    return [(sid, guests, arts) for sid, (guests, arts) in sets.items()]
