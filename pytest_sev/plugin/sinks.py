"""Report sinks never stop the run.

A sink is a directory the run writes evidence into: the Allure results
directory and the guest log directory.  One that cannot be written at all is
caught at start-up (:func:`pytest_sev.config.check_writable_dir`, one line,
rc 4).  One that fills up (or goes away) mid-run is reported *once* per
directory, as a warning line naming it, and again in the summary; the tests
keep running and every guest is still torn down.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

SINK_FAILURES = pytest.StashKey[dict[str, str]]()


def sink_failed(config: pytest.Config, directory: Path | str, why: str) -> None:
    """Say once that *directory* cannot be written (why), and go on."""
    failures = config.stash.setdefault(SINK_FAILURES, {})
    key = str(directory)
    if key in failures:
        return
    failures[key] = why
    line = f"pytest-sev: WARNING: cannot write to {key} ({why}); the run goes on without it"
    log.warning(line)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None:
        try:  # mid-test (an attachment) output is captured: write past it, as live logging does
            with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
                reporter.ensure_newline()
                reporter.write_line(line, yellow=True, bold=True)
        except Exception:  # the terminal itself is gone: the summary will not show either
            pass


def summary_lines(config: pytest.Config) -> list[str]:
    return [f"pytest-sev: WARNING: cannot write to {d} ({why}); evidence from then on is missing"
            for d, why in config.stash.get(SINK_FAILURES, {}).items()]


def why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
