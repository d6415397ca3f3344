"""``python -m pytest_sev provision``: fetch the default guest kernel, build
its initramfs, and say where they are (idempotent; offline uses the cache).

``python -m pytest_sev provision qemu-snp``: fetch a QEMU >= 9.1 (Debian
backports') into the cache beside the host's, for SEV-SNP launches
(``--components qemu=backports``)."""

from __future__ import annotations

import argparse

from pytest_sev.images.initramfs import build_initramfs
from pytest_sev.images.provision import DEFAULT_KERNEL_PACKAGE, ProvisionError, provision_kernel


def provision_qemu_snp(argv: list[str]) -> int:
    """``provision qemu-snp [--offline] [--refresh]``: one line on failure, the binary on success."""
    from pytest_sev.images.qemu_snp import provision_snp_qemu
    parser = argparse.ArgumentParser(prog="python -m pytest_sev provision qemu-snp",
                                     description="Fetch a QEMU >= 9.1 for SEV-SNP into the cache.")
    parser.add_argument("--offline", action="store_true", help="use the cache only")
    parser.add_argument("--refresh", action="store_true", help="fetch again even when one is cached")
    args = parser.parse_args(argv)
    try:
        qemu = provision_snp_qemu(offline=args.offline, refresh=args.refresh)
    except ProvisionError as exc:
        print(f"provision: {exc}")
        return 1
    took = f" (fetched in {qemu.seconds:.1f} s)" if qemu.seconds else " (cached)"
    print(f"SEV-SNP QEMU{took}: {qemu.describe()}\n  ROMs (-L): {qemu.datadir}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["qemu-snp"]:
        return provision_qemu_snp(argv[1:])
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
