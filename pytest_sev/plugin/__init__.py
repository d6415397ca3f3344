"""The pytest layer of pytest-sev: the only package that imports pytest.

Three pytest11 entry points live here, so each can be switched off alone:

- ``sev`` (this module): options, the mode table on markers, the core
  fixtures, how a run stops on SIGTERM and timeouts (:mod:`.hooks`,
  :mod:`.fixtures`, :mod:`.options`, :mod:`.state`, :mod:`.mode_table`,
  :mod:`.signals`); the host-state ledger around guest-booting tests (:mod:`.ledger`);
- ``sev-report`` (:mod:`.reporting`): Allure results, labels, environment;
- ``sev-build`` (:mod:`.build`): ``--components`` and the ``components`` fixture.

They talk through the hooks in :mod:`.hookspecs`, never by importing each other.
"""

from pytest_sev.plugin.fixtures import (
    _sev_shared_guest,
    guest,
    guest_factory,
    host,
    run_config,
    sev_es_guest,
    sev_guest,
    sev_snp_guest,
)
from pytest_sev.plugin.hooks import (
    pytest_addhooks,
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
    pytest_runtest_call,
    pytest_runtest_makereport,
    pytest_runtest_setup,
    pytest_terminal_summary,
    pytest_unconfigure,
    pytest_xdist_auto_num_workers,
)
from pytest_sev.plugin.ledger import _sev_host_ledger
from pytest_sev.plugin.signals import pytest_keyboard_interrupt, pytest_timeout_set_timer

__all__ = [
    "_sev_host_ledger", "_sev_shared_guest", "guest", "guest_factory", "host", "pytest_addhooks", "pytest_addoption", "pytest_configure",
    "pytest_keyboard_interrupt", "pytest_report_header", "pytest_runtest_call", "pytest_runtest_makereport", "pytest_runtest_setup",
    "pytest_terminal_summary", "pytest_timeout_set_timer", "pytest_unconfigure", "pytest_xdist_auto_num_workers",
    "run_config",
    "sev_es_guest", "sev_guest", "sev_snp_guest",
]
