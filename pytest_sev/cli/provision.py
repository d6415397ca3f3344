"""``python -m pytest_sev provision``: fetch the default guest kernel, build
its initramfs, and say where they are (idempotent; offline uses the cache)."""

from __future__ import annotations

import argparse

from pytest_sev.images.initramfs import build_initramfs
from pytest_sev.images.provision import DEFAULT_KERNEL_PACKAGE, ProvisionError, provision_kernel


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_sev provision", description=__doc__)
    parser.add_argument("--package", default=DEFAULT_KERNEL_PACKAGE)
    parser.add_argument("--offline", action="store_true", help="use the cache only")
    args = parser.parse_args(argv)
    try:
        kernel = provision_kernel(args.package, offline=args.offline)
    except ProvisionError as exc:
        print(f"provision: {exc}")
        return 1
    print(f"guest kernel: {kernel.package} {kernel.version} ({kernel.release})\n  {kernel.vmlinuz}")
    for with_fio in (False, True):
        image = build_initramfs(kernel, with_fio=with_fio)
        print(f"initramfs{' with fio' if image.has_fio else ''}: {image.path}")
    return 0
