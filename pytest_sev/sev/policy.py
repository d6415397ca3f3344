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


# -- SEV-SNP guest policy (SNP firmware ABI, GUEST_POLICY; QEMU ``sev-snp-guest``) --------
#
# Why apart from the SEV table above: the SNP policy is a different 64-bit word
# (QEMU's ``policy`` property of ``sev-snp-guest``), with its own rule (bit 17
# must be 1) and its own meaning for "debug".  It is checked before launch so a
# policy the firmware would refuse (SNP_LAUNCH_START fails with an opaque
# status) is one line naming the bit instead.

SNP_ABI_MASK = 0xFFFF                #: bits 0-15: minimum ABI minor (0-7) and major (8-15)
SNP_SMT = 1 << 16                    #: SMT (hyper-threading) allowed on the host
SNP_RESERVED_ONE = 1 << 17           #: reserved, the firmware requires it set
SNP_MIGRATE_MA = 1 << 18             #: association with a migration agent allowed
SNP_DEBUG = 1 << 19                  #: SNP_DBG_DECRYPT/ENCRYPT of guest memory allowed
SNP_SINGLE_SOCKET = 1 << 20          #: the guest may run on one socket only

#: (mask, name, meaning) of the named SNP policy bits, in bit order.
SNP_POLICY_BITS: tuple[tuple[int, str, str], ...] = (
    (SNP_SMT, "SMT", "SMT allowed (bit 16)"),
    (SNP_RESERVED_ONE, "RESERVED-1", "reserved, must be 1 (bit 17)"),
    (SNP_MIGRATE_MA, "MIGRATE_MA", "migration agent allowed (bit 18)"),
    (SNP_DEBUG, "DEBUG", "debugging allowed (bit 19)"),
    (SNP_SINGLE_SOCKET, "SINGLE_SOCKET", "single socket only (bit 20)"),
    (1 << 21, "CXL_ALLOW", "CXL memory allowed (bit 21)"),
    (1 << 22, "MEM_AES_256_XTS", "AES-256-XTS memory encryption required (bit 22)"),
    (1 << 23, "RAPL_DIS", "running average power limit disabled (bit 23)"),
    (1 << 24, "CIPHERTEXT_HIDING", "ciphertext hiding required (bit 24)"),
    (1 << 25, "PAGE_SWAP_DISABLE", "guest page swap disabled (bit 25)"),
)

SNP_KNOWN_MASK = SNP_ABI_MASK | sum(mask for mask, _, _ in SNP_POLICY_BITS)

#: QEMU's ``sev-snp-guest`` default (and AMD's snp-latest launch-qemu.sh's): SMT + bit 17.
SNP_DEFAULT_POLICY = SNP_SMT | SNP_RESERVED_ONE


def snp_policy_for(allow_debug: bool = False) -> int:
    """The SNP policy of ``launch -sev-snp`` (QEMU's default) and ``-allow-debug`` (bit 19)."""
    return SNP_DEFAULT_POLICY | (SNP_DEBUG if allow_debug else 0)


def describe_snp_policy(policy: int) -> str:
    """``0x30000: SMT allowed, debug off, single socket off, ABI >= 0.0`` (what
    a reader needs to judge a guest: the three bits that change its exposure)."""
    def onoff(mask: int) -> str:
        return "on" if policy & mask else "off"
    smt = "SMT allowed" if policy & SNP_SMT else "SMT not allowed"
    abi = f"ABI >= {(policy >> 8) & 0xFF}.{policy & 0xFF}"
    return f"{policy:#x}: {smt}, debug {onoff(SNP_DEBUG)}, single socket {onoff(SNP_SINGLE_SOCKET)}, {abi}"


def snp_policy_problem(policy: int) -> str | None:
    """Why *policy* cannot launch an SNP guest, or None.

    Refused: not a 64-bit unsigned integer; bit 17 clear (the firmware
    requires it); bits outside the SNP ABI's named ones.  The message carries
    :func:`describe_snp_policy` so SMT, debug and single socket are named."""
    if not isinstance(policy, int) or isinstance(policy, bool):
        return f"SNP policy {policy!r} is not an integer"
    if not 0 <= policy < 1 << 64:
        return f"SNP policy {policy:#x} is not a 64-bit value"
    if not policy & SNP_RESERVED_ONE:
        return (f"SNP policy {describe_snp_policy(policy)} lacks bit 17 (0x20000), "
                "which the firmware requires set")
    unknown = policy & ~SNP_KNOWN_MASK
    if unknown:
        return (f"SNP policy {describe_snp_policy(policy)} sets unknown bits {unknown:#x} "
                f"(known mask {SNP_KNOWN_MASK:#x})")
    return None
