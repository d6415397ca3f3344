"""Host prerequisites for SEV / SEV-ES, one test per check.

Each check of the host report is its own row, so a report (terminal, Allure)
shows exactly which prerequisite is missing and how to fix it. What a failing
check means depends on the mode (design.md): under ``--sev-es`` / ``--sev`` a
check that mode needs FAILS with its value and remedy, so a runner that lost
SEV-ES goes red; under auto/off, or for a check the mode does not need, it is
skipped with the same text. A check the probe could not determine is not a
pass: it fails too when the mode needs it ("not determined", with its remedy),
and is skipped otherwise.

The check names are a static list (``CHECK_NAMES``) so parametrization is
known at collection time, before the host is probed; the ``host`` and
``run_config`` fixtures come from the plugin.
"""

import pytest

from pytest_sev.host import CHECK_NAMES, check_outcome


@pytest.mark.parametrize("check_name", CHECK_NAMES)
def test_host_check(check_name, host, run_config):
    check = host.check(check_name)
    outcome = check_outcome(check, run_config.mode)
    if outcome.action == "fail":
        pytest.fail(outcome.reason, pytrace=False)
    if outcome.action == "skip":
        pytest.skip(outcome.reason)
    # (check_outcome already turned fail, skip and unknown info rows into a fail or skip)
