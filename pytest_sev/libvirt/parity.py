"""Does libvirt's QEMU command line launch what launch-qemu.sh would? (pure)

libvirt writes QEMU's argv its own way (``-blockdev`` nodes, JSON ``-device``
and ``-object`` values, ``pc-q35-7.2`` for ``q35``, its own ids), so an
option-by-option diff (:func:`pytest_sev.sev.launchsh.compare_argv`) would be
all noise.  Instead both argvs are reduced to the facts that decide what the
guest is, and those are compared:

machine type, memory, vCPUs, kernel/initrd/command line, OVMF code file,
the ``sev-guest`` object (policy, cbitpos, reduced-phys-bits), whether the
machine points at it (``confidential-guest-support``/``memory-encryption``),
and each virtio device's ``iommu_platform``/``disable-legacy``.

Left out on purpose (:data:`LIBVIRT_DIFFERENCES`): the script's hotplug
headroom, its user-mode NIC, its ``-cpu EPYC`` for plain guests, and
``-no-reboot``, which libvirt (>= 7.x with QEMU >= 6.0) sets through QMP
``set-action reboot=shutdown`` instead of the command line.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pytest_sev.sev.launchsh import split_props

#: (what, launch-qemu.sh, libvirt, why it does not matter)
LIBVIRT_DIFFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("no-reboot", "-no-reboot", "QMP set-action reboot=shutdown (on_reboot=destroy)",
     "same effect: a guest reboot ends QEMU; checked live by rebooting a libvirt guest"),
    ("memory/cpu headroom", "-m N,slots=5,maxmem=30G, -smp N,maxcpus=64", "-m N, -smp N,sockets=N",
     "hotplug headroom only; the guest boots with the same memory and vCPUs"),
    ("network", "-netdev user + e1000", "none", "the harness's guests talk over the serial console"),
    ("plain guests' CPU", "-cpu EPYC", "the harness's choice: host (KVM) or max (TCG)",
     "only SEV guests need EPYC; both launchers give SEV guests EPYC"),
)


def _opts(argv: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    i = 1 if argv and not argv[0].startswith("-") else 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out.append((a, argv[i + 1]))
            i += 2
        else:
            out.append((a, None))
            i += 1
    return out


def _props(value: str) -> dict[str, Any]:
    """A QEMU option value as a dict: JSON (libvirt) or ``head,k=v,...`` (``_head`` key)."""
    if value.startswith("{"):
        try:
            return dict(json.loads(value))
        except ValueError:
            return {}
    head, split = split_props(value)
    props: dict[str, Any] = dict(split)
    if head is not None:
        props["_head"] = head
    return props


def _flag(value: Any) -> str:
    return "on" if str(value).lower() in ("on", "true", "yes", "1") else "off"


def _num(value: Any) -> int:
    return value if isinstance(value, int) else int(str(value), 0)


def _mib(text: str) -> int:
    props = _props(text)
    size = str(props.get("size", props.get("_head", "")))
    m = re.fullmatch(r"(\d+)([kKmMgG]?)[bB]?", size)
    if not m:
        return -1
    n, unit = int(m.group(1)), m.group(2).lower()
    return n // 1024 if unit == "k" else n * 1024 if unit == "g" else n


def facts(argv: list[str], ovmf_code: str | None = None) -> dict[str, Any]:
    """The guest-deciding facts of a QEMU argv, in either launcher's spelling."""
    f: dict[str, Any] = {"virtio": []}
    machine: dict[str, Any] = {}
    for opt, val in _opts(argv):
        if val is None:
            continue
        if opt in ("-machine", "-M"):
            p = _props(val)
            machine.update(p)
            if "_head" in p:
                head = p["_head"]
                f["machine"] = "q35" if head.startswith("pc-q35") or head == "q35" else head
        elif opt == "-m":
            f["memory_mib"] = _mib(val)
        elif opt == "-smp":
            m = re.match(r"(?:cpus=)?(\d+)", val)
            f["vcpus"] = int(m.group(1)) if m else -1
        elif opt in ("-kernel", "-initrd", "-append"):
            f[opt[1:]] = val
        elif opt == "-object":
            p = _props(val)
            if p.get("qom-type") == "sev-guest" or p.get("_head") == "sev-guest":
                f["sev"] = {"policy": _num(p.get("policy", 1)), "cbitpos": _num(p.get("cbitpos", -1)),
                            "reduced-phys-bits": _num(p.get("reduced-phys-bits", -1))}
        elif opt == "-device":
            p = _props(val)
            driver = str(p.get("driver", p.get("_head", "")))
            if driver.startswith("virtio-") and driver.endswith("-pci") or "-pci-non-transitional" in driver:
                family = driver.replace("-pci-non-transitional", "").replace("-pci", "")
                legacy_off = "non-transitional" in driver or _flag(p.get("disable-legacy", "off")) == "on"
                f["virtio"].append((family, _flag(p.get("iommu_platform", "off")),
                                    "on" if legacy_off else "off"))
    f["virtio"] = sorted(f["virtio"])
    f["sev_machine"] = any(k in machine for k in ("confidential-guest-support", "memory-encryption"))
    if ovmf_code is not None:
        f["ovmf_code"] = any(ovmf_code in a for a in argv)
    return f


def compare(libvirt_argv: list[str], script_argv: list[str], ovmf_code: str | None = None) -> list[str]:
    """Lines naming each fact that differs; empty means the same guest."""
    a, b = facts(libvirt_argv, ovmf_code), facts(script_argv, ovmf_code)
    return [f"{k}: libvirt {a.get(k)!r}, launch-qemu.sh {b.get(k)!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
