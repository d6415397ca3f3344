"""Pure parsers for tool outputs: versions, kvm_amd parameters, virsh XML,
resource limits. Each takes the text a command or file produced."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

ENABLED_VALUES = frozenset({"1", "Y", "y"})  # 1/0 up to 5.12, Y/N from 5.13


def param_enabled(text: str) -> bool:
    return text.strip() in ENABLED_VALUES


def parse_qemu_version(text: str) -> tuple[int, int, int] | None:
    """``QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)``."""
    m = re.search(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def parse_kernel_release(text: str) -> tuple[int, int] | None:
    """``5.15.0-91-generic`` -> (5, 15)."""
    m = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def format_version(v: tuple[int, ...]) -> str:
    return ".".join(str(p) for p in v)


@dataclass(frozen=True)
class VirshSev:
    supported: bool
    cbitpos: int | None
    reduced_phys_bits: int | None
    max_guests: int | None
    max_es_guests: int | None
    cpu0_id: str | None = None  # libvirt >= 8.5 with QEMU >= 7.1: the chip id for AMD's KDS


def parse_domcapabilities(xml_text: str) -> VirshSev | None:
    """The ``<sev>`` element of ``virsh domcapabilities``; None when absent
    (libvirt older than 4.15 or a build without it).

    Attributes may be single- or double-quoted (an XML parser reads both);
    libvirt's first SEV documentation spelled the element
    ``reduced-phys-bits``, released libvirt prints ``reducedPhysBits``, so
    both are read. ``cpu0Id`` is text, not a number."""
    try:
        doc = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    sev = doc.find("./features/sev")
    if sev is None:
        return None

    def num(tag: str) -> int | None:
        el = sev.find(tag)
        if el is None or el.text is None:
            return None
        try:
            return int(el.text.strip())
        except ValueError:
            return None

    return VirshSev(
        supported=sev.get("supported") == "yes",
        cbitpos=num("cbitpos"),
        reduced_phys_bits=num("reducedPhysBits") if sev.find("reducedPhysBits") is not None
        else num("reduced-phys-bits"),
        max_guests=num("maxGuests"),
        max_es_guests=num("maxESGuests"),
        cpu0_id=(sev.findtext("cpu0Id") or "").strip() or None,
    )


def parse_memlock(limits_text: str) -> str | None:
    """The soft ``Max locked memory`` limit from ``/proc/<pid>/limits``:
    a byte count or ``unlimited``."""
    for line in limits_text.splitlines():
        if line.startswith("Max locked memory"):
            fields = line[len("Max locked memory"):].split()
            return fields[0] if fields else None
    return None


def describe_bytes(value: str) -> str:
    if not value.isdigit():
        return value
    n = int(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n} bytes ({n // size} {unit})"
    return f"{n} bytes"
