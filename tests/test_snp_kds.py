"""AMD's key server: the VCEK URL (a known answer from go-sev-guest), and fetches from a real local HTTP server.

The server is ``http.server`` on 127.0.0.1 in a thread, answering what AMD's
key server answers in the field: 200 with the DER VCEK, 404 (virtee/snpguest
issue #53 "Unable to fetch VCEK from URL: 404"), 429 (confidential-dot-ai/c8s
PR #627, "status 429" from kdsintf.amd.com). The bodies and headers of the
error answers are reconstructed (no capture of them was found): a 429 is
tried with and without ``Retry-After``. The 200 body is the real Milan VCEK
of ``fixtures/snp-kat`` (go-sev-guest ``verify/testdata/vcek.testcer``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from snp_report_forge import make_forge, make_report, tcb_legacy, tcb_turin

from pytest_sev.attest.snp_kds import (
    KdsError,
    cert_chain_url,
    der_certificate,
    fetch_vcek,
    kds_hwid,
    match_problems,
    vcek_url,
)
from pytest_sev.attest.snp_report import SnpReport, parse_report
from pytest_sev.attest.snp_vcek import vcek_facts

KAT = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat" / "reports"
REPORT = parse_report((KAT / "gosev-milan-report.bin").read_bytes())
VCEK_DER = (KAT / "gosev-milan-vcek.der").read_bytes()
CHIP_HEX = ("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea4"
            "64cdce40c05f63c9b610c5068b006b5d")
#: go-sev-guest verify/verify_test.go (commit af1c107) maps exactly this URL to the VCEK above
GOSEV_URL = f"https://kdsintf.amd.com/vcek/v1/Milan/{CHIP_HEX}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"
PATH = GOSEV_URL.removeprefix("https://kdsintf.amd.com")
REPORT_VCEK = der_certificate(VCEK_DER, "the real Milan VCEK")

TURIN_CHIP = bytes(range(0xA1, 0xA9)) + bytes(56)


def turin_report(chip: bytes = TURIN_CHIP) -> SnpReport:
    return parse_report(make_report(reported_tcb=tcb_turin(fmc=1, bootloader=9, tee=2, snp=24, microcode=72), chip_id=chip))


# -- the URL ------------------------------------------------------------------------

def test_milan_url_is_go_sev_guests() -> None:
    assert vcek_url(REPORT, "milan") == GOSEV_URL


def test_turin_url_has_fmc_first_and_an_8_byte_hwid() -> None:
    assert vcek_url(turin_report(), "turin") == (
        "https://kdsintf.amd.com/vcek/v1/Turin/a1a2a3a4a5a6a7a8?fmcSPL=1&blSPL=9&teeSPL=2&snpSPL=24&ucodeSPL=72")


def test_genoa_url_and_base_url_with_a_path() -> None:
    assert vcek_url(REPORT, "genoa", "http://127.0.0.1:8080/kds/") == (
        f"http://127.0.0.1:8080/kds/vcek/v1/Genoa/{CHIP_HEX}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68")


def test_cert_chain_urls() -> None:
    assert cert_chain_url("milan") == "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
    assert cert_chain_url("turin", "VLEK") == "https://kdsintf.amd.com/vlek/v1/Turin/cert_chain"
    with pytest.raises(KdsError, match="signing key 'none' has no chain"):
        cert_chain_url("milan", "none")


def test_hwid_refusals() -> None:
    assert kds_hwid(REPORT, "milan").hex() == CHIP_HEX
    assert kds_hwid(turin_report(), "turin") == TURIN_CHIP[:8]
    with pytest.raises(KdsError, match="bytes after the eighth: not a Turin chip id"):
        kds_hwid(REPORT, "turin")
    with pytest.raises(KdsError, match="CHIP_ID is masked"):
        kds_hwid(parse_report(make_report(chip_id=bytes(64))), "milan")
    with pytest.raises(KdsError, match="unknown SNP product 'rome'"):
        vcek_url(REPORT, "rome")


@pytest.mark.parametrize("base", ["ftp://kdsintf.amd.com", "kdsintf.amd.com", "https://", "file:///tmp/x"])
def test_bad_base_url_refused(base: str) -> None:
    with pytest.raises(KdsError, match="expected http\\(s\\)://HOST"):
        vcek_url(REPORT, "milan", base)


# -- whether a certificate is the report's -------------------------------------------

def test_match_problems_real_vcek_matches_and_each_field_is_compared() -> None:
    facts = vcek_facts(REPORT_VCEK)
    assert match_problems(REPORT, facts, "milan") == []
    assert match_problems(REPORT, facts, "genoa") == ["it is a Milan-B0 certificate, not Genoa"]
    forged = vcek_facts(make_forge(bootloader=2, tee=0, snp=4, microcode=68).vcek)
    problems = match_problems(REPORT, forged, "milan")
    assert problems == [f"its hwID 0102030405060708.. is not the report's chip id {CHIP_HEX[:16]}..",
                        "its snp SPL is 4, the report's 5"]
    assert match_problems(REPORT, forged, "milan", chip=False) == ["its snp SPL is 4, the report's 5"]
    no_hwid = vcek_facts(make_forge(bootloader=2, tee=0, snp=5, microcode=68, hwid=None).vcek)
    assert match_problems(REPORT, no_hwid, "milan") == ["it carries no hwID"]
    assert match_problems(REPORT, no_hwid, "milan", chip=False) == []


def test_match_problems_turin_needs_fmc_and_8_bytes() -> None:
    good = make_forge(fmc=1, bootloader=9, tee=2, snp=24, microcode=72, product_name="Turin-B0", hwid=TURIN_CHIP[:8],
                      hwid_octet_string=True)
    assert match_problems(turin_report(), vcek_facts(good.vcek), "turin") == []
    no_fmc = make_forge(bootloader=9, tee=2, snp=24, microcode=72, product_name="Turin-B0", hwid=TURIN_CHIP[:8],
                        hwid_octet_string=True)
    assert match_problems(turin_report(), vcek_facts(no_fmc.vcek), "turin") == ["it names no fmc SPL"]
    assert match_problems(parse_report(make_report(chip_id=bytes(64))), vcek_facts(good.vcek), "turin")[0] == (
        "the report's CHIP_ID is masked, so its hwID cannot be compared")


# -- the fetch, against a real HTTP server -------------------------------------------

@dataclass
class Kds:
    """A local stand-in for the key server: path?query -> (status, headers, body), every request recorded."""

    url: str
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    delay: float = 0.0
    seen: list[str] = field(default_factory=list)


@contextlib.contextmanager
def serve_kds() -> Iterator[Kds]:
    """A :class:`Kds` served by ``http.server`` on 127.0.0.1 (a free port) in a thread, shut down on exit."""
    state = Kds("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.seen.append(self.path)
            if state.delay:
                time.sleep(state.delay)
            status, headers, body = state.routes.get(self.path, (404, {}, b"Not Found"))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def kds() -> Iterator[Kds]:
    with serve_kds() as state:
        yield state


def test_200_gives_the_vcek(kds: Kds) -> None:
    kds.routes[PATH] = (200, {"Content-Type": "application/pkix-cert"}, VCEK_DER)
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert answer.ok and answer.der == VCEK_DER and answer.status == 200
    assert answer.cert.public_bytes(Encoding.DER) == VCEK_DER  # type: ignore[union-attr]
    assert kds.seen == [PATH] and answer.url == kds.url + PATH


def test_404_is_unknown_with_the_reason(kds: Kds) -> None:
    kds.routes[PATH] = (404, {}, b"")
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.cert is None and answer.der is None and answer.status == 404
    assert answer.reason == "AMD's key server has no VCEK for this chip id and TCB (HTTP 404)"


@pytest.mark.parametrize("headers, words", [
    ({"Retry-After": "120"}, "(HTTP 429 Too Many Requests; Retry-After: 120)"),
    ({}, "(HTTP 429 Too Many Requests; no Retry-After given)"),
])
def test_429_names_the_rate_limit(kds: Kds, headers: dict[str, str], words: str) -> None:
    kds.routes[PATH] = (429, headers, b"Too Many Requests")
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.status == 429
    assert answer.reason == f"AMD's key server is rate-limiting this client {words}"


def test_500_and_non_200_success(kds: Kds) -> None:
    kds.routes[PATH] = (500, {}, b"oops")
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.reason == "AMD's key server answered HTTP 500 (Internal Server Error), not a VCEK"
    kds.routes[PATH] = (203, {}, VCEK_DER)
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.reason == "AMD's key server answered HTTP 203, not a VCEK"


def test_garbage_200_is_unknown(kds: Kds) -> None:
    kds.routes[PATH] = (200, {}, b"<html>maintenance</html>")
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.status == 200
    assert answer.reason.startswith("AMD's key server answered HTTP 200 with something unusable: "
                                    "the key server's answer is not a DER X.509 certificate")


def test_a_certificate_for_another_chip_or_tcb_is_not_taken(kds: Kds) -> None:
    other = make_forge(bootloader=2, tee=0, snp=4, microcode=68)
    kds.routes[PATH] = (200, {}, other.vcek.public_bytes(Encoding.DER))
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.der is None
    assert answer.reason.startswith("AMD's key server answered with a certificate that is not this report's VCEK: "
                                    "its hwID 0102030405060708..")
    assert "its snp SPL is 4, the report's 5" in answer.reason


def test_oversized_body_refused(kds: Kds) -> None:
    kds.routes[PATH] = (200, {}, b"\0" * (64 * 1024 + 1))
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=10)
    assert not answer.ok and answer.reason == "AMD's key server answered more than 65536 bytes: not a VCEK"


def test_turin_fetch_asks_the_turin_url(kds: Kds) -> None:
    forge = make_forge(fmc=1, bootloader=9, tee=2, snp=24, microcode=72, product_name="Turin-B0", hwid=TURIN_CHIP[:8],
                       hwid_octet_string=True)
    path = "/vcek/v1/Turin/a1a2a3a4a5a6a7a8?fmcSPL=1&blSPL=9&teeSPL=2&snpSPL=24&ucodeSPL=72"
    kds.routes[path] = (200, {}, forge.vcek.public_bytes(Encoding.DER))
    answer = fetch_vcek(turin_report(), "turin", base_url=kds.url + "/", timeout=10)
    assert answer.ok and kds.seen == [path], answer.reason


def test_timeout_is_unknown(kds: Kds) -> None:
    kds.routes[PATH] = (200, {}, VCEK_DER)
    kds.delay = 3.0
    started = time.monotonic()
    answer = fetch_vcek(REPORT, "milan", base_url=kds.url, timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert not answer.ok and answer.status is None
    assert answer.reason.startswith("AMD's key server could not be reached: ") and "timed out" in answer.reason


def test_connection_refused_is_unknown() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    answer = fetch_vcek(REPORT, "milan", base_url=f"http://127.0.0.1:{port}", timeout=5)
    assert not answer.ok and answer.status is None
    assert answer.reason.startswith("AMD's key server could not be reached: ") and "refused" in answer.reason.lower()


def test_requests_that_cannot_be_made_raise() -> None:
    vlek_report = parse_report(make_report(signer_info=1 << 2, reported_tcb=tcb_legacy(2, 0, 5, 68)))
    with pytest.raises(KdsError, match="signed by VLEK, not a VCEK"):
        fetch_vcek(vlek_report, "milan", base_url="http://127.0.0.1:9")
    with pytest.raises(KdsError, match="timeout 0: expected a positive number"):
        fetch_vcek(REPORT, "milan", base_url="http://127.0.0.1:9", timeout=0)
    with pytest.raises(KdsError, match="CHIP_ID is masked"):
        fetch_vcek(parse_report(make_report(chip_id=bytes(64))), "milan", base_url="http://127.0.0.1:9")


def test_turin_vcek_with_an_untagged_8_byte_hwid_is_read() -> None:
    """The key server leaves Turin's 8-byte hwID untagged too (virtee/snpguest PR #159:
    'VCEK hwID extensions also store raw bytes')."""
    forge = make_forge(fmc=1, bootloader=9, tee=2, snp=24, microcode=72, product_name="Turin-B0", hwid=TURIN_CHIP[:8])
    assert vcek_facts(forge.vcek).hwid == TURIN_CHIP[:8]
