"""pytest hooks: options, start-up validation, header, outcome bookkeeping."""

from __future__ import annotations

import pytest

from .accel import choose_accel
from .options import add_options, read_config
from .session import RUN_CONFIG, run_config, verdict_line


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN_CONFIG] = read_config(config)
    config.addinivalue_line("markers", "qemu: boots a real guest under QEMU")
    config.addinivalue_line("markers", "sev_es: needs an SEV-ES guest (mode table decides run/skip/fail)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    cfg = run_config(config)
    accel = choose_accel(cfg.accel)
    return [verdict_line(config), f"pytest-sev: accelerator {accel.name} ({accel.reason})"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Remember each phase's report so fixtures can keep logs of failures."""
    report = yield
    setattr(item, f"sev_rep_{report.when}", report)
    return report
