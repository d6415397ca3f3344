"""Kernel module dependency resolution over ``modules.dep`` (pure).

The default guest loads a handful of modules (virtio transport, block and
SCSI drivers, ``msr``) from its initramfs with busybox ``insmod``, which does
not resolve dependencies: the closure and a valid load order come from here.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from pytest_sev.errors import MissingModule

#: Modules the embedded guest loads, by name; their dependencies follow.
DEFAULT_GUEST_MODULES = (
    "virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "msr", "cpuid",
)

#: Modules loaded when the kernel has them, skipped when it does not: what an
#: SEV-SNP guest needs to ask for its attestation report through configfs-tsm
#: (Linux >= 6.7; Debian 12's 6.1 has configfs only, bookworm-backports' 6.12
#: all three). Loading them on a plain or older guest is harmless.
OPTIONAL_GUEST_MODULES = ("configfs", "tsm", "sev_guest")


def module_name(path: str) -> str:
    """``kernel/drivers/block/virtio_blk.ko.xz`` -> ``virtio_blk`` (``-`` as ``_``)."""
    name = PurePosixPath(path).name
    name = name.split(".ko")[0]
    return name.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """Map module name -> (relative path, dependency paths) from modules.dep."""
    table: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        table[module_name(path)] = (path.strip(), deps.split())
    return table


def parse_builtin(text: str) -> set[str]:
    """Names of modules compiled into the kernel (``modules.builtin``)."""
    return {module_name(line) for line in text.split() if line.strip()}


def load_order(wanted: list[str] | tuple[str, ...], dep_text: str, builtin_text: str = "",
               optional: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Relative paths to insmod, dependencies first, each once.

    Built-in modules need no loading and are skipped; an unknown name raises
    :class:`MissingModule` naming it, because a guest without its disk driver
    would only fail much later with a confusing timeout. ``optional`` names
    are loaded after ``wanted`` when the kernel has them as modules, and
    skipped silently when it does not.
    """
    table = parse_modules_dep(dep_text)
    builtin = parse_builtin(builtin_text)
    wanted = [*wanted, *(n for n in optional if n.replace("-", "_") in table)]
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in table:
            if name in builtin:
                return
            raise MissingModule(f"kernel module {name!r} is neither in modules.dep nor built in")
        path, deps = table[name]
        # modules.dep lists the full closure; visiting each keeps the order valid
        for dep in reversed(deps):
            visit(module_name(dep))
        order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order
