"""Choose the accelerator: KVM only where it can really run a stock guest.

``/dev/kvm`` existing is not enough (see measured-here.md: a paravirtual
/dev/kvm without svm/vmx stops a guest right after SeaBIOS), so KVM also
needs the CPU to advertise ``svm`` or ``vmx``.  Otherwise TCG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AccelChoice:
    name: str  # "kvm" | "tcg"
    reason: str


def cpu_flags(cpuinfo_text: str) -> set[str]:
    """The first ``flags`` line of /proc/cpuinfo as a set."""
    for line in cpuinfo_text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def choose_accel(requested: str = "auto", root: Path = Path("/")) -> AccelChoice:
    """``requested`` is ``auto``, ``kvm`` or ``tcg``; auto probes the host."""
    if requested in ("kvm", "tcg"):
        return AccelChoice(requested, f"requested with --accel={requested}")
    kvm = root / "dev" / "kvm"
    if not kvm.exists():
        return AccelChoice("tcg", "/dev/kvm does not exist")
    try:
        fd = os.open(kvm, os.O_RDWR)
        os.close(fd)
    except OSError as exc:
        return AccelChoice("tcg", f"/dev/kvm cannot be opened: {exc.strerror}")
    try:
        flags = cpu_flags((root / "proc" / "cpuinfo").read_text())
    except OSError:
        flags = set()
    if not flags & {"svm", "vmx"}:
        return AccelChoice("tcg", "/dev/kvm exists but the CPU has neither svm nor vmx")
    return AccelChoice("kvm", "/dev/kvm opens and the CPU has " + ("svm" if "svm" in flags else "vmx"))
