"""SEV guest policy bits (SEV API spec, via QEMU ``target/i386/sev.h``).

Why this module exists: the policy is the one place where "SEV" and
"SEV-ES" differ on the QEMU command line (bit 2, ES). A policy given by hand
that contradicts the requested mode would boot a guest of the wrong kind and
every later witness would then test the wrong thing, so contradictions are
rejected before launch with a one-line reason.

The defaults reproduce AMD's ``launch-qemu.sh`` exactly: it starts from
NODBG (0x1), clears it for ``-allow-debug`` and sets ES for ``-sev-es``.
"""

from __future__ import annotations

from typing import Literal

from pytest_sev.modes import parse_kind

Mode = Literal["sev", "sev-es"]

NODBG = 0x01   #: debugging the guest is disallowed
NOKS = 0x02    #: key sharing with other guests disallowed
ES = 0x04      #: SEV-ES required
NOSEND = 0x08  #: sending the guest to another platform disallowed
DOMAIN = 0x10  #: may only be sent within the domain
SEV = 0x20     #: may only be sent to SEV-capable platforms

#: (mask, name, meaning) in bit order.
POLICY_BITS: tuple[tuple[int, str, str], ...] = (
    (NODBG, "NODBG", "debugging the guest is disallowed"),
    (NOKS, "NOKS", "key sharing with other guests disallowed"),
    (ES, "ES", "SEV-ES required"),
    (NOSEND, "NOSEND", "sending the guest to another platform disallowed"),
    (DOMAIN, "DOMAIN", "may only be sent within the domain"),
    (SEV, "SEV", "may only be sent to SEV-capable platforms"),
)

KNOWN_MASK = 0x3F

#: QEMU's own default when no ``policy=`` is given.
QEMU_DEFAULT_POLICY = NODBG



def _check_mode(mode: str) -> None:
    parse_kind(mode)  # ValueError naming the kinds


def policy_for(mode: Mode, allow_debug: bool = False) -> int:
    """The policy AMD's launch-qemu.sh passes for ``mode`` and ``-allow-debug``.

    sev -> 0x1 (QEMU's default, the script passes none), sev + allow-debug -> 0x0,
    sev-es -> 0x5, sev-es + allow-debug -> 0x4.
    """
    _check_mode(mode)
    policy = NODBG
    if allow_debug:
        policy &= ~NODBG
    if mode == "sev-es":
        policy |= ES
    return policy


def decode_policy(policy: int) -> list[str]:
    """Names of the bits set in ``policy``, in bit order.

    Bits outside the known table are listed as ``bitN`` so a reader sees them
    instead of having them silently dropped.
    """
    if not isinstance(policy, int) or isinstance(policy, bool):
        raise ValueError(f"policy must be an integer, got {policy!r}")
    if policy < 0:
        raise ValueError(f"policy must not be negative, got {policy}")
    names = [name for mask, name, _ in POLICY_BITS if policy & mask]
    rest = policy & ~KNOWN_MASK
    bit = 0
    while rest:
        if rest & 1:
            names.append(f"bit{bit}")
        rest >>= 1
        bit += 1
    return names


def es_mismatch(policy: int, mode: str) -> str | None:
    """The one ES-bit rule: why *policy* contradicts the guest kind *mode*, or None.

    Returned without the policy's name so each caller says where the value
    came from (``--sev-policy 0x5 sets...``, ``policy 0x5 sets...``).  Mode
    ``off``/``auto`` boot no SEV guest: any explicit policy is then a mistake.
    """
    es = bool(policy & ES)
    if mode == "sev" and es:
        return "sets the ES bit (0x4) but the mode is sev"
    if mode == "sev-es" and not es:
        return "lacks the ES bit (0x4) that sev-es requires"
    if mode == "off":
        return "given with --sev-mode=off (no SEV guest to apply it to)"
    return None


def check_policy(policy: int, mode: Mode) -> None:
    """Raise ``ValueError`` (one line) when ``policy`` contradicts ``mode``.

    Contradictions: negative or non-integer policy; bits outside the known
    mask 0x3F; the ES bit set for mode ``sev``; the ES bit missing for
    ``sev-es`` (firmware would launch a plain SEV guest).
    """
    _check_mode(mode)
    if not isinstance(policy, int) or isinstance(policy, bool):
        raise ValueError(f"policy {policy!r} is not an integer")
    if policy < 0:
        raise ValueError(f"policy {policy} is negative")
    unknown = policy & ~KNOWN_MASK
    if unknown:
        raise ValueError(
            f"policy {policy:#x} sets bits {unknown:#x} outside the known mask {KNOWN_MASK:#x}"
        )
    problem = es_mismatch(policy, mode)
    if problem:
        raise ValueError(f"policy {policy:#x} {problem}")
