"""``python -m pytest_sev host``: the host readiness report, ``sevctl ok`` style.

Exit status 0 when the host is ready for the requested mode (default
sev-es; ``--mode sev`` or ``--mode sev-snp`` ask for the others), 1 when it is not or when a check that mode needs could not be
answered ("UNDETERMINED": not knowing is not ready), so a runner's
provisioning can gate on it.
``--recorded DIR`` replays a recorded host; ``--record DIR`` probes this
machine and saves what was read as a new recorded host.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from pytest_sev.host.decide import describe_failure, describe_unanswered
from pytest_sev.host.probe import probe_host
from pytest_sev.host.recorded import load_recorded, record_host
from pytest_sev.host.report import MODES, HostReport, Readiness


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_sev host",
                                description="Check whether this host can run SEV / SEV-ES / SEV-SNP guests.")
    p.add_argument("--mode", choices=MODES, default="sev-es",
                   help="readiness to report in the exit status (default: sev-es)")
    p.add_argument("--qemu", default="qemu-system-x86_64", help="QEMU binary to ask (default: from PATH)")
    p.add_argument("--ovmf-code", default=None, help="OVMF code file (default: look in the usual places)")
    p.add_argument("--ovmf-vars", default=None, help="OVMF variable store template")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--recorded", metavar="DIR", type=Path, help="replay a recorded host instead of probing")
    p.add_argument("--record", metavar="DIR", type=Path, help="probe this machine and save it as a recorded host")
    return p


def _emit(report: HostReport, mode: str, as_json: bool) -> int:
    readiness = report.readiness(mode)
    if as_json:
        doc = report.to_dict()
        doc["mode"] = mode
        doc["state"] = readiness.state
        doc["first_failure"] = readiness.failed[0].name if readiness.failed else None
        doc["unanswered"] = [c.name for c in readiness.unanswered]
        print(json.dumps(doc, indent=2))
    else:
        sys.stdout.write(report.format_text())
        print(_verdict_line(readiness))
    return 0 if readiness.ready else 1


def _verdict_line(readiness: Readiness) -> str:
    """The last line: ready, NOT ready naming the failure, or UNDETERMINED naming what could not be answered."""
    mode = readiness.mode
    if readiness.failed:
        return f"=> NOT ready for {mode}: {describe_failure(readiness.failed[0])}"
    if readiness.unanswered:
        return f"=> UNDETERMINED for {mode}: could not answer " + ", ".join(map(describe_unanswered, readiness.unanswered))
    return f"=> ready for {mode}"


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["host"]:
        argv = argv[1:]
    args = _parser().parse_args(argv)
    if args.recorded is not None:
        with tempfile.TemporaryDirectory(prefix="pytest-sev-host-") as scratch:
            report = load_recorded(args.recorded, Path(scratch)).probe()
    elif args.record is not None:
        report = record_host(args.record, qemu=args.qemu, ovmf_code=args.ovmf_code, ovmf_vars=args.ovmf_vars,
                             description="recorded with python -m pytest_sev host --record")
    else:
        report = probe_host(qemu=args.qemu, ovmf_code=args.ovmf_code, ovmf_vars=args.ovmf_vars)
    return _emit(report, args.mode, args.json)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
