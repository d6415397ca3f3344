"""AMD's published ARK/ASK per EPYC generation, read from a directory.

Why a directory and not embedded bytes: the roots are data AMD publishes
(``https://kdsintf.amd.com/cek/id/...`` / the SEV developer pages); the
project keeps the copies it tested with in ``fixtures/sev-kat/certs/<gen>/``
so a reviewer can compare them with AMD's files, and a site may point at its
own copies. This is the only module of the chain code that does I/O.
"""

from __future__ import annotations

from pathlib import Path

from .cacert import CaCert, parse_ca_cert
from .errors import ChainError

GENERATIONS: tuple[str, ...] = ("naples", "rome", "milan", "genoa", "turin")

#: The copies in a source checkout (``fixtures/sev-kat/certs``).
DEFAULT_CERTS_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "sev-kat" / "certs"


def load_roots(generation: str, certs_dir: Path | str = DEFAULT_CERTS_DIR) -> tuple[CaCert, CaCert]:
    """``(ARK, ASK)`` of ``generation`` from ``certs_dir/<generation>/{ark,ask}.cert``."""
    if generation not in GENERATIONS:
        raise ChainError(f"unknown EPYC generation {generation!r}: expected one of {', '.join(GENERATIONS)}")
    base = Path(certs_dir) / generation
    try:
        ark = parse_ca_cert((base / "ark.cert").read_bytes(), f"{generation} ARK")
        ask = parse_ca_cert((base / "ask.cert").read_bytes(), f"{generation} ASK")
    except OSError as exc:
        raise ChainError(f"cannot read the {generation} ARK/ASK under {base}: {exc}") from exc
    return ark, ask


def load_all_roots(certs_dir: Path | str = DEFAULT_CERTS_DIR) -> dict[str, tuple[CaCert, CaCert]]:
    """Every generation whose ARK/ASK is present under ``certs_dir``."""
    out = {}
    for gen in GENERATIONS:
        if (Path(certs_dir) / gen / "ark.cert").exists():
            out[gen] = load_roots(gen, certs_dir)
    return out
