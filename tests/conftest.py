"""Self-tests of the plugin: pytester for option handling, real QEMU for the rest."""

import os

from pytest_sev.cache import cache_root

# pytester moves HOME to a temporary directory; the inner runs must still find
# the provisioned kernel and built initramfs.
os.environ.setdefault("PYTEST_SEV_CACHE", str(cache_root()))

pytest_plugins = ["pytester"]

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def _qemu_processes(token: str) -> list[int]:
    """PIDs of QEMU processes with *token* in their command line (leak checks)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and b"qemu-system" in cmd[0] and any(token.encode() in a for a in cmd):
            found.append(int(proc.name))
    return found


@pytest.fixture
def qemu_processes():
    return _qemu_processes


@pytest.fixture(autouse=True)
def private_guest_budget(tmp_path_factory, monkeypatch):
    """Each self-test (and the pytest runs it starts) gets its own guest-budget
    directory: tests that run suites in subprocesses must not wait on slots
    held by another test's session guest (the budget itself is tested in
    tests/test_guest_budget.py)."""
    monkeypatch.setenv("PYTEST_SEV_BUDGET_DIR", str(tmp_path_factory.mktemp("budget")))
