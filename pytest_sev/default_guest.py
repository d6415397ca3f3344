"""The embedded default guest: distro cloud kernel + busybox initramfs.

It needs nothing but the cached kernel (``python -m pytest_sev provision``)
and host packages, boots to a root shell on the serial console in seconds
under TCG, and carries fio when the DMA suite asks for it.
"""

from __future__ import annotations

from pathlib import Path

from .firmware import find_ovmf
from .initramfs import build_initramfs
from .provision import DEFAULT_KERNEL_PACKAGE, GuestKernel, ProvisionError, provisioned_kernel
from .spec import Firmware, GuestSpec, SpecError

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


def ovmf_firmware(code: Path | None = None, vars_template: Path | None = None) -> Firmware:
    if code is None or vars_template is None:
        found = find_ovmf()
        if found is None:
            raise SpecError("OVMF not found: install the ovmf package or pass --ovmf-code/--ovmf-vars")
        code, vars_template = code or found[0], vars_template or found[1]
    return Firmware(kind="ovmf", code=Path(code), vars_template=Path(vars_template))


def default_guest_spec(*, firmware: str = "seabios", with_fio: bool = False,
                       kernel: Path | None = None, initrd: Path | None = None,
                       append: str = "", ovmf: Firmware | None = None, **fields) -> GuestSpec:
    """Spec of the default guest; keyword *fields* override GuestSpec fields."""
    if kernel is None:
        gk = default_kernel()
        kernel = gk.vmlinuz
        if initrd is None:
            initrd = build_initramfs(gk, with_fio=with_fio).path
    fw = (ovmf or ovmf_firmware()) if firmware == "ovmf" else Firmware()
    cmdline = " ".join(part for part in (BASE_APPEND, append) if part)
    return GuestSpec(kernel=Path(kernel), initrd=Path(initrd) if initrd else None,
                     append=cmdline, firmware=fw, **fields)
