"""``snp-report verify``: check an SEV-SNP attestation report offline and say which checks hold.

Why a command: the proof of an SNP guest is its report, and a person holding
one (from a nightly run, from a cloud VM) needs the verdict without Python:
each check ok / failed / unknown with why, the parsed fields, and an exit
status a script can use.

    python -m pytest_sev snp-report verify REPORT [--vcek FILE]
        [--chain FILE | --product milan|genoa|turin] [--nonce HEX] [--measurement HEX]
        [--policy HEX] [--vmpl N] [--min-tcb bootloader=2,tee=0,snp=5,microcode=68|0xTCB]
        [--allow-debug] [--json]

REPORT is the raw 0x4A0-byte report (configfs-tsm ``outblob``) or its hex.
Without ``--chain``/``--product`` the VCEK is tried against AMD's ASK of
every product. Exit status: 0 every asked check holds, 1 one does not (or
could not be made), 2 a bad argument or file (one line on stderr).
"""

from __future__ import annotations

import argparse
import binascii
import json
import sys
from collections.abc import Callable
from pathlib import Path

from pytest_sev.attest.errors import AttestError
from pytest_sev.attest.snp_report import PRODUCTS, SnpReport, parse_report
from pytest_sev.attest.snp_roots import SnpChain, load_product_chain, pinned_arks, read_chain_file, read_vcek
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
    roots = p.add_mutually_exclusive_group()
    roots.add_argument("--chain", help="ASK+ARK file (PEM, cert_chain); its ARK must be AMD's")
    roots.add_argument("--product", choices=PRODUCTS, help="use AMD's ASK/ARK of this product (shipped, pinned)")
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


def _read_report(path: str) -> SnpReport:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _UsageError(f"cannot read the report {path}: {exc.strerror or exc}")
    return parse_report(data)


def _chains(ns: argparse.Namespace) -> dict[str, SnpChain]:
    if ns.chain:
        return {"chain file": read_chain_file(ns.chain)}
    products = [ns.product] if ns.product else list(PRODUCTS)
    return {p: load_product_chain(p) for p in products}


def _verify(ns: argparse.Namespace) -> SnpVerdict:
    report = _read_report(ns.report)
    vek = read_vcek(ns.vcek) if ns.vcek else None
    expect = Expectations(nonce=ns.nonce, measurement=ns.measurement, policy=ns.policy, vmpl=ns.vmpl,
                          min_tcb=parse_min_tcb(ns.min_tcb) if ns.min_tcb else None, allow_debug=ns.allow_debug)
    return verify_snp_report(report, vek, _chains(ns), pinned_arks(), expect, product=ns.product)


def _print_text(verdict: SnpVerdict) -> None:
    r = verdict.report
    print(f"SNP attestation report version {r.version}, signed by {r.signer.signing_key}, "
          f"product {verdict.product or 'unknown'}")
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


def main(argv: list[str]) -> int:
    """Run ``snp-report``; 0 verified, 1 a check does not hold, 2 bad usage or input."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args else 2
    if args[0] != "verify":
        print(f"{PROG}: error: unknown action {args[0]!r} (expected: verify)", file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args[1:]):
        _parser().print_help()
        return 0
    try:
        ns = _parser().parse_args(args[1:])
        verdict = _verify(ns)
    except (_UsageError, AttestError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if ns.json:
        print(json.dumps(verdict.to_json(), indent=2))
    else:
        _print_text(verdict)
    return 0 if verdict.ok else 1
