"""The embedded default guest's kernel: the distro cloud kernel, provisioned.

It needs nothing but the cached kernel (``python -m pytest_sev provision``)
and host packages.  What to boot it with (initramfs, firmware, command line)
is decided in :mod:`pytest_sev.guest.specs`; this module only finds the file.
"""

from __future__ import annotations

from pytest_sev.errors import ProvisionError
from pytest_sev.images.provision import DEFAULT_KERNEL_PACKAGE, GuestKernel, provisioned_kernel

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
