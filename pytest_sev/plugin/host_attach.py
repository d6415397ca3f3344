"""Attach the host readiness report to every test of the host suite.

A red host check in a nightly report should show the whole picture (every
check, its value and remedy, and the verdict per mode) on the test itself,
without a terminal log. The text is the same ``format_text()`` that
``python -m pytest_sev host`` prints, from the report the run already probed.
"""

from __future__ import annotations

import allure
import pytest

ATTACHMENT_NAME = "host readiness report"


def attach_host_report(config: pytest.Config) -> None:
    from pytest_sev.plugin.state import host_report  # the run's one probe, cached in the stash
    allure.attach(host_report(config).format_text(), name=ATTACHMENT_NAME,
                  attachment_type=allure.attachment_type.TEXT)
