"""Where the VCEK (or VLEK) of an SNP report comes from: the host's certificate table, else a directory.

Why one place: the verifier (:mod:`.snp_verify`) needs the certificate that
signed the report, and there are several places it may be. The order is
fixed here so every caller (the CLI, the suites) finds the same one and can
say where it came from:

1. the extended report's certificate table (``cert_table``, the guest's
   ``auxblob``), when the host supplied one: its ``VCEK`` entry, or its
   ``VLEK`` entry when the report's signer info says VLEK;
2. else a certificate directory (``cert_dir``), filled by
   ``python -m pytest_sev snp-report fetch-vcek`` where AMD's key server is
   reachable (:func:`.snp_kds.fetch_vcek`, :func:`store_vek`);
3. else no certificate, with a reason naming everything that was tried
   (the verifier's ``signature`` and ``chain`` checks are then unknown).

A certificate found whose chip id, product or TCB is not the report's is
not dropped silently: it is returned (the verifier's ``vcek_tcb`` /
``vcek_chip_id`` checks fail it, naming the field) and the reason says so.
The certificate table's ASK (for a VLEK: its ASVK) and ARK are never used:
they come from the host, and the pinned ones (:mod:`.snp_roots`) decide the
chain; when one differs from the pinned one the reason notes it. A VLEK found here is used as a VCEK is: the
verifier checks it against AMD's pinned ASVK chains
(:func:`.snp_roots.pinned_chains`).

The certificate directory layout (one DER certificate per file, as the key
server serves it; PEM is read too)::

    DIR/<product>/<hwid hex>/<REPORTED_TCB as 16 hex digits>.der   a VCEK
    DIR/<product>/vlek/<REPORTED_TCB as 16 hex digits>.der         a VLEK (issued per cloud provider, not per chip)

``<product>`` is ``milan``, ``genoa`` or ``turin``; ``<hwid hex>`` the
hardware id the key server names the chip by: CHIP_ID (128 hex digits),
on Turin its first 8 bytes (16 hex digits); the TCB is the raw u64, e.g.
``DIR/milan/3ac3fe21...6b5d/4405000000000002.der``. When no product is given
and the report's CPUID bytes (version >= 3) name none, every product's
directory is tried.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import AttestError, FormatError
from .snp_certtable import CertTable, CertTableError, parse_cert_table
from .snp_kds import KdsError, der_certificate, kds_hwid, match_problems
from .snp_report import PRODUCTS, SnpReport
from .snp_roots import pinned_chains, read_vcek
from .snp_vcek import vcek_facts

log = logging.getLogger(__name__)

#: ``VcekLookup.source`` values
SOURCE_TABLE = "cert_table"
SOURCE_DIR = "cert_dir"
SOURCE_NONE = "none"
VLEK_DIR = "vlek"


class CertDirError(AttestError):
    """A certificate directory that cannot be written (or a path that cannot be named)."""


@dataclass(frozen=True)
class VcekLookup:
    """The VCEK/VLEK found for a report (``None``: none), where from (``SOURCE_*``) and why."""

    cert: x509.Certificate | None
    source: str
    reason: str


def _check_product(product: str | None) -> None:
    if product is not None and product not in PRODUCTS:
        raise FormatError(f"unknown SNP product {product!r}: expected one of {', '.join(PRODUCTS)}")


def cert_path(cert_dir: Path | str, report: SnpReport, product: str) -> Path:
    """Where ``report``'s VCEK (or VLEK) lives in ``cert_dir`` (see the module doc for the layout)."""
    _check_product(product)
    tcb = f"{report.reported_tcb.raw:016x}.der"
    if report.signer.signing_key == "VLEK":
        return Path(cert_dir) / product / VLEK_DIR / tcb
    if report.signer.signing_key != "VCEK":
        raise CertDirError("the report is not signed (SIGNING_KEY 7: none): it has no certificate to store")
    try:
        hwid = kds_hwid(report, product)
    except KdsError as exc:
        raise CertDirError(f"no place in the certificate directory: {exc}") from exc
    return Path(cert_dir) / product / hwid.hex() / tcb


def store_vek(cert_dir: Path | str, report: SnpReport, product: str, der: bytes) -> Path:
    """Write ``der`` at :func:`cert_path` (atomically: a reader never sees half a file); the path."""
    path = cert_path(cert_dir, report, product)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".der", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(der)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CertDirError(f"cannot write {path}: {exc.strerror or exc}") from exc
    log.info("stored %s (%d bytes)", path, len(der))
    return path


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.public_bytes(Encoding.DER) == b.public_bytes(Encoding.DER)


def _roots_note(table: CertTable, key: str, products: list[str]) -> list[str]:
    """Notes on the table's ASK (ASVK for a VLEK) and ARK against the pinned ones of ``products`` (never used)."""
    entries = {name: table.get(name) for name in ("ASK", "ARK")}
    if not any(entries.values()):
        return []
    try:
        chains = pinned_chains(key, products)
    except AttestError as exc:
        return [f"the table's ASK/ARK were not compared: the pinned ones could not be loaded ({exc})"]
    where = f"AMD's pinned {' or '.join(products)}"
    notes: list[str] = []
    for name, entry in entries.items():
        if entry is None:
            continue
        try:
            cert = der_certificate(entry.data, f"the table's {name} entry")
        except FormatError as exc:
            notes.append(f"{exc}; ignored (the pinned ASK/ARK decide the chain)")
            continue
        pinned = [getattr(chain, name.lower()) for chain in chains.values()]
        said = "ASVK" if name == "ASK" and key == "VLEK" else name
        if not any(_same_cert(cert, p) for p in pinned):
            notes.append(f"the table's {said} is not {where} {said}: ignored (the pinned ASK/ARK decide the chain, "
                         "never the host's)")
    return notes


def _mismatch(report: SnpReport, cert: x509.Certificate, key: str, product: str | None) -> str:
    """Why ``cert`` is not the report's VCEK/VLEK (empty: it is, as far as can be told)."""
    try:
        facts = vcek_facts(cert)
    except FormatError as exc:
        return f"its KDS extensions cannot be read ({exc})"
    the_product = product or report.product_from_cpuid() or facts.product
    if the_product not in PRODUCTS:
        return "the product is unknown, so its TCB was not compared"
    problems = match_problems(report, facts, the_product, chip=key == "VCEK")
    return "; ".join(problems)


def _found(report: SnpReport, cert: x509.Certificate, key: str, product: str | None, source: str, where: str,
           notes: list[str]) -> VcekLookup:
    problem = _mismatch(report, cert, key, product)
    if problem:
        text = (f"the {key} from {where} does NOT match the report ({problem}); returned for the verifier's "
                "vcek_tcb/vcek_chip_id checks to judge")
    else:
        text = f"the {key} from {where}"
    log.info("%s", text)
    return VcekLookup(cert, source, "; ".join([text, *notes]))


def _from_table(report: SnpReport, blob: bytes, key: str, products: list[str], notes: list[str]) -> x509.Certificate | None:
    try:
        table = parse_cert_table(blob)
    except CertTableError as exc:
        notes.append(f"the host's certificate table is refused ({exc})")
        return None
    if not table.entries:
        notes.append("the host's certificate table is empty")
        return None
    notes.extend(_roots_note(table, key, products))
    entry = table.get(key)
    if entry is None:
        notes.append(f"the host's certificate table has no {key} entry (it holds {', '.join(table.names())})")
        return None
    try:
        return der_certificate(entry.data, f"the certificate table's {key} entry")
    except FormatError as exc:
        notes.append(str(exc))
        return None


def _from_dir(report: SnpReport, cert_dir: Path, key: str, products: list[str],
              notes: list[str]) -> tuple[x509.Certificate, Path] | None:
    if not cert_dir.is_dir():
        notes.append(f"the certificate directory {cert_dir} is not a directory")
        return None
    looked: list[str] = []
    for product in products:
        try:
            path = cert_path(cert_dir, report, product)
        except CertDirError as exc:
            notes.append(f"{product}: {exc}")
            continue
        looked.append(str(path.relative_to(cert_dir)))
        if not path.is_file():
            continue
        try:
            return read_vcek(path), path
        except FormatError as exc:
            notes.append(str(exc))
    if looked:
        notes.append(f"no {key} in the certificate directory {cert_dir} (looked for {', '.join(looked)})")
    return None


def find_vcek(report: SnpReport, *, cert_table: bytes | None = None, cert_dir: Path | None = None,
              product: str | None = None) -> VcekLookup:
    """The VCEK (or VLEK) for ``report``: the certificate table's, else the directory's, else none and why.

    ``product`` (``milan``/``genoa``/``turin``) names the directory to look in and the
    TCB layout to compare with; without it the report's CPUID bytes decide, else every
    product is tried. Raises only for an unknown ``product``."""
    _check_product(product)
    key = report.signer.signing_key
    if key == "none":
        return VcekLookup(None, SOURCE_NONE, "the report is not signed (SIGNING_KEY 7: none): it has no VCEK")
    guess = product or report.product_from_cpuid()
    products: list[str] = [guess] if guess else list(PRODUCTS)
    notes: list[str] = []
    if cert_table is not None:
        cert = _from_table(report, cert_table, key, products, notes)
        if cert is not None:
            return _found(report, cert, key, product, SOURCE_TABLE, "the host's certificate table", notes)
    else:
        notes.append("no certificate table given")
    if cert_dir is not None:
        hit = _from_dir(report, Path(cert_dir), key, products, notes)
        if hit is not None:
            cert, path = hit
            return _found(report, cert, key, product or path.relative_to(cert_dir).parts[0], SOURCE_DIR,
                          f"the certificate directory ({path})", notes)
    else:
        notes.append("no certificate directory given")
    reason = f"no {key} found: " + "; ".join(notes)
    log.info("%s", reason)
    return VcekLookup(None, SOURCE_NONE, reason)


__all__ = ["SOURCE_TABLE", "SOURCE_DIR", "SOURCE_NONE", "CertDirError", "VcekLookup", "cert_path", "store_vek",
           "find_vcek"]
