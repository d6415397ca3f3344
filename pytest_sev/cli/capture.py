"""``python -m pytest_sev capture OUTDIR``: record this runner as it is.

Writes a bundle that drops into the project's fixtures and replays in the
tests unchanged::

    OUTDIR/hosts/capture-NAME/      the host probe's raw inputs (CPUID bytes, MSRs,
                                    kvm_amd parameters, host dmesg lines about SEV/KVM,
                                    /dev/sev presence, the QMP reply), as
                                    host/recorded.py's record_host writes them
    OUTDIR/recorded/capture-NAME/   per guest kind the host can boot (plain always;
                                    sev / sev-es when the host is ready for them):
                                    KIND/console.log, KIND/dmesg.txt + status,
                                    KIND/msr.txt (the SEVMSR read), KIND/qmp.json
                                    (query-sev, query-sev-launch-measure,
                                    query-sev-capabilities, query-version replies
                                    in wire form)

Both ``meta.json`` say ``"provenance": "captured"`` and from which machine.
Secrets are left out: only kernel-log lines about SEV/KVM/ccp are kept for the
host, the machine's hostname is replaced by ``<host>`` in every text file, no
environment, no launch secrets or session keys are ever read. Copy the two
directories under ``fixtures/hosts/`` and ``fixtures/recorded/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from pytest_sev.config import RunConfig, check_writable_dir
from pytest_sev.errors import PytestSevError
from pytest_sev.host.decide import decide
from pytest_sev.host.recorded import record_host

log = logging.getLogger(__name__)

KINDS = ("plain", "sev", "sev-es")
#: a bundle name is one directory name: it lands under OUTDIR/hosts/ and OUTDIR/recorded/
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
QMP_COMMANDS = ("query-sev", "query-sev-launch-measure", "query-sev-capabilities", "query-version")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_sev capture", description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--name", default=None, help="bundle name (default: capture-<hostname-free cpu tag>)")
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--no-guest", action="store_true", help="host inputs only")
    p.add_argument("--memory-mib", type=int, default=512)
    return p


def wire(call) -> dict[str, Any]:
    """A QMP call's outcome in wire form: {"return": ...} or {"error": {"class", "desc"}}."""
    try:
        return {"return": call()}
    except Exception as exc:  # noqa: BLE001 - every failure is part of the record
        cls = getattr(exc, "error_class", None) or type(exc).__name__
        return {"error": {"class": cls, "desc": str(exc)}}


def scrub(text: str, hostname: str | None = None) -> str:
    host = hostname if hostname is not None else socket.gethostname()
    return text.replace(host, "<host>") if host and len(host) > 2 else text


def capture_guest(kind: str, cfg: RunConfig, cbitpos: int | None, dest: Path, memory_mib: int) -> dict:
    """Boot one guest of ``kind``, record what the witnesses read, stop it."""
    from pytest_sev.guest.guest import Guest
    from pytest_sev.guest.specs import plain_spec, sev_spec
    from pytest_sev.sev import msr
    spec = (plain_spec(cfg, name=f"capture-{kind}", memory_mib=memory_mib) if kind == "plain"
            else sev_spec(cfg, kind, cbitpos, name=f"capture-{kind}", memory_mib=memory_mib))
    dest.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"kind": kind}
    with Guest(spec) as guest:
        out, status = guest.run("dmesg", timeout=60)
        (dest / "dmesg.txt").write_text(scrub(out))
        summary["dmesg_status"] = status
        msr_out, _ = guest.run(msr.guest_read_command(load_module=True), timeout=60)
        (dest / "msr.txt").write_text(msr_out)
        qmp = guest.qmp
        assert qmp is not None  # started
        replies = {cmd: wire(lambda cmd=cmd: qmp.execute(cmd)) for cmd in QMP_COMMANDS}
        (dest / "qmp.json").write_text(json.dumps(replies, indent=1, sort_keys=True) + "\n")
        summary["vcpus"] = spec.vcpus
        console = guest.logs["console log"]  # read now: the run directory goes with the guest
        if console.exists():
            (dest / "console.log").write_text(scrub(console.read_text(errors="replace")))
    return summary


def capture(outdir: Path, name: str | None = None, qemu: str = "qemu-system-x86_64",
            guests: bool = True, memory_mib: int = 512) -> Path:
    outdir = Path(outdir)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host_dir = outdir / "hosts" / (name or "capture-this-runner")
    report = record_host(host_dir, qemu=qemu, description=f"captured with python -m pytest_sev capture on {stamp}")
    machine = report.facts.get("cpu_model") or "unknown CPU"
    for p in host_dir.rglob("*"):
        if p.is_file() and p.suffix in (".txt", ".json", ".xml", "") and p.stat().st_size < 4 << 20:
            try:
                p.write_text(scrub(p.read_text()))
            except UnicodeDecodeError:
                continue
    meta = json.loads((host_dir / "meta.json").read_text())
    origin = f"python -m pytest_sev capture on {stamp}: {machine}, kernel {report.facts.get('host_kernel', '?')}"
    (host_dir / "meta.json").write_text(json.dumps({"provenance": "captured", "from": origin, **meta}, indent=1) + "\n")
    rec_dir = outdir / "recorded" / host_dir.name
    rec_dir.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, Any] = {}
    if guests:
        cfg = RunConfig(qemu=qemu)
        cbit = report.facts.get("cbitpos")
        for kind in KINDS:
            if kind != "plain" and decide("auto", report, kind).action != "run":
                kinds[kind] = {"skipped": decide("auto", report, kind).reason}
                continue
            kinds[kind] = capture_guest(kind, cfg, int(cbit) if cbit not in (None, "", "unknown") else None,
                                        rec_dir / kind, memory_mib)
    (rec_dir / "meta.json").write_text(json.dumps(
        {"provenance": "captured", "from": origin, "host": f"fixtures/hosts/{host_dir.name}", "guests": kinds},
        indent=1) + "\n")
    return outdir


def check_args(args: argparse.Namespace) -> str | None:
    """Why the command cannot run with *args* (None: it can), asked before
    the host is probed: OUTDIR must be, or become, a writable directory
    (``/dev/full`` and ``/proc/x`` are neither), the name one directory name."""
    if args.name is not None and not NAME_RE.fullmatch(args.name):
        return (f"--name {args.name!r}: not a bundle name (letters, digits, '.', '_', '-'; "
                "one directory name, up to 80 characters)")
    if args.memory_mib < 64:
        return f"--memory-mib {args.memory_mib}: too small to boot a guest (>= 64)"
    try:
        check_writable_dir(args.outdir, "OUTDIR")
    except PytestSevError as exc:
        return str(exc)
    return None


def main(argv: list[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["capture"]:
        argv = argv[1:]
    args = _parser().parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"capture: {problem}", file=sys.stderr)
        return 2
    try:
        out = capture(args.outdir, args.name, args.qemu, guests=not args.no_guest, memory_mib=args.memory_mib)
    except (OSError, PytestSevError) as exc:
        log.debug("capture failed", exc_info=True)
        print(f"capture: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"captured into {out}: copy hosts/* to fixtures/hosts/ and recorded/* to fixtures/recorded/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
