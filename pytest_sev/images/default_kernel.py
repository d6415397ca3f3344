"""The embedded default guest's kernel: the distro cloud kernel, provisioned.

It needs nothing but the cached kernel (``python -m pytest_sev provision``)
and host packages.  What to boot it with (initramfs, firmware, command line)
is decided in :mod:`pytest_sev.guest.specs`; this module only finds the file.
"""

from __future__ import annotations

from pathlib import Path

from pytest_sev.cache import file_digest
from pytest_sev.errors import ProvisionError
from pytest_sev.images.bzimage import kernel_release
from pytest_sev.images.provision import DEFAULT_KERNEL_PACKAGE, GuestKernel, provisioned_kernel
from pytest_sev.kconfig import parse_config

#: printk lines are slow to emulate on a serial port under TCG; the harness
#: reads the kernel log with dmesg instead.  Panics still reach the console.
BASE_APPEND = "console=ttyS0 quiet panic=-1"


def default_kernel(package: str = DEFAULT_KERNEL_PACKAGE) -> GuestKernel:
    kernel = provisioned_kernel(package)
    if kernel is None:
        raise ProvisionError(
            f"the default guest kernel ({package}) is not provisioned: "
            "run scripts/setup.sh or `python -m pytest_sev provision`")
    return kernel


def other_kernel(vmlinuz: Path) -> GuestKernel:
    """A kernel that is not the provisioned one (a build, ``--guest-kernel``),
    described for the image builders: its release read from the bzImage, the
    default kernel's modules tree.  Such a kernel has its drivers built in, and
    the distro modules fail to load harmlessly, as when it boots directly."""
    base = default_kernel()
    return GuestKernel(vmlinuz=Path(vmlinuz), modules_dir=base.modules_dir, release=kernel_release(Path(vmlinuz)),
                       package="", version="", sha256=file_digest(Path(vmlinuz)))


def kernel_config(vmlinuz: Path) -> dict[str, str] | None:
    """The ``CONFIG_*`` a kernel was built with, from the ``config`` file the
    cache keeps beside it (provisioned and built kernels) or Debian's
    ``/boot/config-<release>`` beside ``/boot/vmlinuz-<release>``; None: unknown."""
    vmlinuz = Path(vmlinuz)
    candidates = [vmlinuz.parent / "config"]
    if vmlinuz.name.startswith("vmlinuz-"):
        candidates.append(vmlinuz.parent / ("config-" + vmlinuz.name[len("vmlinuz-"):]))
    for cand in candidates:
        if cand.is_file():
            return parse_config(cand.read_text(errors="replace"))
    return None
