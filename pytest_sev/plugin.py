"""pytest11 entry point of pytest-sev: hooks and fixtures, kept apart."""

from .fixtures import guest, guest_factory, host, run_config, sev_es_guest, sev_guest  # noqa: F401
from .hooks import (  # noqa: F401
    pytest_addoption,
    pytest_configure,
    pytest_report_header,
    pytest_runtest_makereport,
)
