"""Hooks the pytest-sev plugins offer each other, so none reaches into another.

- ``pytest_sev_report_environment``: extra Allure environment entries (the
  build plugin reports component commits here);
- ``pytest_sev_config_overrides``: RunConfig fields another plugin decides
  (the build plugin: QEMU/OVMF/kernel from ``--components``), asked for by
  the core ``run_config`` fixture without importing that plugin.
"""

from __future__ import annotations

from typing import Any

import pytest

HOOK_NAMES = ("pytest_sev_report_environment", "pytest_sev_config_overrides")


@pytest.hookspec
def pytest_sev_report_environment(config: pytest.Config) -> dict[str, str] | None:
    """Extra ``environment.properties`` entries, e.g.
    ``pytest_sev.reporting.environment.component_entries({"qemu": "v9.2.0-12-gabc"})``.
    Called once, at session end, on the xdist controller (or the only process)."""


@pytest.hookspec
def pytest_sev_config_overrides(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """RunConfig fields to replace for this session (only those the user left
    at their defaults are applied: an explicit option wins).  Called once, by
    the session-scoped ``run_config`` fixture."""


def register(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add these hookspecs once, whichever pytest-sev plugin loads first."""
    spec_missing = any(getattr(getattr(pluginmanager.hook, name, None), "spec", None) is None
                       for name in HOOK_NAMES)
    if spec_missing:
        import sys
        pluginmanager.add_hookspecs(sys.modules[__name__])
