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
    AUTO = "auto"      #: plain guests, plus SEV(-ES) where the host can
    SEV_ES = "sev-es"  #: the host must run SEV-ES (and SEV) guests
    SEV = "sev"        #: the host must run SEV guests
    OFF = "off"        #: plain guests only
    SEV_SNP = "sev-snp"  #: an SEV-SNP guest: a readiness kind of the host report (not yet a run mode)


#: every run mode, in the order help texts list them
RUN_MODES: tuple[Mode, ...] = (Mode.AUTO, Mode.SEV_ES, Mode.SEV, Mode.OFF)
#: the modes that are also guest kinds (an SEV or SEV-ES guest)
SEV_KINDS: tuple[Mode, ...] = (Mode.SEV, Mode.SEV_ES)
#: the readiness a host report answers for: every SEV guest kind, SEV-SNP included.
#: Kept apart from RUN_MODES and SEV_KINDS so that answering "ready for SEV-SNP?"
#: changes neither the --sev-mode choices nor the guest kinds a test may ask for.
READINESS_KINDS: tuple[Mode, ...] = (Mode.SEV, Mode.SEV_ES, Mode.SEV_SNP)


def parse_kind(text: str) -> Mode:
    """A guest kind: ``sev`` or ``sev-es`` only; ``ValueError`` naming them."""
    if text not in SEV_KINDS:
        raise ValueError(f"unknown SEV mode {text!r}: expected one of {', '.join(SEV_KINDS)}")
    return Mode(text)
