"""Harness overhead on boot: Guest vs a bare ``pexpect.spawn`` of QEMU.

Both boot the same kernel and initramfs with the same QEMU arguments (the
bare run swaps the socketpair console for ``-serial stdio`` and has no QMP)
to the guest's shell; runs alternate so machine noise hits both alike.
Prints each time and the median ratio harness/bare.

    .venv/bin/python benchmarks/boot.py [--runs 5] [--firmware seabios|ovmf]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import pexpect

from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.qemu.accel import choose_accel
from pytest_sev.qemu.argv import build_argv
from pytest_sev.qemu.binary import qemu_version, resolve_qemu


def bare_argv(spec, qemu: str, accel: str, scratch: str) -> list[str]:
    argv = build_argv(spec, qemu=qemu, accel=accel, qemu_version=qemu_version(qemu)[:2],
                      serial_fd=-1, qmp_fd=-1, vars_path=spec.firmware.vars_template)
    out, skip = [], 0
    for _i, arg in enumerate(argv):
        if skip:
            skip -= 1
            continue
        if arg in ("-chardev", "-serial", "-mon"):
            skip = 1
            continue
        out.append(arg)
    if spec.firmware.kind == "ovmf":  # a private VARS copy, as the harness makes
        private = os.path.join(scratch, "VARS.fd")
        shutil.copyfile(spec.firmware.vars_template, private)
        out = [a.replace(str(spec.firmware.vars_template), private) for a in out]
    return out + ["-serial", "stdio"]


def time_bare(spec, qemu: str, accel: str) -> float:
    with tempfile.TemporaryDirectory(prefix="sev-bench-") as scratch:
        argv = bare_argv(spec, qemu, accel, scratch)
        start = time.monotonic()
        child = pexpect.spawn(argv[0], argv[1:], timeout=300)
        try:
            child.expect(spec.ready_pattern.encode())
            child.expect(rb"sev-guest# ")
            return time.monotonic() - start
        finally:
            child.terminate(force=True)


def time_guest(spec, qemu: str, accel) -> float:
    start = time.monotonic()
    guest = Guest(spec, qemu=qemu, accel=accel)
    try:
        guest.start()
        return time.monotonic() - start
    finally:
        guest.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--firmware", choices=("seabios", "ovmf"), default="seabios")
    args = parser.parse_args()
    qemu, accel = resolve_qemu(), choose_accel()
    spec = default_guest_spec(firmware=args.firmware, name="bench")
    bare, harness = [], []
    for i in range(args.runs):
        bare.append(time_bare(spec, qemu, accel.name))
        harness.append(time_guest(spec, qemu, accel))
        print(f"run {i + 1}: bare {bare[-1]:.2f}s  harness {harness[-1]:.2f}s", flush=True)
    ratio = statistics.median(harness) / statistics.median(bare)
    print(f"firmware {args.firmware}, accel {accel.name}: median bare {statistics.median(bare):.2f}s, "
          f"median harness {statistics.median(harness):.2f}s, ratio harness/bare {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
