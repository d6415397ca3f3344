"""Errors of the build package (defined with the package's one root in
:mod:`pytest_sev.errors`, re-exported here where the build code raises them)."""

from pytest_sev.errors import BuildError, SourcesError

__all__ = ["BuildError", "SourcesError"]
