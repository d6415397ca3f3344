"""``measure``: print the expected launch digest for what the harness launches.

Why a command: a person preparing an attested launch (or checking a failed
one) needs the digest without writing Python, for exactly the inputs of a
launch; the last output line is the digest in hex so scripts can take it
with ``tail -1``.

Three spellings:

- ``measure --mode sev|sev-es --ovmf FILE --vcpus N --vcpu-type MODEL
  [--kernel K [--initrd I] [--append A]] [--vmsa init2|legacy] [--vcpu-sig N]``
- ``measure --mode snp --ovmf FILE --vcpus N --vcpu-type MODEL --guest-features 0xN
  [--vmm-type qemu|ec2|gce] [--kernel K [--initrd I] [--append A]] [--snp-ovmf-hash HEX]
  [--id-key PEM --author-key PEM]``: the 48-byte digest an SNP guest's attestation
  report must carry (QEMU gives none for SNP); with both keys also the
  ``id-block=...,id-auth=...`` properties for ``-object sev-snp-guest``.
- AMD ``launch-qemu.sh`` options: ``measure -sev-es -smp 4 -execpath P
  [-kernel K -initrd I -append A]``: OVMF ``P/share/qemu/OVMF_CODE.fd``,
  vCPUs from ``-smp`` (the script's default 4), vCPU type ``EPYC`` (the
  script's ``-cpu``), mode from ``-sev``/``-sev-es``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pytest_sev.attest.errors import AttestError, MeasureError
from pytest_sev.attest.measure import VMSA_KINDS, LaunchInputs, launch_digest, ovmf_facts
from pytest_sev.attest.snp_measure import (
    VMM_TYPES,
    SnpLaunchInputs,
    describe_guest_features,
    parse_guest_features,
    parse_ovmf_hash,
    snp_id_block,
    snp_launch_digest,
    snp_ovmf_facts,
    vmm_type_of,
)
from pytest_sev.sev.launchsh import parse_launch_args

T = TypeVar("T")
_LAUNCHSH_FLAGS = ("-sev", "-sev-es")
_SNP_MODES = ("snp", "sev-snp")
#: options that only an SNP launch has: given with --mode sev/sev-es they would be silently ignored
_SNP_ONLY = ("guest_features", "vmm_type", "snp_ovmf_hash", "id_key", "author_key")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pytest-sev measure", description="expected SEV/SEV-ES/SEV-SNP launch digest")
    p.add_argument("--mode", choices=("sev", "sev-es", *_SNP_MODES), required=True)
    p.add_argument("--ovmf", required=True,
                   help="the OVMF the guest is launched with (OVMF_CODE for SEV/SEV-ES, the -bios image for SNP)")
    p.add_argument("--vcpus", type=int, default=1,
                   help="number of vCPUs (-smp); SEV-ES and SNP measure one VMSA each")
    p.add_argument("--vcpu-type", default="EPYC", help="QEMU -cpu model (gives the vCPU signature)")
    p.add_argument("--vcpu-sig", type=lambda s: int(s, 0), default=None,
                   help="explicit CPUID(1).EAX signature instead of the model's")
    p.add_argument("--kernel", help="kernel for -kernel (AmdSev OVMF with kernel-hashes=on)")
    p.add_argument("--initrd")
    p.add_argument("--append")
    p.add_argument("--vmsa", choices=VMSA_KINDS, default=None,
                   help="SEV-ES only. init2: QEMU>=9.1 with KVM_SEV_INIT2 (sev-snp-measure's default); "
                        "legacy: older QEMU/KVM such as QEMU 7.2 (x87/SSE reset values left zero)")
    snp = p.add_argument_group("SNP (--mode snp)")
    snp.add_argument("--guest-features", type=_hex_features, default=None,
                     help="SEV_FEATURES of every VMSA, hex: 0x1 SNP only; 0x21 adds DebugSwap, which KVM "
                          "enables where the CPU has it (kvm_amd debug_swap)")
    snp.add_argument("--vmm-type", type=_vmm_type, default=None, help=f"one of {', '.join(VMM_TYPES)} (default qemu)")
    snp.add_argument("--snp-ovmf-hash", type=_ovmf_hash, default=None,
                     help="precomputed digest of the OVMF pages (96 hex digits) instead of hashing the file")
    snp.add_argument("--id-key", help="P-384 PEM private key: also print an id-block for the digest")
    snp.add_argument("--author-key", help="P-384 PEM private key that signs the id key")
    return p


def _argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser raising :class:`AttestError`: its message becomes the usage error."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except AttestError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


_hex_features = _argtype(parse_guest_features)
_vmm_type = _argtype(vmm_type_of)
_ovmf_hash = _argtype(parse_ovmf_hash)


def _from_launchsh(argv: list[str]) -> tuple[str, LaunchInputs]:
    if "-sev-snp" in argv:
        raise _UsageError("launch-qemu.sh style has no SNP digest: use --mode snp --ovmf FILE --vcpus N "
                          "--vcpu-type T --guest-features 0xN")
    try:
        opts = parse_launch_args(argv)
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    if not opts.sev:
        raise _UsageError("launch-qemu.sh options without -sev or -sev-es launch no SEV guest: nothing to measure")
    mode = "sev-es" if opts.sev_es else "sev"
    ovmf = f"{opts.execpath.rstrip('/')}/share/qemu/OVMF_CODE.fd"
    return mode, LaunchInputs(ovmf, opts.smp or 4, "EPYC", opts.kernel, opts.initrd, opts.append)


def _is_launchsh(argv: list[str]) -> bool:
    return (any(a in (*_LAUNCHSH_FLAGS, "-sev-snp") for a in argv)
            or any(a.startswith("-") and not a.startswith("--") for a in argv[:1]))


def _parse(argv: list[str]) -> argparse.Namespace:
    ns = _parser().parse_args(argv)
    if (ns.initrd or ns.append) and not ns.kernel:
        raise _UsageError("--initrd and --append need --kernel")
    snp = ns.mode in _SNP_MODES
    if not snp:
        given = [f"--{o.replace('_', '-')}" for o in _SNP_ONLY if getattr(ns, o) is not None]
        if given:
            raise _UsageError(f"{', '.join(given)}: only for --mode snp")
    elif ns.vmsa is not None:
        raise _UsageError("--vmsa: only for --mode sev-es (SNP VMSAs carry the x87/SSE reset values)")
    elif ns.guest_features is None:
        raise _UsageError("--mode snp needs --guest-features (hex: 0x1 SNP only, 0x21 with DebugSwap)")
    elif (ns.id_key is None) != (ns.author_key is None):
        raise _UsageError("an id-block needs both --id-key and --author-key")
    return ns


def _regular_ovmf(path: str) -> None:
    """An existing --ovmf that is not a regular file (``/dev/null``, a
    directory) is named as such; what is in a regular file is judged by
    :func:`ovmf_facts` / :func:`snp_ovmf_facts` (no footer table, wrong size)."""
    p = Path(path)
    if p.exists() and not p.is_file():
        raise MeasureError(f"{path} is not an OVMF image: not a regular file")


def _sev_lines(mode: str, inputs: LaunchInputs) -> list[str]:
    _regular_ovmf(inputs.ovmf)
    facts = ovmf_facts(inputs.ovmf)  # refuses a file that is not an OVMF image
    digest = launch_digest(inputs, mode)  # type: ignore[arg-type]
    lines = [f"mode: {mode}", f"ovmf: {facts.describe()}"]
    if mode == "sev-es":
        lines.append(f"vcpus: {inputs.vcpus} x {inputs.vcpu_type} (signature {inputs.signature():#x}), "
                     f"{inputs.vmsa} VMSA")
    lines.append(f"kernel hashes: {'kernel ' + inputs.kernel if inputs.kernel else 'none'}")
    return [*lines, digest.hex()]


def _snp_inputs(ns: argparse.Namespace) -> SnpLaunchInputs:
    return SnpLaunchInputs(ns.ovmf, ns.vcpus, ns.vcpu_type, ns.guest_features, ns.vmm_type or "qemu",
                           ns.kernel, ns.initrd, ns.append, ns.vcpu_sig, ns.snp_ovmf_hash)


def _snp_lines(ns: argparse.Namespace) -> list[str]:
    inputs = _snp_inputs(ns)
    _regular_ovmf(inputs.ovmf)
    facts = snp_ovmf_facts(inputs.ovmf)
    digest = snp_launch_digest(inputs)
    ovmf_pages = f"given {inputs.ovmf_hash.hex()}" if inputs.ovmf_hash else "hashed from the file"
    lines = ["mode: snp", f"ovmf: {facts.describe()}", f"ovmf pages: {ovmf_pages}",
             f"vcpus: {inputs.describe_vcpus()}",
             f"guest features: {describe_guest_features(inputs.guest_features)}",
             f"kernel hashes: {inputs.describe_kernel()}"]
    if ns.id_key:
        block = snp_id_block(digest, ns.id_key, ns.author_key)
        lines += ["id-block (policy 0x30000): " + block.lines()[0], *block.lines()[1:]]
    return [*lines, digest.hex()]


def _measure(args: list[str]) -> list[str]:
    if _is_launchsh(args):
        return _sev_lines(*_from_launchsh(args))
    ns = _parse(args)
    if ns.mode in _SNP_MODES:
        return _snp_lines(ns)
    return _sev_lines(ns.mode, LaunchInputs(ns.ovmf, ns.vcpus, ns.vcpu_type, ns.kernel, ns.initrd, ns.append,
                                            ns.vcpu_sig, ns.vmsa or "init2"))


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
        lines = _measure(args)
    except _UsageError as exc:
        print(f"pytest-sev measure: error: {exc}", file=sys.stderr)
        return 2
    except AttestError as exc:
        print(f"pytest-sev measure: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
