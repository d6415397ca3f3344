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


@dataclass(frozen=True)
class ValidateLine:
    """One ``virt-host-validate`` line: ``QEMU: Checking for X : WARN (why)``."""

    driver: str
    check: str
    result: str  # PASS, WARN, FAIL (or NOTE)
    note: str = ""

    def describe(self) -> str:
        return f"{self.check}: {self.result}" + (f" ({self.note})" if self.note else "")


_VALIDATE_LINE = re.compile(r"^\s*(\w+): Checking (?:for |if )?(.*?)\s+:\s+([A-Z]+)(?: \((.*)\))?\s*$")
#: the lines that bear on SEV: libvirt's own SEV test, and KVM (no SEV without it)
_SEV_CHECKS = re.compile(r"secure guest|Secure Encrypted|hardware virtualization", re.IGNORECASE)


def parse_virt_host_validate(text: str) -> list[ValidateLine]:
    """Every check line of ``virt-host-validate`` output (other lines skipped)."""
    lines = []
    for raw in text.splitlines():
        m = _VALIDATE_LINE.match(raw)
        if m:
            lines.append(ValidateLine(m.group(1), m.group(2), m.group(3), (m.group(4) or "").strip()))
    return lines


def sev_validate_reason(text: str) -> str:
    """Why libvirt has no SEV, in ``virt-host-validate``'s words: its secure-guest
    line (AMD SEV: kernel parameter, firmware, /dev/sev) and KVM's, when not PASS."""
    return "; ".join(v.describe() for v in parse_virt_host_validate(text)
                     if _SEV_CHECKS.search(v.check) and v.result != "PASS")


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
