"""--dist loadgroup really groups: the self-tests and the suites rely on it.

Why a test: the live libvirt tests restart the machine's one libvirtd and the
suites share one guest per kind, both through ``xdist_group``. pytest 9.2's
structured node ids made xdist drop the group silently
(pytest-dev/pytest-xdist#1386): tests ran in two workers at once and the
libvirt ones failed at random. A dependency update that breaks grouping
again fails here, by name, instead.
"""

from __future__ import annotations

import re

import pytest

GROUPED = """
import pytest
pytestmark = pytest.mark.xdist_group("one-daemon")

@pytest.mark.parametrize("i", range(6))
def test_in_the_group(i):
    pass
"""


def test_one_xdist_group_runs_in_one_worker(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(test_grouped=GROUPED)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "sev_allure=false", "--sev-mode=off",
                                           "-n", "2", "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=6)
    workers = set(re.findall(r"\[(gw\d+)\] .*PASSED test_grouped\.py::test_in_the_group", result.stdout.str()))
    assert len(workers) == 1, f"one xdist group ran in workers {sorted(workers)} (pytest-dev/pytest-xdist#1386?)"
