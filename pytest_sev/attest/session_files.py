"""Writing a LAUNCH_START to disk for QEMU, keys in a private directory.

Why its own module: this is the only place the owner's secrets touch the
file system. The directory is created 0700 (and refused if it exists with
wider permissions), each file 0600, so the TEK/TIK and the owner's private
key are never readable by another user even for a moment.

Files: ``godh.b64`` (``dh-cert-file``), ``session.b64`` (``session-file``),
``tek.bin``, ``tik.bin`` (raw 16 bytes each, as sevctl writes them) and
``owner-dh.pem`` (PKCS#8 private key, unencrypted: the directory is the guard).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import SessionError
from .session import LaunchStart

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionFiles:
    directory: Path
    dh_cert: Path
    session: Path
    tek: Path
    tik: Path
    owner_key: Path

    def qemu_object_options(self) -> str:
        """The ``sev-guest`` properties naming these files."""
        return f"dh-cert-file={self.dh_cert},session-file={self.session}"


def private_dir(path: Path | str) -> Path:
    """Create ``path`` mode 0700, or accept it if it exists with no group/other access."""
    p = Path(path)
    try:
        p.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        mode = stat.S_IMODE(p.stat().st_mode)
        if not p.is_dir() or mode & 0o077:
            raise SessionError(f"{p} exists with mode {mode:#o}; the owner's keys need a 0700 directory") from None
    os.chmod(p, 0o700)
    return p


def _write(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return path


def write_session(start: LaunchStart, owner_key: ec.EllipticCurvePrivateKey,
                  directory: Path | str) -> SessionFiles:
    """Write ``start`` and the owner's key into the private ``directory``."""
    d = private_dir(directory)
    pem = owner_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    files = SessionFiles(
        d,
        _write(d / "godh.b64", start.dh_cert_b64().encode()),
        _write(d / "session.b64", start.session_b64().encode()),
        _write(d / "tek.bin", start.tek),
        _write(d / "tik.bin", start.tik),
        _write(d / "owner-dh.pem", pem),
    )
    log.info("wrote LAUNCH_START session for policy %#x into %s", start.policy, d)
    return files
