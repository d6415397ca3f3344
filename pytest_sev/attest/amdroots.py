"""AMD's published ARK/ASK per EPYC generation: shipped in the package, pinned by digest.

Why shipped and pinned: the ARK is the one trust anchor of an SEV platform
chain. A chain is only worth sealing a session to when its CEK traces to
AMD's ASK and ARK, so those two certificates must not come from the platform
(or from whoever controls the host): the package carries AMD's files
(``pytest_sev/attest/amdcerts/<gen>/{ark,ask}.cert``, copied unchanged from
AMD's SEV developer pages via the sev-kat vectors) and every load checks the
bytes against the SHA-256 recorded here, so a swapped file (a test ARK, a
site's "own copy") is refused instead of trusted. This is the only module of
the chain code that does I/O (it also reads the ``--sev-cek`` file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .cacert import CaCert, parse_ca_cert
from .errors import ChainError
from .sevcert import USAGE_CEK, SevCert, parse_sev_cert

GENERATIONS: tuple[str, ...] = ("naples", "rome", "milan", "genoa", "turin")

#: The copies shipped with the package.
DEFAULT_CERTS_DIR = Path(__file__).resolve().parent / "amdcerts"

#: SHA-256 of AMD's published files, (generation, "ark"|"ask") -> hex
PINNED_SHA256: dict[tuple[str, str], str] = {
    ("naples", "ark"): "dedabca561e1dece8cc00b7bda864cf5f20b95017864408cfe18eaee0dce24b9",
    ("naples", "ask"): "c6f30cf923f526c3bcd5c8c221db51e0db65911782f046de17a6603131cdfd7f",
    ("rome", "ark"): "865977b268c16d5b27772b00aaefb4e737ba9499e818ed8e9f65b0cecefbc529",
    ("rome", "ask"): "7754a69407d25540fe3a695be6b02c58a53bffd12594f5c30793d6cb62875706",
    ("milan", "ark"): "1246469862b78a7a8625579b0378d1f8e975eb8b82a1623b579d7968a5969888",
    ("milan", "ask"): "c7c73765561c58003a3d09adb2c76993027dd3a1ec4e9be876024c035e015cec",
    ("genoa", "ark"): "8f4e3fd36589c23f1fe0c8338465bac7e2e066d97fc92f228bbee4fd356fb674",
    ("genoa", "ask"): "c30307e4f594fb6c51fd753ab758eb78ad4bb70d9e4d96690e51c0621901031d",
    ("turin", "ark"): "f6405e5096a6eee1eb7d5df75c49f9b9f7c8357a31c7fff150149d68588a7bf7",
    ("turin", "ask"): "2ee285477f0d5eb94a69029197f4cf58ca82d8e1b9a276da1ac45b0db3f4be56",
}


def _read_pinned(base: Path, generation: str, role: str) -> CaCert:
    path = base / f"{role}.cert"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChainError(f"cannot read the {generation} {role.upper()} {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != PINNED_SHA256[(generation, role)]:
        raise ChainError(f"{path} is not AMD's published {generation} {role.upper()} "
                         f"(sha256 {digest}, pinned {PINNED_SHA256[(generation, role)]})")
    return parse_ca_cert(data, f"{generation} {role.upper()}")


def load_roots(generation: str, certs_dir: Path | str = DEFAULT_CERTS_DIR) -> tuple[CaCert, CaCert]:
    """``(ARK, ASK)`` of ``generation`` from ``certs_dir/<generation>/{ark,ask}.cert``,
    each byte-identical to AMD's published file or a :class:`ChainError`."""
    if generation not in GENERATIONS:
        raise ChainError(f"unknown EPYC generation {generation!r}: expected one of {', '.join(GENERATIONS)}")
    base = Path(certs_dir) / generation
    return _read_pinned(base, generation, "ark"), _read_pinned(base, generation, "ask")


def load_all_roots(certs_dir: Path | str = DEFAULT_CERTS_DIR) -> dict[str, tuple[CaCert, CaCert]]:
    """Every generation whose ARK/ASK is present under ``certs_dir`` (all five in the package)."""
    out = {}
    for gen in GENERATIONS:
        if (Path(certs_dir) / gen / "ark.cert").exists():
            out[gen] = load_roots(gen, certs_dir)
    return out


def read_cek_file(path: Path | str) -> SevCert:
    """AMD's signed CEK of one chip (``--sev-cek``), as AMD's key server serves it:
    one SEV certificate of usage CEK, or a :class:`ChainError`/``FormatError`` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ChainError(f"cannot read the CEK file {path}: {exc}") from exc
    cert = parse_sev_cert(data, f"CEK file {path}")
    if cert.usage != USAGE_CEK:
        raise ChainError(f"CEK file {path} holds a {cert.name} certificate, not a CEK")
    return cert
