"""Locate OVMF (UEFI) firmware: SEV-ES guests cannot boot with SeaBIOS."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_sev.model.spec import Firmware

#: (CODE, VARS) pairs in the order they are tried: an AMD build.sh install
#: prefix first, then distribution layouts (Debian/Ubuntu, Fedora).
OVMF_CANDIDATES = (
    ("/usr/local/share/qemu/OVMF_CODE.fd", "/usr/local/share/qemu/OVMF_VARS.fd"),
    ("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"),
    ("/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"),
)


def find_ovmf(prefix: Path | None = None) -> tuple[Path, Path] | None:
    """First OVMF (CODE, VARS) pair that exists, or None."""
    cands = list(OVMF_CANDIDATES)
    if prefix is not None:
        share = Path(prefix) / "share" / "qemu"
        cands.insert(0, (str(share / "OVMF_CODE.fd"), str(share / "OVMF_VARS.fd")))
    for code, vars_ in cands:
        if Path(code).is_file() and Path(vars_).is_file():
            return Path(code), Path(vars_)
    return None


#: The one-file AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc), where build.sh-style
#: installs and distributions put it (Ubuntu and Debian from edk2 2023.05, Fedora).
AMDSEV_CANDIDATES = (
    "/usr/local/share/qemu/OVMF.amdsev.fd",
    "/usr/share/OVMF/OVMF.amdsev.fd",
    "/usr/share/edk2/ovmf/OVMF.amdsev.fd",
)


def find_amdsev_ovmf() -> Path | None:
    """The first installed AmdSev OVMF, or None (Debian 12's ovmf has none)."""
    return next((Path(c) for c in AMDSEV_CANDIDATES if Path(c).is_file()), None)


#: one-file OVMF images of distributions (CODE and VARS in one), the -bios an
#: SEV-SNP guest boots from when there is no AmdSev build (Debian/Ubuntu, Fedora)
ONE_IMAGE_CANDIDATES = (
    "/usr/share/ovmf/OVMF.fd",
    "/usr/share/OVMF/OVMF.fd",
    "/usr/share/edk2/ovmf/OVMF.fd",
)


def find_snp_firmware(prefix: Path | None = None) -> tuple[str, Path] | None:
    """The firmware an SEV-SNP guest boots from, as (kind, image): the AmdSev
    build first (it checks kernel hashes), then a one-file ``OVMF.fd``; a
    build.sh prefix before the distribution's.  None: neither is installed.
    Why not OVMF_CODE/VARS: QEMU refuses pflash for SNP guests."""
    share = Path(prefix) / "share" / "qemu" if prefix is not None else None
    amdsev = [share / "OVMF.amdsev.fd"] if share else []
    one = [share / "OVMF.fd"] if share else []
    for kind, cands in (("amdsev", [*amdsev, *map(Path, AMDSEV_CANDIDATES)]),
                        ("bios", [*one, *map(Path, ONE_IMAGE_CANDIDATES)])):
        found = next((c for c in cands if c.is_file()), None)
        if found is not None:
            return kind, found
    return None


def vars_store(fw: Firmware, default: Path) -> tuple[Path | None, bool]:
    """The per-guest UEFI variable store of *fw*: (path, made now).

    launch-qemu.sh's ``IMAGE.fd``: a copy of ``OVMF_VARS.fd`` made once and
    then reused, so a guest keeps its boot entries.  ``fw.vars_path`` is where
    the spec asks for it (None: *default*, in the guest's run directory).  Not
    OVMF: no store at all.
    """
    if fw.kind != "ovmf":
        return None, False
    target = fw.vars_path or default
    if target.exists():
        return target, False
    if fw.vars_template is None:
        raise FileNotFoundError("OVMF needs a VARS template to copy")
    shutil.copyfile(fw.vars_template, target)
    return target, True
