"""The one run mode of pytest-sev, and the guest kinds it asks for.

Why one enum: "mode" is both what a run expects of its host (design.md's mode
table: auto, sev-es, sev, off) and, for the two SEV values, what kind of
guest a test boots.  Every module compares against these members (they are
``str`` subclasses, so ``Mode.SEV_ES == "sev-es"``), and the option parser,
the mode table, the policy rule and the markers cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    AUTO = "auto"      #: plain guests, plus SEV(-ES, -SNP) where the host can
    SEV_ES = "sev-es"  #: the host must run SEV-ES (and SEV) guests
    SEV = "sev"        #: the host must run SEV guests
    OFF = "off"        #: plain guests only
    SEV_SNP = "sev-snp"  #: the host must run SEV-SNP guests (SEV-ES and SEV where it can)


#: every run mode, in the order help texts list them
RUN_MODES: tuple[Mode, ...] = (Mode.AUTO, Mode.SEV_SNP, Mode.SEV_ES, Mode.SEV, Mode.OFF)
#: the kinds QEMU's ``sev-guest`` object launches (its policy's ES bit tells them
#: apart).  SEV-SNP is not one: it is another object (``sev-snp-guest``) with
#: another policy word, so the SEV policy rules must never accept it.
SEV_KINDS: tuple[Mode, ...] = (Mode.SEV, Mode.SEV_ES)
#: every encrypted guest kind a test may ask for (marker, fixture, factory kind),
#: each decided by the mode table: the sev-guest kinds and SEV-SNP
GUEST_KINDS: tuple[Mode, ...] = (*SEV_KINDS, Mode.SEV_SNP)
#: the readiness a host report answers for: every encrypted guest kind
READINESS_KINDS: tuple[Mode, ...] = GUEST_KINDS


def parse_kind(text: str) -> Mode:
    """A ``sev-guest`` kind: ``sev`` or ``sev-es`` only; ``ValueError`` naming them
    (SEV-SNP has its own policy word: :func:`pytest_sev.sev.policy.snp_policy_for`)."""
    if text not in SEV_KINDS:
        raise ValueError(f"unknown SEV mode {text!r}: expected one of {', '.join(SEV_KINDS)}")
    return Mode(text)
