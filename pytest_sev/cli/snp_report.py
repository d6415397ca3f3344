"""``snp-report verify`` / ``fetch-vcek``: check an SEV-SNP attestation report offline; fetch its VCEK once.

Why a command: the proof of an SNP guest is its report, and a person holding
one (from a nightly run, from a cloud VM) needs the verdict without Python:
each check ok / failed / unknown with why, the parsed fields, and an exit
status a script can use.

    python -m pytest_sev snp-report verify REPORT [--vcek FILE | --cert-table FILE | --cert-dir DIR]
        [--chain FILE | --product milan|genoa|turin] [--nonce HEX] [--measurement HEX]
        [--policy HEX] [--vmpl N] [--min-tcb bootloader=2,tee=0,snp=5,microcode=68|0xTCB]
        [--allow-debug] [--json]
    python -m pytest_sev snp-report fetch-vcek REPORT --cert-dir DIR [--product milan|genoa|turin]
        [--kds-url URL] [--timeout SECONDS]

REPORT is the raw 0x4A0-byte report (configfs-tsm ``outblob``) or its hex.
The VCEK (or VLEK) is the ``--vcek`` file; without one it is taken from the
extended report's certificate table (``--cert-table``: configfs-tsm
``auxblob``), else from the certificate directory (``--cert-dir``, laid out
as ``DIR/<product>/<hwid hex>/<REPORTED_TCB as 16 hex>.der``), and the output
says where it came from. ``fetch-vcek`` asks AMD's key server
(https://kdsintf.amd.com, or ``--kds-url``) for the report's VCEK and stores it
in that layout; a VCEK already stored there is not asked for again.

Without ``--chain``/``--product`` the VCEK is tried against AMD's ASK of
every product, a VLEK against AMD's ASVK of every product (both shipped and
pinned); a ``--chain`` file holds the ASK (or, for a VLEK, the ASVK) and an
ARK that must be AMD's. Exit status of ``verify``: 0 every asked check holds, 1 one
does not (or could not be made), 2 a bad argument or file (one line on
stderr). Of ``fetch-vcek``: 0 the VCEK is stored, 1 it could not be had
(HTTP 404, 429 rate limit, a network error, a masked chip id: one line with
the reason), 2 a bad argument.
"""

from __future__ import annotations

import argparse
import binascii
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from pytest_sev.attest.errors import AttestError
from pytest_sev.attest.snp_certtable import parse_cert_table
from pytest_sev.attest.snp_kds import DEFAULT_TIMEOUT, KDS_URL, KdsError, check_base_url, fetch_vcek, match_problems
from pytest_sev.attest.snp_report import PRODUCTS, SnpReport, parse_report
from pytest_sev.attest.snp_roots import SnpChain, pinned_arks, pinned_chains, read_chain_file, read_vcek
from pytest_sev.attest.snp_vcek import vcek_facts
from pytest_sev.attest.snp_vcek_source import VcekLookup, cert_path, find_vcek, store_vek
from pytest_sev.attest.snp_verify import Expectations, SnpVerdict, parse_min_tcb, verify_snp_report

PROG = "pytest-sev snp-report"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _hex_bytes(what: str, size: int | None = None, max_size: int | None = None) -> Callable[[str], bytes]:
    def convert(text: str) -> bytes:
        compact = text.strip().removeprefix("0x").removeprefix("0X")
        try:
            data = binascii.unhexlify(compact)
        except (binascii.Error, ValueError):
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not hex")
        if size is not None and len(data) != size:
            raise argparse.ArgumentTypeError(f"{what} is {len(data)} bytes, expected {size}")
        if max_size is not None and not 0 < len(data) <= max_size:
            raise argparse.ArgumentTypeError(f"{what} is {len(data)} bytes, expected 1..{max_size}")
        return data
    return convert


def _hex_int(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a hex number")


def _vmpl(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not 0 <= value <= 3:
        raise argparse.ArgumentTypeError(f"VMPL {value} is not 0..3")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} verify", description="verify an SEV-SNP attestation report offline")
    p.add_argument("report", help="the report: raw 0x4A0 bytes or hex text")
    p.add_argument("--vcek", help="the VCEK that signed it (DER from AMD's key server, or PEM)")
    p.add_argument("--cert-table", help="without --vcek: the extended report's certificate table (auxblob); "
                                        "its VCEK/VLEK is used, never its ASK/ARK")
    p.add_argument("--cert-dir", help="without --vcek (and when the table has none): the certificate directory "
                                      "DIR/<product>/<hwid hex>/<REPORTED_TCB 16 hex>.der (filled by fetch-vcek)")
    roots = p.add_mutually_exclusive_group()
    roots.add_argument("--chain", help="ASK+ARK file (ASVK+ARK for a VLEK-signed report; PEM, cert_chain); "
                                       "its ARK must be AMD's")
    roots.add_argument("--product", choices=PRODUCTS,
                       help="use AMD's ASK/ARK (ASVK/ARK for a VLEK) of this product (shipped, pinned)")
    p.add_argument("--nonce", type=_hex_bytes("nonce", max_size=64),
                   help="the REPORT_DATA the guest was given (hex, up to 64 bytes, zero-padded)")
    p.add_argument("--measurement", type=_hex_bytes("measurement", size=48), help="expected launch digest (48 bytes hex)")
    p.add_argument("--policy", type=_hex_int, help="the policy the guest was launched with (hex)")
    p.add_argument("--vmpl", type=_vmpl, help="the VMPL the report must come from (checked only when given)")
    p.add_argument("--min-tcb", help="minimum REPORTED_TCB: component=N,... (bootloader, tee, snp, microcode, fmc) "
                                     "or a TCB_VERSION number")
    p.add_argument("--allow-debug", action="store_true", help="accept a policy with the DEBUG bit (19) set")
    p.add_argument("--json", action="store_true", help="print the fields and checks as JSON")
    return p


def _fetch_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"{PROG} fetch-vcek",
                description="fetch a report's VCEK from AMD's key server into a certificate directory")
    p.add_argument("report", help="the report: raw 0x4A0 bytes or hex text")
    p.add_argument("--cert-dir", required=True, help="the certificate directory to store the VCEK in")
    p.add_argument("--product", choices=PRODUCTS, help="the report's product (needed when its CPUID bytes "
                                                       "do not say: report version 2)")
    p.add_argument("--kds-url", type=_kds_url, default=KDS_URL, help=f"the key server (default {KDS_URL})")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the key server (default {DEFAULT_TIMEOUT:g})")
    return p


def _kds_url(text: str) -> str:
    try:
        return check_base_url(text)
    except KdsError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"timeout {text} is not a positive number of seconds")
    return value


def _read_report(path: str) -> SnpReport:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read the report {path}: {exc.strerror or exc}")
    return parse_report(data)


def _chains(ns: argparse.Namespace, report: SnpReport) -> dict[str, SnpChain]:
    """The chain file, else AMD's pinned chains for the report's signing key (ASK/ARK, or ASVK/ARK for a VLEK)."""
    if ns.chain:
        return {"chain file": read_chain_file(ns.chain)}
    products = [ns.product] if ns.product else list(PRODUCTS)
    return pinned_chains(report.signer.signing_key, products)


def _lookup(ns: argparse.Namespace, report: SnpReport) -> VcekLookup:
    """The VCEK: ``--vcek``, else the certificate table's, else the directory's (:func:`find_vcek`)."""
    if ns.vcek:
        return VcekLookup(read_vcek(ns.vcek), "vcek_file", f"the file given with --vcek ({ns.vcek})")
    table: bytes | None = None
    if ns.cert_table:
        try:
            table = Path(ns.cert_table).read_bytes()
        except OSError as exc:
            raise _UsageError(f"cannot read the certificate table {ns.cert_table}: {exc.strerror or exc}")
        parse_cert_table(table)  # a malformed file is a bad argument here, named before anything is judged
    cert_dir = Path(ns.cert_dir) if ns.cert_dir else None
    if cert_dir is not None and not cert_dir.is_dir():
        raise _UsageError(f"the certificate directory {cert_dir} is not a directory")
    if table is None and cert_dir is None:
        return VcekLookup(None, "none", "no --vcek, --cert-table or --cert-dir given")
    return find_vcek(report, cert_table=table, cert_dir=cert_dir, product=ns.product)


def _verify(ns: argparse.Namespace) -> tuple[SnpVerdict, VcekLookup]:
    report = _read_report(ns.report)
    lookup = _lookup(ns, report)
    expect = Expectations(nonce=ns.nonce, measurement=ns.measurement, policy=ns.policy, vmpl=ns.vmpl,
                          min_tcb=parse_min_tcb(ns.min_tcb) if ns.min_tcb else None, allow_debug=ns.allow_debug)
    return verify_snp_report(report, lookup.cert, _chains(ns, report), pinned_arks(), expect, product=ns.product), lookup


def _print_text(verdict: SnpVerdict, lookup: VcekLookup) -> None:
    r = verdict.report
    print(f"SNP attestation report version {r.version}, signed by {r.signer.signing_key}, "
          f"product {verdict.product or 'unknown'}")
    label = "vlek source:" if r.signer.signing_key == "VLEK" else "vcek source:"
    print(f"  {label:14} {lookup.source}: {lookup.reason}")
    print(f"  policy:        {r.policy.describe()}")
    print(f"  vmpl:          {r.vmpl}")
    print(f"  guest_svn:     {r.guest_svn}")
    print(f"  report_data:   {r.report_data.hex()}")
    print(f"  measurement:   {r.measurement.hex()}")
    print(f"  host_data:     {r.host_data.hex()}")
    print(f"  chip_id:       {r.chip_id.hex()}")
    for name in ("reported_tcb", "current_tcb", "committed_tcb", "launch_tcb"):
        tcb = getattr(r, name)
        print(f"  {name + ':':14} {tcb.describe(verdict.product) if verdict.product else f'{tcb.raw:#018x}'}")
    print("checks:")
    for check in verdict.checks:
        print(f"  {check.describe()}")
        if check.name == "chain":
            for link in verdict.links:
                print(f"    {link.describe()}")
    bad = verdict.not_holding
    if bad:
        print(f"verdict: NOT VERIFIED: {', '.join(f'{c.name} {c.state}' for c in bad)}")
    else:
        print("verdict: verified: every asked check holds")


def _fetch(ns: argparse.Namespace) -> int:
    """``fetch-vcek``: 0 stored (or already there), 1 the VCEK could not be had (one line), else raises."""
    report = _read_report(ns.report)
    product = ns.product or report.product_from_cpuid()
    if product is None:
        raise _UsageError(f"the product cannot be told from this report (version {report.version}"
                          f"{' has no CPUID bytes' if report.cpuid_fms is None else ': its CPUID names none'}): "
                          f"give --product {'|'.join(PRODUCTS)}")
    if report.signer.signing_key != "VCEK":
        why = ("the report is not signed (SIGNING_KEY 7: none)" if report.signer.signing_key == "none" else
               "the report is signed by VLEK, not a VCEK (a VLEK is issued to the cloud provider, not fetched per chip)")
        print(f"{PROG}: VCEK unknown: {why}", file=sys.stderr)
        return 1
    try:
        path = cert_path(ns.cert_dir, report, product)
    except AttestError as exc:
        print(f"{PROG}: VCEK unknown: {exc}", file=sys.stderr)
        return 1
    if path.is_file():
        try:
            stored = read_vcek(path)
            problems = match_problems(report, vcek_facts(stored), product)
        except AttestError as exc:
            problems = [str(exc)]
        if not problems:
            print(f"already stored: {path} (AMD's key server not asked)")
            return 0
        print(f"replacing {path}: {'; '.join(problems)}")
    answer = fetch_vcek(report, product, base_url=ns.kds_url, timeout=ns.timeout)
    if answer.der is None or not answer.ok:
        print(f"{PROG}: VCEK unknown: {answer.reason} (GET {answer.url})", file=sys.stderr)
        return 1
    stored_at = store_vek(ns.cert_dir, report, product, answer.der)
    print(f"stored the VCEK of chip {report.chip_id.hex()[:16]}.. at TCB {report.reported_tcb.raw:#018x}: "
          f"{stored_at} (from {answer.url})")
    return 0


ACTIONS: dict[str, Callable[[], argparse.ArgumentParser]] = {"verify": _parser, "fetch-vcek": _fetch_parser}


def main(argv: list[str]) -> int:
    """Run ``snp-report``; ``verify``: 0 verified, 1 a check does not hold; ``fetch-vcek``: 0 stored,
    1 not had; 2 bad usage or input."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    if args[0] not in ACTIONS:
        print(f"{PROG}: error: unknown action {args[0]!r} (expected: {', '.join(ACTIONS)})", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args[1:]):
        ACTIONS[args[0]]().print_help()
        return 0
    try:
        ns = ACTIONS[args[0]]().parse_args(args[1:])
        if args[0] == "fetch-vcek":
            return _fetch(ns)
        verdict, lookup = _verify(ns)
    except (_UsageError, AttestError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        doc = verdict.to_json()
        doc["vcek_source"] = {"source": lookup.source, "reason": lookup.reason}
        print(json.dumps(doc, indent=2))
    else:
        _print_text(verdict, lookup)
    return 0 if verdict.ok else 1
