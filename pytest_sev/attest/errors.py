"""Errors of the attestation package.

Why one root: callers (the plugin, the CLI) catch :class:`AttestError` and
turn it into one line for a person; it is a ``PytestSevError`` like every
error of the package. Subclasses say which step failed.
"""

from __future__ import annotations

from pytest_sev.errors import PytestSevError


class AttestError(PytestSevError):
    """Root of every error raised by :mod:`pytest_sev.attest`."""


class FormatError(AttestError):
    """Bytes that do not follow the binary format they claim (certificate, blob, report)."""


class ChainError(AttestError):
    """A certificate chain that cannot be assembled (missing or duplicated certificate)."""


class MeasureError(AttestError):
    """An expected launch digest that cannot be computed from the given inputs."""


class SessionError(AttestError):
    """A LAUNCH_START session that cannot be built or written."""


class SecretError(AttestError):
    """A launch secret that cannot be built (size, GUID, missing secret area)."""


class ChainNotAnchored(ChainError):
    """A platform chain that does not reach AMD's ARK: nothing is sealed for its PDH.

    Why its own class: whoever holds a PDH that is not AMD-certified learns the
    TEK/TIK of every session sealed to it, so the owner stops before sealing
    and names the link that broke (or is missing)."""


class ReleaseRefused(AttestError):
    """A launch secret withheld: the chain or the measurement verdict does not allow releasing it."""
