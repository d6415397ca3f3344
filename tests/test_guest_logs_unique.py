"""One log directory per guest (issue 23.1), without booting anything.

Log directories used to be ``<index>-<name>-<epoch second>``: two guests
started in the same second (two xdist workers, two runs in one checkout)
shared one, so harness.log got every line twice and the passing twin's
cleanup deleted the failed twin's logs.  Each guest now gets a directory
of its own (:func:`pytest_sev.guest.guest.new_log_dir`), from any process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from pytest_sev.config import RunConfig
from pytest_sev.guest import guest as guest_mod
from pytest_sev.guest.guest import Guest, new_log_dir
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.plugin.fixtures import GuestFactory

SAME_SECOND = "20261207-120000"


@pytest.fixture
def one_second(monkeypatch):
    """Every guest starts in the same second."""
    real = time.strftime
    monkeypatch.setattr(guest_mod.time, "strftime",
                        lambda fmt, *a: SAME_SECOND if fmt == "%Y%m%d-%H%M%S" else real(fmt, *a))


def test_two_guests_in_the_same_second_get_two_directories(tmp_path, one_second):
    first, second = new_log_dir(tmp_path, "guest", 0), new_log_dir(tmp_path, "guest", 0)
    assert first != second and first.is_dir() and second.is_dir()
    assert first.parent == second.parent == tmp_path
    assert first.name.startswith(f"0-guest-{SAME_SECOND}-") and not any(first.iterdir())


def test_a_name_is_made_safe_and_a_missing_root_is_made(tmp_path):
    root = tmp_path / "gone" / "session-guest"
    made = new_log_dir(root, "../a b/c", 3)
    assert made.parent == root and made.name.startswith("3-.._a_b_c-")


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pytest_sev.guest import guest as g
    g.time.strftime = lambda fmt, *a: {same!r}
    go = Path(sys.argv[2])
    while not go.exists():  # both processes start their guests together
        time.sleep(0.005)
    print(g.new_log_dir(Path(sys.argv[1]), "guest", 0))
""")


def test_two_processes_in_the_same_second_get_two_directories(tmp_path):
    root, go = tmp_path / "session-guest", tmp_path / "go"
    code = CHILD.format(same=SAME_SECOND)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(go)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    dirs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(dirs)) == 2, dirs
    assert sorted(p.name for p in root.iterdir()) == sorted(d.rsplit("/", 1)[1] for d in dirs)


@pytest.fixture
def no_boot(monkeypatch):
    """Guests that "start" by writing one line to their harness.log."""
    def start(self: Guest, before_boot=None) -> None:
        self.note(f"started in {self.workdir.name}")

    monkeypatch.setattr(Guest, "start", start)


def test_failed_twins_logs_survive_the_passing_twins_cleanup(tmp_path, one_second, no_boot):
    root = tmp_path / "logs" / "session-guest"
    failed, passed = GuestFactory(RunConfig(), root), GuestFactory(RunConfig(), root)  # two workers
    bad = failed(default_guest_spec(name="guest"))
    good = passed(default_guest_spec(name="guest"))
    assert bad.workdir != good.workdir
    passed.finish(keep=False)  # the passing twin's cleanup comes first
    assert not good.workdir.exists()
    assert bad.workdir.is_dir()
    failed.finish(keep=True)
    lines = (bad.workdir / "harness.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"started in {bad.workdir.name}")  # its own, once
    assert [p.name for p in root.iterdir()] == [bad.workdir.name]


def test_the_last_passing_guest_leaves_no_empty_root(tmp_path, no_boot):
    root = tmp_path / "logs" / "test_x"
    factory = GuestFactory(RunConfig(), root)
    factory(default_guest_spec(name="guest"))
    factory(default_guest_spec(name="guest"))
    assert len(list(root.iterdir())) == 2
    factory.finish(keep=False)
    assert not root.exists()
