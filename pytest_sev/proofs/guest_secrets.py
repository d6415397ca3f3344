"""What a running guest's ``efi_secret`` shows of the launch secret.

Why a module of its own: the last step of a secret's delivery is the guest's
-- OVMF (the AmdSev build) publishes its secret page as an EFI config table,
Linux's ``efi_secret`` parses the GUID-keyed table and shows one file per
entry under ``<securityfs>/secrets/coco``.  Reading that back is the only
proof the table the owner built is the table the guest understood.  Both the
attested launch (SEV hardware) and the plain-guest delivery check read it
here, and both get yes / no / unknown: a read that failed is ``unknown``,
never "no secrets".
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pytest_sev.model.protocol import GuestLike

log = logging.getLogger(__name__)

SECURITYFS = "/sys/kernel/security"
SECRETS_DIR = f"{SECURITYFS}/secrets/coco"
_NO_DIR = "pytest-sev: no secrets dir"

#: one command: securityfs mounted when it is not, then "<name> <hex>" per entry
#: (``od -v``: no ``*`` for repeated lines)
READ_COMMAND = (
    f"grep -q ' {SECURITYFS} securityfs ' /proc/mounts || mount -t securityfs securityfs {SECURITYFS}; "
    f"if [ -d {SECRETS_DIR} ]; then for f in {SECRETS_DIR}/*; do [ -e \"$f\" ] || continue; "
    "echo \"$(basename \"$f\") $(od -An -v -tx1 \"$f\" | tr -d ' \\n')\"; done; "
    f"else echo '{_NO_DIR}'; fi"
)
_LINE = re.compile(r"^([0-9a-fA-F-]{36}) ([0-9a-f]*)$")
_KERNEL_LINE = re.compile(r"efi_secret|CocoSecret|secret area", re.I)

Status = Literal["read", "no-area", "unknown"]


@dataclass(frozen=True)
class GuestSecrets:
    """``read``: the entries efi_secret lists (maybe none); ``no-area``: the
    guest has no secrets directory (no efi_secret, or no secret table it
    accepted); ``unknown``: the read itself failed."""

    status: Status
    entries: dict[str, bytes] = field(default_factory=dict)
    reason: str = ""
    kernel_lines: tuple[str, ...] = ()

    def describe(self) -> str:
        lines = "; ".join(self.kernel_lines) or "no efi_secret/CocoSecret kernel lines"
        if self.status == "read":
            return f"{len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'} in {SECRETS_DIR} ({lines})"
        return f"{self.status}: {self.reason} ({lines})"


def parse_listing(text: str) -> tuple[Status, dict[str, bytes], str]:
    """The output of :data:`READ_COMMAND`, as (status, entries, reason). Pure."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if _NO_DIR in lines:
        return "no-area", {}, f"{SECRETS_DIR} does not exist"
    entries: dict[str, bytes] = {}
    for ln in lines:
        m = _LINE.match(ln)
        if not m:
            return "unknown", {}, f"unexpected line in the listing: {ln[:120]!r}"
        try:
            name = str(uuid.UUID(m.group(1)))
            entries[name] = bytes.fromhex(m.group(2))
        except ValueError:
            return "unknown", {}, f"unreadable entry line: {ln[:120]!r}"
    return "read", entries, ""


def kernel_secret_lines(kernel_log: str) -> tuple[str, ...]:
    """The kernel's own words on the secret area (``efi: ... CocoSecret=``,
    ``efi_secret ...: Created N entries``, its errors). Pure."""
    return tuple(ln.strip() for ln in kernel_log.splitlines() if _KERNEL_LINE.search(ln))


def read_guest_secrets(guest: GuestLike, timeout: float = 60.0) -> GuestSecrets:
    """Mount securityfs if needed and read every entry efi_secret shows.

    The kernel's lines only explain (a denied dmesg gives none); the listing
    decides.  A guest that dies or hangs raises its named failure."""
    lines = kernel_secret_lines(guest.kernel_log())
    out, status = guest.run(READ_COMMAND, timeout=timeout)
    if status != 0:
        return GuestSecrets("unknown", reason=f"listing {SECRETS_DIR} exited {status}: {out.strip()[-200:]}",
                            kernel_lines=lines)
    state, entries, reason = parse_listing(out)
    result = GuestSecrets(state, entries, reason, lines)
    log.info("secrets: %s", result.describe())
    return result


def delivery_problems(expected: Mapping[str, bytes], got: GuestSecrets) -> list[str]:
    """What differs between the secrets the owner sent and what the guest
    shows; empty when every entry arrived byte for byte and nothing else did. Pure."""
    if got.status != "read":
        return [got.describe()]
    want = {str(uuid.UUID(str(g))): v for g, v in expected.items()}
    problems = [f"{g}: missing in the guest" for g in want if g not in got.entries]
    problems += [f"{g}: {len(got.entries[g])} bytes differ from the {len(v)} sent"
                 for g, v in want.items() if g in got.entries and got.entries[g] != v]
    problems += [f"{g}: in the guest but never sent" for g in got.entries if g not in want]
    return problems
