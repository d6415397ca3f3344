"""``measure``: print the expected launch digest for what the harness launches.

Why a command: a person preparing an attested launch (or checking a failed
one) needs the digest without writing Python, for exactly the inputs of a
launch; the last output line is the digest in hex so scripts can take it
with ``tail -1``.

Two spellings:

- ``measure --mode sev|sev-es --ovmf FILE --vcpus N --vcpu-type MODEL
  [--kernel K [--initrd I] [--append A]] [--vmsa init2|legacy] [--vcpu-sig N]``
- AMD ``launch-qemu.sh`` options: ``measure -sev-es -smp 4 -execpath P
  [-kernel K -initrd I -append A]``: OVMF ``P/share/qemu/OVMF_CODE.fd``,
  vCPUs from ``-smp`` (the script's default 4), vCPU type ``EPYC`` (the
  script's ``-cpu``), mode from ``-sev``/``-sev-es``.
"""

from __future__ import annotations

import argparse
import sys

from pytest_sev.attest.errors import AttestError
from pytest_sev.attest.measure import VMSA_KINDS, LaunchInputs, launch_digest, ovmf_facts
from pytest_sev.sev.launchsh import parse_launch_args

_LAUNCHSH_FLAGS = ("-sev", "-sev-es")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pytest-sev measure", description="expected SEV/SEV-ES launch digest")
    p.add_argument("--mode", choices=("sev", "sev-es"), required=True)
    p.add_argument("--ovmf", required=True, help="the OVMF_CODE the guest is launched with")
    p.add_argument("--vcpus", type=int, default=1, help="number of vCPUs (-smp); SEV-ES measures one VMSA each")
    p.add_argument("--vcpu-type", default="EPYC", help="QEMU -cpu model (gives the vCPU signature)")
    p.add_argument("--vcpu-sig", type=lambda s: int(s, 0), default=None,
                   help="explicit CPUID(1).EAX signature instead of the model's")
    p.add_argument("--kernel", help="kernel for -kernel (AmdSev OVMF with kernel-hashes=on)")
    p.add_argument("--initrd")
    p.add_argument("--append")
    p.add_argument("--vmsa", choices=VMSA_KINDS, default="init2",
                   help="init2: QEMU>=9.1 with KVM_SEV_INIT2 (sev-snp-measure's default); "
                        "legacy: older QEMU/KVM such as QEMU 7.2 (x87/SSE reset values left zero)")
    return p


def _from_launchsh(argv: list[str]) -> tuple[str, LaunchInputs]:
    try:
        opts = parse_launch_args(argv)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    if not opts.sev:
        raise _UsageError("launch-qemu.sh options without -sev or -sev-es launch no SEV guest: nothing to measure")
    mode = "sev-es" if opts.sev_es else "sev"
    ovmf = f"{opts.execpath.rstrip('/')}/share/qemu/OVMF_CODE.fd"
    return mode, LaunchInputs(ovmf, opts.smp or 4, "EPYC", opts.kernel, opts.initrd, opts.append)


def _parse(argv: list[str]) -> tuple[str, LaunchInputs]:
    if any(a in _LAUNCHSH_FLAGS for a in argv) or any(a.startswith("-") and not a.startswith("--") for a in argv[:1]):
        return _from_launchsh(argv)
    ns = _parser().parse_args(argv)
    if (ns.initrd or ns.append) and not ns.kernel:
        raise _UsageError("--initrd and --append need --kernel")
    return ns.mode, LaunchInputs(ns.ovmf, ns.vcpus, ns.vcpu_type, ns.kernel, ns.initrd, ns.append,
                                 ns.vcpu_sig, ns.vmsa)


def main(argv: list[str]) -> int:
    """Run ``measure``; 0 on success, 1 when the digest cannot be computed, 2 on bad usage."""
    args = list(argv)
    if args and args[0] == "measure":
        args = args[1:]
    if any(a in ("-h", "--help") for a in args):
        _parser().print_help()
        print("\nor launch-qemu.sh style: measure -sev|-sev-es [-smp N] [-execpath PREFIX] "
              "[-kernel K -initrd I -append A]")
        return 0
    try:
        mode, inputs = _parse(args)
        facts = ovmf_facts(inputs.ovmf)
        digest = launch_digest(inputs, mode)  # type: ignore[arg-type]
    except _UsageError as exc:
        print(f"pytest-sev measure: error: {exc}", file=sys.stderr)
        return 2
    except AttestError as exc:
        print(f"pytest-sev measure: error: {exc}", file=sys.stderr)
        return 1
    print(f"mode: {mode}")
    print(f"ovmf: {facts.describe()}")
    if mode == "sev-es":
        print(f"vcpus: {inputs.vcpus} x {inputs.vcpu_type} (signature {inputs.signature():#x}), {inputs.vmsa} VMSA")
    print(f"kernel hashes: {'kernel ' + inputs.kernel if inputs.kernel else 'none'}")
    print(digest.hex())
    return 0
