"""Hooks other plugins implement to add to the report.

Kept to one: the components layer (QEMU/OVMF/kernel builds) is not written
yet, and when it is, it reports its commits here instead of the reporting
package reaching into it.
"""

from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_sev_report_environment(config: pytest.Config) -> dict[str, str] | None:
    """Extra ``environment.properties`` entries, e.g.
    ``pytest_sev.reporting.environment.component_entries({"qemu": "v9.2.0-12-gabc"})``.
    Called once, at session end, on the xdist controller (or the only process)."""
