"""Self-tests of the plugin: pytester for option handling, real QEMU for the rest."""

import os

from pytest_sev.cache import cache_root

# pytester moves HOME to a temporary directory; the inner runs must still find
# the provisioned kernel and built initramfs.
os.environ.setdefault("PYTEST_SEV_CACHE", str(cache_root()))

pytest_plugins = ["pytester"]

import threading  # noqa: E402
from functools import partial  # noqa: E402
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
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


# -- report tests (test_report_html, test_report_merge): Allure env and a loopback server --

@pytest.fixture
def report_env(tmp_path, monkeypatch):
    """Environment for inner runs and report.sh: a fixed runner name, the
    history beside the test's report, Allure installed once per machine."""
    monkeypatch.setenv("SEV_RUNNER", "selftest-runner")
    monkeypatch.setenv("SEV_ALLURE_HISTORY", str(tmp_path / "history.jsonl"))
    monkeypatch.setenv("SEV_TOOLS_DIR", str(cache_root() / "allure-tools"))
    return tmp_path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """``serve(directory) -> base URL`` on 127.0.0.1; stopped after the test."""
    servers = []

    def start(directory: Path) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(directory)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(10)


