"""AMD's key server (KDS): the URL of a report's VCEK, and the one request that fetches it.

Why: a report is only verified with the VCEK of its chip at its reported
TCB. When the host did not hand that VCEK over (no extended report) and no
one stored it, AMD's key server is the one place it comes from. The answer
is a :class:`KdsAnswer`: the certificate, or ``None`` with the reason it is
unknown (HTTP 404: the server has no VCEK for that chip id and TCB; HTTP
429: it rate-limits this client, with its ``Retry-After``; a network
error). None of those is ever a pass, and a certificate the server returns
is kept only when it parses and carries the report's chip id, product and
TCB (:func:`match_problems`, read with :func:`.snp_vcek.vcek_facts`).

The URL (AMD's VCEK/KDS spec 57230, section 4.1; as built by
google/go-sev-guest ``kds/kds.go`` ``VCEKCertURL``, whose test
``verify/verify_test.go`` maps exactly the URL of the Milan report in
``fixtures/snp-kat`` to the VCEK beside it, and virtee/snpguest
``src/fetch.rs`` ``request_vcek_kds`` for Turin)::

    {base}/vcek/v1/{Milan|Genoa}/{CHIP_ID as 128 hex}?blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=U
    {base}/vcek/v1/Turin/{CHIP_ID[0:8] as 16 hex}?fmcSPL=F&blSPL=B&teeSPL=T&snpSPL=S&ucodeSPL=U
    {base}/vcek/v1/{product}/cert_chain      ASK then ARK (pinned in the package, never fetched)
    {base}/vlek/v1/{product}/cert_chain      ASVK then ARK (for VLEK-signed reports)

The SPLs are the report's REPORTED_TCB components in decimal (go-sev-guest
writes ``%d``; snpguest pads to two digits, the server takes both). On Turin
the fmcSPL comes first (AMD's "Parameters for Turin", read so in
virtee/snphost PR #141) and the hardware id is the chip id's first 8 bytes,
the rest of CHIP_ID being zero (snpguest's Turin test). A VLEK is issued to
a cloud provider, not per chip, and the key server gives it only to that
provider's credentials: it is not fetched here.

Network failures are ordinary in the field (HTTP 404 from the key server:
virtee/snpguest issue #53, edgelesssys/contrast PR #363; HTTP 429 when a
client asks repeatedly: confidential-dot-ai/c8s PR #627), hence the
certificate directory of :mod:`.snp_vcek_source` that a fetch fills once.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass

from cryptography import x509

from ..deadline import Deadline
from .errors import AttestError, FormatError
from .snp_report import PRODUCTS, SnpReport
from .snp_vcek import VcekFacts, vcek_facts

log = logging.getLogger(__name__)

KDS_URL = "https://kdsintf.amd.com"
#: product -> the name the key server's paths use
KDS_PRODUCT_NAMES: dict[str, str] = {"milan": "Milan", "genoa": "Genoa", "turin": "Turin"}
#: query parameter -> TCB component, in the order of the URL (Turin's fmcSPL first)
_QUERY_LEGACY = (("blSPL", "bootloader"), ("teeSPL", "tee"), ("snpSPL", "snp"), ("ucodeSPL", "microcode"))
_QUERY_TURIN = (("fmcSPL", "fmc"), *_QUERY_LEGACY)
#: a VCEK is about 1.3 KiB; anything far larger is not one
MAX_BODY = 64 * 1024
DEFAULT_TIMEOUT = 30.0
TURIN_HWID_SIZE = 8


class KdsError(AttestError):
    """A key-server request that cannot be made as asked (unknown product, a base URL that is not http(s))."""


@dataclass(frozen=True)
class KdsAnswer:
    """What the key server gave: ``cert`` (and its DER) when usable, else ``None`` and why not."""

    url: str
    cert: x509.Certificate | None
    der: bytes | None
    reason: str
    status: int | None = None

    @property
    def ok(self) -> bool:
        return self.cert is not None


def _product(product: str) -> str:
    if product not in PRODUCTS:
        raise KdsError(f"unknown SNP product {product!r}: expected one of {', '.join(PRODUCTS)}")
    return product


def kds_hwid(report: SnpReport, product: str) -> bytes:
    """The hardware id the key server names the chip by: CHIP_ID, or on Turin its first 8 bytes.

    A masked CHIP_ID (all zero) names no chip; a "Turin" CHIP_ID with bytes
    after the eighth is not a Turin chip id. Both are refused (:class:`KdsError`)."""
    _product(product)
    if report.chip_id_masked:
        raise KdsError("the report's CHIP_ID is masked (all zero; MASK_CHIP_ID): it names no chip to ask "
                       "AMD's key server about")
    if product == "turin":
        if any(report.chip_id[TURIN_HWID_SIZE:]):
            raise KdsError("the report's CHIP_ID has bytes after the eighth: not a Turin chip id "
                           "(Turin's hardware id is 8 bytes)")
        return report.chip_id[:TURIN_HWID_SIZE]
    return report.chip_id


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash, if it is an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise KdsError(f"key server URL {base_url!r}: expected http(s)://HOST[:PORT][/PATH]")
    return base_url.rstrip("/")


def vcek_url(report: SnpReport, product: str, base_url: str = KDS_URL) -> str:
    """The URL of the VCEK that signed ``report`` (its chip id and REPORTED_TCB), on ``product``."""
    hwid = kds_hwid(report, product)
    tcb = report.reported_tcb.components(product)
    params = _QUERY_TURIN if product == "turin" else _QUERY_LEGACY
    query = "&".join(f"{name}={tcb[comp]}" for name, comp in params)
    return f"{check_base_url(base_url)}/vcek/v1/{KDS_PRODUCT_NAMES[product]}/{hwid.hex()}?{query}"


def cert_chain_url(product: str, signer: str = "VCEK", base_url: str = KDS_URL) -> str:
    """Where AMD publishes the ASK+ARK (``VCEK``) or ASVK+ARK (``VLEK``) of ``product``."""
    path = {"VCEK": "vcek", "VLEK": "vlek"}.get(signer)
    if path is None:
        raise KdsError(f"signing key {signer!r} has no chain on the key server (expected VCEK or VLEK)")
    return f"{check_base_url(base_url)}/{path}/v1/{KDS_PRODUCT_NAMES[_product(product)]}/cert_chain"


def der_certificate(data: bytes, what: str) -> x509.Certificate:
    """One DER certificate (as the key server and the certificate table carry it), or a :class:`FormatError`.

    AMD's VCEKs may carry a serial number that is not positive (the go-sev-guest
    test VCEK does); ``cryptography`` warns and loads it. The warning says nothing
    about the key, so it is silenced here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*serial number.*")
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise FormatError(f"{what} is not a DER X.509 certificate: {exc}") from exc


def match_problems(report: SnpReport, facts: VcekFacts, product: str, *, chip: bool = True) -> list[str]:
    """Why a VCEK with ``facts`` is not the one for ``report`` on ``product`` (empty: it is).

    Compared: the product name, the hardware id (CHIP_ID, or Turin's 8 bytes;
    not with ``chip=False``: a VLEK names no chip) and each REPORTED_TCB
    component of the product's layout."""
    problems: list[str] = []
    if facts.product is not None and facts.product != product:
        problems.append(f"it is a {facts.product_name} certificate, not {KDS_PRODUCT_NAMES[_product(product)]}")
    if not chip:
        pass
    elif facts.hwid is None:
        problems.append("it carries no hwID")
    elif report.chip_id_masked:
        problems.append("the report's CHIP_ID is masked, so its hwID cannot be compared")
    else:
        want = report.chip_id[:TURIN_HWID_SIZE] if product == "turin" else report.chip_id
        if facts.hwid != want:
            problems.append(f"its hwID {facts.hwid.hex()[:16]}.. is not the report's chip id {want.hex()[:16]}..")
    reported = report.reported_tcb.components(product)
    for comp, level in reported.items():
        if comp not in facts.tcb:
            problems.append(f"it names no {comp} SPL")
        elif facts.tcb[comp] != level:
            problems.append(f"its {comp} SPL is {facts.tcb[comp]}, the report's {level}")
    return problems


def _retry_after(headers: object) -> str:
    value = getattr(headers, "get", lambda _k: None)("Retry-After")
    return f"Retry-After: {value.strip()}" if isinstance(value, str) and value.strip() else "no Retry-After given"


def _http_reason(status: int, phrase: str, headers: object) -> str:
    if status == 404:
        return "AMD's key server has no VCEK for this chip id and TCB (HTTP 404)"
    if status == 429:
        return f"AMD's key server is rate-limiting this client (HTTP 429 Too Many Requests; {_retry_after(headers)})"
    return f"AMD's key server answered HTTP {status}{f' ({phrase})' if phrase else ''}, not a VCEK"


def _read_body(response: http.client.HTTPResponse, deadline: Deadline) -> bytes | str:
    """The body, at most :data:`MAX_BODY` bytes, within ``deadline``; a ``str`` says why not."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if deadline.expired:
            return f"AMD's key server did not finish its answer within {deadline.seconds:g} s"
        chunk = response.read(8192)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY:
            return f"AMD's key server answered more than {MAX_BODY} bytes: not a VCEK"
        chunks.append(chunk)


def fetch_vcek(report: SnpReport, product: str, *, base_url: str = KDS_URL,
               timeout: float = DEFAULT_TIMEOUT) -> KdsAnswer:
    """Ask the key server at ``base_url`` for ``report``'s VCEK; every failure is an answer with its reason.

    Raised (:class:`KdsError`) only for a request that cannot be made as asked:
    an unknown product, a base URL that is not http(s), a masked or non-Turin
    chip id, a report not signed by a VCEK."""
    if report.signer.signing_key != "VCEK":
        raise KdsError(f"the report is signed by {report.signer.signing_key}, not a VCEK: the key server gives "
                       "VLEKs only to the cloud provider they were issued to")
    url = vcek_url(report, product, base_url)
    if not timeout > 0:
        raise KdsError(f"timeout {timeout!r}: expected a positive number of seconds")
    deadline = Deadline(timeout)
    log.info("GET %s (timeout %g s)", url, timeout)
    request = urllib.request.Request(url, headers={"User-Agent": "pytest-sev"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            body = _read_body(response, deadline)
    except urllib.error.HTTPError as exc:
        reason = _http_reason(exc.code, str(exc.reason or ""), exc.headers)
        exc.close()
        log.info("%s: %s", url, reason)
        return KdsAnswer(url, None, None, reason, exc.code)
    except urllib.error.URLError as exc:
        why = exc.reason if not isinstance(exc.reason, OSError) else (exc.reason.strerror or exc.reason)
        return KdsAnswer(url, None, None, f"AMD's key server could not be reached: {why}")
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        return KdsAnswer(url, None, None, f"AMD's key server could not be reached: {type(exc).__name__}: {exc}")
    if isinstance(body, str):
        return KdsAnswer(url, None, None, body, status)
    if status != 200:
        return KdsAnswer(url, None, None, _http_reason(status, "", None), status)
    try:
        cert = der_certificate(body, "the key server's answer")
        facts = vcek_facts(cert)
    except FormatError as exc:
        return KdsAnswer(url, None, None, f"AMD's key server answered HTTP 200 with something unusable: {exc}", status)
    problems = match_problems(report, facts, product)
    if problems:
        return KdsAnswer(url, None, None, "AMD's key server answered with a certificate that is not this report's "
                                          "VCEK: " + "; ".join(problems), status)
    log.info("%s: a VCEK for this chip id and TCB (%d bytes)", url, len(body))
    return KdsAnswer(url, cert, body, "AMD's key server's VCEK for this chip id and TCB", status)


__all__ = ["KDS_URL", "KDS_PRODUCT_NAMES", "MAX_BODY", "DEFAULT_TIMEOUT", "KdsError", "KdsAnswer", "kds_hwid",
           "check_base_url", "vcek_url", "cert_chain_url", "der_certificate", "match_problems", "fetch_vcek"]
