"""Attach a guest's evidence to the Allure report (whole, never truncated).

Without ``--alluredir`` allure's attach calls do nothing, so this is safe to
call on every run.  Each guest's attachments include its *provenance*: the
QEMU binary, OVMF, kernel, initrd and disks its argv named, with sha256 (see
:mod:`.provenance`); the description is also recorded for the session's
environment.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import allure

from pytest_sev.model.protocol import GuestLike as Guest
from pytest_sev.reporting import provenance

log = logging.getLogger(__name__)


def attach_text(name: str, text: str, kind=allure.attachment_type.TEXT) -> None:
    allure.attach(text, name=name, attachment_type=kind)


def attach_file(name: str, path: Path, kind=allure.attachment_type.TEXT) -> None:
    if Path(path).is_file():
        allure.attach.file(str(path), name=name, attachment_type=kind)


def guest_provenance(guest: Guest) -> provenance.GuestProvenance | None:
    """What *guest* ran, from its argv (None for a guest that never got one)."""
    if not guest.argv:
        return None
    from pytest_sev.build.manifest import session_manifests
    fw = guest.spec.firmware
    template = fw.vars_template if fw.kind == "ovmf" and fw.vars_path is None else None
    return provenance.guest_provenance(guest.spec.name, guest.argv, template,
                                       provenance.origins(session_manifests()))


def attach_provenance(guest: Guest) -> None:
    """Attach (and record for the environment) what *guest* ran; never raises:
    a report must not fail a test."""
    try:
        prov = guest_provenance(guest)
    except Exception as exc:  # noqa: BLE001 - see docstring
        log.warning("guest %s: provenance not described: %s: %s", guest.spec.name, type(exc).__name__, exc)
        return
    if prov is None:
        return
    provenance.record(prov)
    prefix = guest.spec.name
    attach_text(f"{prefix}: provenance", prov.text())
    attach_text(f"{prefix}: provenance.json", json.dumps(prov.to_dict(), indent=1), allure.attachment_type.JSON)


def attach_guest(guest: Guest, kernel_log: str | None) -> None:
    prefix = guest.spec.name
    attach_text(f"{prefix}: qemu command line", "\n".join(guest.argv))
    attach_provenance(guest)
    attach_file(f"{prefix}: console log", guest.logs["console log"])
    attach_file(f"{prefix}: qemu stderr", guest.logs["qemu stderr"])
    attach_file(f"{prefix}: qmp transcript", guest.logs["qmp transcript"])
    if "harness log" in guest.logs:  # why it was replaced / unusable, every stop stage
        attach_file(f"{prefix}: harness log", guest.logs["harness log"])
    if kernel_log:
        attach_text(f"{prefix}: guest kernel log", kernel_log)
    if guest.console is not None and guest.console.transcript:
        rows = [{"command": c, "exit": s, "seconds": round(t, 3)} for c, s, t in guest.console.transcript]
        attach_text(f"{prefix}: guest commands", json.dumps(rows, indent=1), allure.attachment_type.JSON)
