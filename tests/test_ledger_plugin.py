"""The host-state ledger in real pytest sessions (pytester subprocesses) with
real QEMU: a test that leaks on purpose (a stray QEMU, a held budget slot)
fails naming the leak, a clean one passes, the session's shared guest started
inside a test is not that test's leak, and the ledger is in the Allure results.

Every QEMU an inner test starts writes its pid into a file; the module's
``stray_pids`` fixture kills whatever is still running at the end, whatever
happened (the inner pytest's exit also takes them: QEMU runs with PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from pytest_sev.qemu.process import process_state

pytestmark = pytest.mark.usefixtures("stray_pids")

#: a QEMU that runs nothing: no machine, paused, no devices, no display
STRAY_ARGV = ["qemu-system-x86_64", "-machine", "none", "-S", "-nodefaults", "-display", "none",
              "-monitor", "none", "-serial", "none"]

INNER = f"""
import os
from pathlib import Path

import pytest

from pytest_sev.guest.budget import SlotPool, slot_dir
from pytest_sev.qemu.process import QemuProcess

ARGV = {STRAY_ARGV!r}
KEEP = []  # what the leaking tests hold on to (a lost FileLock would release itself)


def start(tmp_path):
    proc = QemuProcess(ARGV, name="stray", output=tmp_path / "qemu.log").start()
    with open(os.environ["LEDGER_PIDS"], "a") as f:
        f.write(f"{{proc.pid}}\\n")
    return proc


@pytest.mark.qemu
def test_leaks_a_qemu(tmp_path):
    KEEP.append(start(tmp_path))


@pytest.mark.qemu
def test_stops_its_qemu(tmp_path):
    start(tmp_path).stop()


@pytest.mark.qemu
def test_keeps_a_slot():
    KEEP.append(SlotPool(slot_dir(), "plain", 4).acquire(timeout=5))


@pytest.mark.qemu
def test_gives_its_slot_back():
    with SlotPool(slot_dir(), "plain", 4).acquire(timeout=5):
        pass


def test_not_guest_booting_is_not_checked(tmp_path):
    KEEP.append(start(tmp_path))


@pytest.fixture
def holder(tmp_path):
    # a function-scoped fixture holding a guest-like QEMU it never stops: the
    # test's leak (only fixtures that outlive the test are exempt)
    class Holder:
        process = start(tmp_path)
    return Holder()


@pytest.mark.qemu
def test_fixture_of_the_test_leaks(holder):
    pass
"""


def _alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")


@pytest.fixture(scope="module")
def stray_pids(tmp_path_factory):
    """The file inner tests write QEMU pids into; kills those still running at the end.

    Only a pid whose command line is still the stray QEMU's: a pid of a QEMU
    that already exited may have been reused (by libvirtd, another worker's
    guest) by the time the module ends."""
    path = tmp_path_factory.mktemp("ledger") / "pids.txt"
    path.touch()
    os.environ["LEDGER_PIDS"] = str(path)
    try:
        yield path
    finally:
        os.environ.pop("LEDGER_PIDS", None)
        for line in path.read_text().split():
            try:
                argv = [a.decode() for a in Path(f"/proc/{int(line)}/cmdline").read_bytes().split(b"\0")]
                if argv[0].endswith(STRAY_ARGV[0]) and argv[1:len(STRAY_ARGV)] == STRAY_ARGV[1:]:
                    os.kill(int(line), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", *args)


def attachments(results: Path, name: str) -> list[str]:
    """Texts of every attachment called *name* in an Allure results directory."""
    texts = []
    for path in list(results.glob("*-result.json")) + list(results.glob("*-container.json")):
        data = json.loads(path.read_text())
        steps = [data] + data.get("befores", []) + data.get("afters", [])
        for step in steps:
            for att in step.get("attachments", []):
                if att.get("name") == name:
                    texts.append((results / att["source"]).read_text())
    return texts


def test_leaks_fail_naming_them_and_clean_tests_pass(pytester, stray_pids):
    results = pytester.path / "allure"
    res = run(pytester, f"--alluredir={results}", "-o", "sev_allure=true")
    # the two leaking tests pass their call and fail their teardown; the rest pass
    res.assert_outcomes(passed=6, errors=3)
    out = res.stdout.str()
    pids = [int(p) for p in stray_pids.read_text().split()]
    assert len(pids) == 4  # leaked, stopped, not checked, the fixture's
    leaked = pids[0]
    assert re.search(rf"ERROR at teardown of test_leaks_a_qemu.*?left behind: QEMU pid {leaked} "
                     rf"\(argv qemu-system-x86_64 -machine none -S", out, re.S), out
    assert re.search(r"ERROR at teardown of test_keeps_a_slot.*?left behind: budget slot plain-0 held "
                     r"\(by pid \d+: .*plain-0\.lock\)", out, re.S), out
    # only the leaking tests are named
    for clean in ("test_stops_its_qemu", "test_gives_its_slot_back", "test_not_guest_booting_is_not_checked"):
        assert f"ERROR at teardown of {clean}" not in out
    assert not _alive(pids[1])
    assert re.search(rf"ERROR at teardown of test_fixture_of_the_test_leaks.*?left behind: QEMU pid {pids[3]} ",
                     out, re.S), out
    # the ledger is in the report, on every guest-booting test, with its four parts
    texts = attachments(results, "host ledger")
    assert len(texts) == 5, texts
    leak_text = next(t for t in texts if f"left behind: QEMU pid {leaked}" in t)
    for part in ("before the test:", "after its teardown:", "diff:", "unknowns:", "QEMU processes"):
        assert part in leak_text
    assert sum("no leak found" in t for t in texts) == 2


def test_xdist_workers_are_not_blamed_for_each_other(pytester, stray_pids):
    """Two workers: the stray QEMU and the kept slot of one stay up while the
    other runs its tests; only the three leaking tests fail."""
    pytest.importorskip("xdist")
    res = run(pytester, "-n", "2", "-o", "sev_allure=false")
    res.assert_outcomes(passed=6, errors=3)
    errors = set(re.findall(r"ERROR at teardown of (\w+)", res.stdout.str()))
    assert errors == {"test_leaks_a_qemu", "test_keeps_a_slot", "test_fixture_of_the_test_leaks"}


def test_the_ledger_can_be_turned_off(pytester, stray_pids):
    res = run(pytester, "-o", "sev_ledger=false", "-o", "sev_allure=false")
    res.assert_outcomes(passed=6)
    assert "left behind" not in res.stdout.str()


SHARED = """
import pytest


def test_first_use_starts_the_shared_guest(guest):
    assert guest.run("echo ok")[0].strip() == "ok"


def test_own_guest_torn_down(guest_factory):
    g = guest_factory()
    assert g.run("echo own")[0].strip() == "own"
"""


@pytest.mark.qemu
def test_shared_guest_started_inside_a_test_is_not_its_leak(pytester):
    """The session's shared guest boots on first use, inside the test, and
    outlives it (with its budget slot): a note in the ledger, not a leak."""
    pytester.makepyfile(test_shared=SHARED)
    results = pytester.path / "allure"
    started = time.monotonic()
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", f"--alluredir={results}",
                                        "-o", "sev_allure=true")
    res.assert_outcomes(passed=2)
    assert "left behind" not in res.stdout.str()
    texts = attachments(results, "host ledger")
    assert len(texts) == 2
    first = next(t for t in texts if "held by fixture _sev_shared_guest (session scope)" in t)
    assert "note: QEMU pid" in first and "note: budget slot" in first
    assert time.monotonic() - started < 300


# -- what a fixture that outlives the test holds (no QEMU) ----------------------------

def test_holdings_of_a_shared_guest_a_factory_and_a_guest():
    from types import SimpleNamespace as NS

    from pytest_sev.plugin.ledger import holdings

    guest = NS(process=NS(pid=41))
    factory = NS(guests=[guest, NS(process=None)], slots=[NS(path="/b/plain-0.lock")])
    assert holdings(NS(factory=factory, current=guest)) == ({41: guest}, {"/b/plain-0.lock": factory.slots[0]})
    assert holdings(factory)[0] == {41: guest}
    assert holdings(guest) == ({41: guest}, {})
    assert holdings(None) == ({}, {}) and holdings("text") == ({}, {})


def test_which_tests_get_the_ledger():
    from types import SimpleNamespace as NS

    from pytest_sev.plugin.ledger import boots_guests

    def item(marker=None, names=()):
        return NS(get_closest_marker=lambda name: marker if name == "qemu" else None, fixturenames=list(names))

    assert boots_guests(item(marker=object()))
    assert boots_guests(item(names=["tmp_path", "sev_es_guest"]))
    assert not boots_guests(item(names=["tmp_path", "run_config"]))
