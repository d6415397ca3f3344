"""Errors of the attestation package.

Why one root: callers (the plugin, the CLI) catch :class:`AttestError` and
turn it into one line for a person; the integrator re-parents it under the
project's ``PytestSevError``. Subclasses say which step failed.
"""

from __future__ import annotations


class AttestError(Exception):
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
