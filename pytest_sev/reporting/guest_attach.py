"""Attach a guest's evidence to the Allure report (whole, never truncated).

Without ``--alluredir`` allure's attach calls do nothing, so this is safe to
call on every run.
"""

from __future__ import annotations

import json
from pathlib import Path

import allure

from pytest_sev.guest.protocol import GuestLike as Guest


def attach_text(name: str, text: str, kind=allure.attachment_type.TEXT) -> None:
    allure.attach(text, name=name, attachment_type=kind)


def attach_file(name: str, path: Path, kind=allure.attachment_type.TEXT) -> None:
    if Path(path).is_file():
        allure.attach.file(str(path), name=name, attachment_type=kind)


def attach_guest(guest: Guest, kernel_log: str | None) -> None:
    prefix = guest.spec.name
    attach_text(f"{prefix}: qemu command line", "\n".join(guest.argv))
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
