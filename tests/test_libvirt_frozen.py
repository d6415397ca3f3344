"""A frozen QEMU under the libvirt launcher is found fast, as under the QEMU launcher.

libvirtd starts the domain's QEMU, so :class:`LibvirtGuest` has no
:class:`~pytest_sev.qemu.process.QemuProcess` to ask; it finds the pid
libvirt records (``/run/libvirt/qemu/<domain>.pid``), trusts it only when it
is this domain's QEMU, and reads its ``/proc`` state with the QEMU
launcher's :func:`~pytest_sev.qemu.process.frozen_state`.  Its console and
its QMP passthrough look at that state once per second of a wait, so a
SIGSTOPped QEMU is :class:`GuestFrozen` naming the state within seconds
(libvirt itself would wait on its monitor for ever).

First the pid lookup and the QMP passthrough with doubles (no libvirt), then
a real libvirt guest stopped mid-command (in the live libvirt tests' xdist
group: they restart the machine's one libvirtd).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_frozen_qemu
import test_libvirt_live

from pytest_sev.errors import GuestDied, GuestFrozen, QMPLost
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.libvirt import connection as lv
from pytest_sev.libvirt.guest import LibvirtGuest, LibvirtQmp
from pytest_sev.qemu import process as qemu_process
from pytest_sev.qemu import qmp as qemu_qmp

FOUND_WITHIN = test_frozen_qemu.FOUND_WITHIN  # "within 5 s"
_timed = test_frozen_qemu._timed
_until_stopped = test_frozen_qemu._until_stopped
STOPPED = "QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): /proc state 'T'"


# -- the pid lookup -----------------------------------------------------------------------

@pytest.fixture
def fake_qemu(tmp_path):
    """A process whose command line is a libvirt QEMU's of domain ``pytest-sev-fake``
    (argv[0] ``qemu-system-x86_64``, ``-name guest=...``); SIGCONT and killed after."""
    proc = subprocess.Popen(["bash", "-c", 'exec -a qemu-system-x86_64 "$0" -c "import time; time.sleep(120)" '
                             "-name guest=pytest-sev-fake,debug-threads=on", sys.executable])
    end = time.monotonic() + 10
    while lv.process_argv(proc.pid)[:1] != ["qemu-system-x86_64"] and time.monotonic() < end:
        time.sleep(0.01)
    try:
        yield proc.pid
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def _pidfile(tmp_path: Path, text: str, name: str = "pytest-sev-fake") -> Path:
    (tmp_path / f"{name}.pid").write_text(text)
    return tmp_path


def test_the_domains_qemu_pid_is_read_from_libvirts_pid_file(tmp_path, fake_qemu):
    assert lv.domain_qemu_pid("pytest-sev-fake", _pidfile(tmp_path, f"{fake_qemu}\n")) == fake_qemu


@pytest.mark.parametrize("text", [None, "", "garbage\n", "12ab", "-1", "0"])
def test_a_missing_or_garbled_pid_file_is_no_pid(tmp_path, text):
    state = tmp_path if text is None else _pidfile(tmp_path, text)
    assert lv.domain_qemu_pid("pytest-sev-fake", state) is None


def test_a_pid_that_is_not_this_domains_qemu_is_no_pid(tmp_path, fake_qemu):
    # this very process (python, not QEMU); a pid nobody has; another domain's QEMU
    assert lv.domain_qemu_pid("pytest-sev-fake", _pidfile(tmp_path, str(os.getpid()))) is None
    assert lv.domain_qemu_pid("pytest-sev-fake", _pidfile(tmp_path, str(2 ** 22 + 1))) is None
    assert lv.domain_qemu_pid("pytest-sev-other", _pidfile(tmp_path, str(fake_qemu), "pytest-sev-other")) is None


def test_without_a_readable_pid_file_the_pid_recorded_at_start_is_checked_the_same_way(tmp_path, fake_qemu):
    assert lv.domain_qemu_pid("pytest-sev-fake", tmp_path, recorded=fake_qemu) == fake_qemu
    assert lv.domain_qemu_pid("pytest-sev-fake", tmp_path, recorded=os.getpid()) is None
    assert lv.domain_qemu_pid("pytest-sev-fake", tmp_path, recorded=None) is None


@pytest.mark.parametrize("argv,ok", [
    (["/usr/bin/qemu-system-x86_64", "-name", "guest=pytest-sev-fake,debug-threads=on"], True),
    (["/usr/bin/qemu-system-x86_64", "-name", "pytest-sev-fake"], True),  # libvirt before guest=
    (["/usr/bin/qemu-system-x86_64", "-name", "guest=pytest-sev-fake2,debug-threads=on"], False),
    (["/usr/bin/qemu-system-x86_64", "-machine", "q35"], False),
    (["/usr/bin/python3", "-name", "guest=pytest-sev-fake"], False),
    ([], False),
])
def test_only_a_qemu_named_for_the_domain_counts(argv, ok):
    assert lv._runs_domain(argv, "pytest-sev-fake") is ok


# -- LibvirtGuest.frozen on the fake QEMU ---------------------------------------------------

def test_the_guest_calls_its_stopped_qemu_frozen_and_a_running_one_not(tmp_path, fake_qemu, monkeypatch):
    monkeypatch.setattr(lv, "QEMU_STATE_DIR", _pidfile(tmp_path, str(fake_qemu)))
    g = LibvirtGuest(default_guest_spec(name="fake"), workdir=tmp_path / "g")
    g.domain_name = "pytest-sev-fake"
    assert g.frozen() is None  # no domain yet: nothing to ask
    g.dom = object()  # "created": only frozen() looks at it here
    try:
        assert g.frozen() is None
        os.kill(fake_qemu, signal.SIGSTOP)
        _until_stopped(fake_qemu)
        assert g.frozen() == f"QEMU (pid {fake_qemu}) is stopped (SIGSTOP or a job-control stop): /proc state 'T'"
        (tmp_path / "pytest-sev-fake.pid").write_text("garbage")
        assert g.frozen() is None  # the file unreadable and no pid recorded: not known to be frozen
        g.qemu_pid = fake_qemu
        assert g.frozen() is not None  # the pid recorded at start, still this domain's QEMU
        os.kill(fake_qemu, signal.SIGCONT)
        end = time.monotonic() + 5
        while g.frozen() is not None and time.monotonic() < end:
            time.sleep(0.02)
        assert g.frozen() is None
    finally:
        g.dom = None


# -- the QMP passthrough, against a libvirt that never answers ----------------------------

class _SilentLibvirt:
    """What LibvirtQmp asks of its guest; ``monitor_command`` blocks until released."""

    domain_name = "pytest-sev-double"

    def __init__(self, tmp_path: Path, reply: str = '{"return": {"status": "running"}}',
                 error: Exception | None = None) -> None:
        self.release = threading.Event()
        self.reply, self.error, self.sent = reply, error, []
        self.logs = {"console log": tmp_path / "console.log"}

    def monitor_command(self, text: str) -> str:
        self.sent.append(text)
        if self.error is not None:
            raise self.error
        self.release.wait(60)
        return self.reply

    def _context(self, exited: bool = False) -> dict:
        return {"argv": ["qemu-system-x86_64"], "logs": dict(self.logs)}


@pytest.fixture
def silent(tmp_path):
    made = []

    def make(frozen, **kw):
        double = _SilentLibvirt(tmp_path, **kw)
        made.append(double)
        return double, LibvirtQmp(double, tmp_path / "qmp.jsonl", "double", frozen=frozen)  # type: ignore[arg-type]

    yield make
    for d in made:
        d.release.set()


def _last(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "qmp.jsonl").read_text().splitlines()[-1])


def test_qmp_through_libvirt_on_a_stopped_qemu_is_guest_frozen_within_seconds(silent, tmp_path):
    asked = []

    def frozen():
        asked.append(1)
        return STOPPED if len(asked) > 1 else None  # running when sent, stopped while libvirt waits

    double, q = silent(frozen)
    exc, took = _timed(q.execute, "query-status")
    assert isinstance(exc, GuestFrozen), exc
    assert took < FOUND_WITHIN and len(double.sent) == 1
    assert str(exc).splitlines()[0] == f"{STOPPED}: no answer to QMP 'query-status'"
    assert exc.__cause__ is None and exc.__suppress_context__
    assert "last QMP command: query-status (through libvirt, domain pytest-sev-double)" in str(exc)
    assert "is stopped" in q.lost_reason and _last(tmp_path)["error"].startswith("GuestFrozen: ")


def test_qmp_on_a_qemu_already_stopped_is_not_sent_to_libvirt(silent):
    double, q = silent(lambda: STOPPED)
    exc, took = _timed(q.execute, "query-status")
    assert isinstance(exc, GuestFrozen) and took < 1 and double.sent == []


def test_qmp_through_libvirt_answers_while_qemu_runs_and_a_timeout_is_qmp_lost(silent, tmp_path, monkeypatch):
    monkeypatch.setattr(qemu_qmp, "WATCH_EVERY", 0.1)
    double, q = silent(lambda: None)
    threading.Timer(0.5, double.release.set).start()
    assert q.execute("query-status") == {"status": "running"}  # slices do not lose a late reply
    double.release.clear()
    exc, took = _timed(q.execute, "query-status", timeout=0.5)
    assert type(exc) is QMPLost and 0.4 < took < FOUND_WITHIN, exc
    assert str(exc).splitlines()[0] == "QMP lost: no answer to 'query-status' within 0.5s (through libvirt)"
    assert "timeout" not in double.sent[-1]  # a keyword of ours, not a QMP argument
    assert _last(tmp_path)["error"] == "no answer within 0.5s"


def test_what_libvirt_raises_still_reaches_the_caller_through_the_thread(silent):
    _, q = silent(lambda: None, error=GuestDied("QEMU of domain pytest-sev-double is gone"))
    with pytest.raises(GuestDied, match="is gone"):
        q.execute("query-status")
    assert q.lost_reason.startswith("QMP lost: GuestDied from libvirt")


def test_without_frozen_the_call_is_direct(silent):
    double, q = silent(None)
    double.release.set()
    assert q.execute("query-status") == {"status": "running"}
    assert double.sent == ['{"execute": "query-status"}']


# -- a real libvirt guest -------------------------------------------------------------------

# the live libvirt tests' fixtures: libvirtd started when none answers (skips naming why), a
# fresh token per test, and the leak check of domains and QEMU processes
libvirtd = test_libvirt_live.libvirtd
token = test_libvirt_live.token
leftovers = test_libvirt_live.leftovers


@pytest.mark.qemu
@pytest.mark.xdist_group("libvirtd")  # the live libvirt tests' group: one libvirtd, one test at a time
def test_libvirt_qemu_stopped_mid_command_is_guest_frozen_within_seconds(tmp_path, token, libvirtd, leftovers):
    g = LibvirtGuest(default_guest_spec(name=token, memory_mib=512), workdir=tmp_path / "g", keep_workdir=True)
    pid: int | None = None
    try:
        g.start()
        pid = g.qemu_pid
        assert pid is not None and lv.domain_qemu_pid(g.domain_name) == pid
        assert g.frozen() is None
        assert g.healthy()  # the same health check as the QEMU launcher's, libvirt's pid behind it
        exc, found_after = test_frozen_qemu.stop_mid_command(g.run, pid)
        assert isinstance(exc, GuestFrozen), exc
        assert found_after < FOUND_WITHIN  # not the 60 s timeout
        first = str(exc).splitlines()[0]
        assert first.startswith(f"QEMU (pid {pid}) is stopped (SIGSTOP") and "/proc state 'T'" in first
        assert "waiting for command 'sleep 30; echo done' to finish" in first
        assert g.unusable is not None and g.unusable.startswith("GuestFrozen during command 'sleep 30; echo done'")
        assert not g.healthy()

        exc, took = _timed(g.qmp.execute, "query-status", timeout=60)
        assert isinstance(exc, GuestFrozen) and took < FOUND_WITHIN, exc
        assert str(exc).splitlines()[0] == (f"QEMU (pid {pid}) is stopped (SIGSTOP or a job-control stop): "
                                            "/proc state 'T': no answer to QMP 'query-status'")
        last = json.loads(g.logs["qmp transcript"].read_text().splitlines()[-1])
        assert last["execute"] == "query-status" and last["error"].startswith("GuestFrozen: ")
    finally:
        if pid is not None:
            try:  # running again: the teardown ends it in seconds
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        exc, took = _timed(g.close)
    assert exc is None and took < 30, (exc, took)
    assert g.shutdown_stage is not None and g.shutdown_stage.startswith("virDomainDestroy"), g.stop_log
    assert qemu_process.process_state(pid) in (None, "Z")
    assert leftovers(token) == ([], [])
