"""A frozen QEMU is found fast (issue 23.2).

A QEMU stopped under a wait (SIGSTOP, a debugger) answers neither its
console nor its monitor.  The console and QMP look at QEMU's process state
once per second of a wait, so the wait ends within seconds as
:class:`GuestFrozen` naming the state, not at its timeout as a plain
GuestTimeout or QMPLost; the QMP error is one message, without the asyncio
frames it came through.  Times are asserted only as generous upper bounds
("seconds, not the timeout").

The first tests drive the console and QMP with doubles (no QEMU); the last
ones SIGSTOP a real guest.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time

import pytest
import test_faults_guest

from pytest_sev.console import serial
from pytest_sev.console.serial import Console
from pytest_sev.errors import GuestError, GuestFrozen, GuestTimeout, QMPLost
from pytest_sev.qemu import process as qemu_process
from pytest_sev.qemu import qmp as qmp_module
from pytest_sev.qemu.qmp import QMP

FOUND_WITHIN = 5.0  # "within 5 s": a functional bound for finding a stopped QEMU


_timed = test_faults_guest._timed  # (error or None, seconds) of one call


# -- the process state --------------------------------------------------------------

@pytest.mark.parametrize("state,frozen", [("T", True), ("t", True), ("S", False), ("R", False),
                                          ("Z", False), (None, False)])
def test_only_a_stopped_process_counts_as_frozen(monkeypatch, state, frozen):
    monkeypatch.setattr(qemu_process, "process_state", lambda pid: state)
    why = qemu_process.frozen_state(4242)
    assert bool(why) is frozen
    if frozen:
        assert f"/proc state {state!r}" in why and "pid 4242" in why


def test_a_stopped_child_process_is_frozen_and_a_continued_one_is_not(tmp_path):
    proc = qemu_process.QemuProcess(["sleep", "30"], name="sleeper", output=tmp_path / "out.log").start()
    try:
        assert proc.frozen() is None
        os.kill(proc.pid, signal.SIGSTOP)
        end = time.monotonic() + 5
        while proc.frozen() is None and time.monotonic() < end:
            time.sleep(0.02)
        assert "stopped (SIGSTOP" in (proc.frozen() or "")
        os.kill(proc.pid, signal.SIGCONT)
        end = time.monotonic() + 5
        while proc.frozen() is not None and time.monotonic() < end:
            time.sleep(0.02)
        assert proc.frozen() is None
    finally:
        proc.stop()
    assert proc.frozen() is None  # gone is not frozen


# -- the console, on a socketpair -----------------------------------------------------

def _console(tmp_path, frozen):
    ours, theirs = socket.socketpair()
    con = Console(ours, tmp_path / "console.log", lambda exited=False: {"argv": ["qemu"], "logs": {}},
                  name="double", frozen=frozen)
    return con, theirs


def test_console_wait_on_a_stopped_qemu_is_guest_frozen_within_seconds(tmp_path):
    asked = []

    def frozen():
        asked.append(time.monotonic())
        return "QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): /proc state 'T'"

    con, theirs = _console(tmp_path, frozen)
    try:
        exc, took = _timed(con.expect, rb"never-printed", 60, "the marker")
    finally:
        con.close()
        theirs.close()
    assert isinstance(exc, GuestFrozen), exc
    assert not isinstance(exc, GuestTimeout)
    assert took < FOUND_WITHIN  # not the 60 s timeout
    first = str(exc).splitlines()[0]
    assert first == ("QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): /proc state 'T': "
                     "gave up waiting for the marker")
    assert len(asked) == 1


def test_console_that_answers_within_a_slice_never_asks_the_state(tmp_path):
    asked = []
    con, theirs = _console(tmp_path, lambda: asked.append(1))
    try:
        theirs.sendall(b"hello marker\n")
        assert con.expect(rb"marker", 60, "the marker") == 0
    finally:
        con.close()
        theirs.close()
    assert asked == []


def test_console_keeps_waiting_while_qemu_runs_and_times_out_plainly(tmp_path, monkeypatch):
    monkeypatch.setattr(serial, "WATCH_EVERY", 0.1)
    asked = []
    con, theirs = _console(tmp_path, lambda: asked.append(1))
    try:
        threading.Timer(0.5, theirs.sendall, (b"late marker\n",)).start()
        assert con.expect(rb"marker", 30, "the marker") == 0  # slices do not lose what arrives
        exc, _ = _timed(con.expect, rb"never-printed", 0.5, "the other marker")
    finally:
        con.close()
        theirs.close()
    assert len(asked) >= 3  # looked between slices, found it running
    assert type(exc) is GuestTimeout and "timed out after 0.5s waiting for the other marker" in str(exc)


# -- QMP, against a minimal QMP server that never answers a command --------------------

def _messages(sock: socket.socket):
    """The JSON messages a QMP client sends (not newline-terminated)."""
    buf, dec = "", json.JSONDecoder()
    while True:
        data = sock.recv(4096)
        if not data:
            return
        buf += data.decode()
        while buf.strip():
            try:
                msg, end = dec.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            yield msg


def _silent_qmp_server(sock: socket.socket, late: float | None = None) -> None:
    """Greets, accepts the capabilities, then never answers (a stopped QEMU),
    or answers each command *late* seconds after it came."""
    sock.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, '
                 b'"capabilities": []}}\n')
    for msg in _messages(sock):
        reply: dict = {"return": {}}
        if "id" in msg:
            reply["id"] = msg["id"]
        if msg.get("execute") == "qmp_capabilities":
            sock.sendall(json.dumps(reply).encode() + b"\n")
        elif late is not None:
            threading.Timer(late, sock.sendall, (json.dumps(reply).encode() + b"\n",)).start()


@pytest.fixture
def silent_qmp(tmp_path, request):
    ours, theirs = socket.socketpair()
    late = getattr(request, "param", None)
    server = threading.Thread(target=_silent_qmp_server, args=(theirs, late), daemon=True)
    server.start()
    made = []

    def make(frozen):
        q = QMP(ours, tmp_path / "qmp.jsonl", name="double", frozen=frozen)
        q.connect(timeout=10)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()
    theirs.close()


def test_qmp_on_a_stopped_qemu_is_one_guest_frozen_line_within_seconds(silent_qmp, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    q = silent_qmp(lambda: "QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): /proc state 'T'")
    exc, took = _timed(q.execute, "query-status", timeout=60)
    assert isinstance(exc, GuestFrozen), exc
    assert took < FOUND_WITHIN
    assert str(exc).splitlines()[0] == ("QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): "
                                        "/proc state 'T': no answer to QMP 'query-status'")
    assert exc.__cause__ is None and exc.__suppress_context__  # no asyncio frames in the report
    assert "is stopped" in q.lost_reason
    last = json.loads((tmp_path / "qmp.jsonl").read_text().splitlines()[-1])
    assert last["execute"] == "query-status" and last["error"].startswith("GuestFrozen: ")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("silent_qmp", [1.5], indirect=True)
def test_a_reply_that_comes_after_guest_frozen_is_a_debug_line_not_a_warning(silent_qmp, caplog):
    """QEMU continued after the harness gave up on a command: qemu.qmp drops
    the late reply with a WARNING; the harness already said it in one error."""
    caplog.set_level(logging.DEBUG)
    q = silent_qmp(lambda: "QEMU (pid 1) is stopped (SIGSTOP or a job-control stop): /proc state 'T'")
    exc, _ = _timed(q.execute, "query-status", timeout=60)
    assert isinstance(exc, GuestFrozen)
    q.frozen = None  # continued: the next command waits for its (late) reply, the first one's comes too
    assert q.execute("query-status", timeout=10) == {}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("qemu.qmp warning: Unknown ID" in r.getMessage() for r in caplog.records
               if r.name == "pytest_sev.qemu.qmp"), [r.getMessage() for r in caplog.records][-10:]


def test_qmp_timeout_is_qmp_lost_without_the_asyncio_chain(silent_qmp, monkeypatch):
    monkeypatch.setattr(qmp_module, "WATCH_EVERY", 0.1)
    asked = []
    q = silent_qmp(lambda: asked.append(1))
    exc, took = _timed(q.execute, "query-status", timeout=0.6)
    assert type(exc) is QMPLost, exc
    assert str(exc).splitlines()[0] == "QMP lost: no answer to 'query-status' (TimeoutError)"
    assert exc.__cause__ is None and exc.__suppress_context__
    assert len(asked) >= 3  # it looked between the slices and kept waiting


def test_qmp_without_a_state_check_waits_out_its_timeout(silent_qmp):
    q = silent_qmp(None)
    exc, _ = _timed(q.execute, "query-status", timeout=1)
    assert type(exc) is QMPLost and exc.__cause__ is None


# -- a real guest ---------------------------------------------------------------------

# the booted guest of test_faults_guest: its token, SIGCONT and close in teardown, no QEMU left
token = test_faults_guest.token
booted = test_faults_guest.booted


_until_stopped = test_faults_guest._until_stopped


def stop_mid_command(run, pid: int) -> tuple[BaseException | None, float]:
    """SIGSTOP *pid* one second into ``run("sleep 30; echo done", timeout=60)``:
    what the command raised, and how long after the stop it did."""
    stopped_at: list[float] = []

    def freeze() -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped_at.append(_until_stopped(pid))

    timer = threading.Timer(1.0, freeze)
    timer.start()
    try:
        exc, _ = _timed(run, "sleep 30; echo done", timeout=60)
    finally:
        timer.join()
    assert stopped_at, "SIGSTOP did not stop QEMU"
    return exc, time.monotonic() - stopped_at[0]


@pytest.mark.qemu
def test_guest_stopped_mid_command_fails_as_guest_frozen_then_is_cleaned_up(booted, token, qemu_processes):
    pid = booted.process.pid
    exc, found_after = stop_mid_command(booted.run, pid)
    assert isinstance(exc, GuestFrozen), exc
    assert found_after < FOUND_WITHIN  # not the 60 s timeout
    first = str(exc).splitlines()[0]
    assert first.startswith(f"QEMU (pid {pid}) is stopped (SIGSTOP") and "/proc state 'T'" in first
    assert "waiting for command 'sleep 30; echo done' to finish" in first
    assert "--- console tail ---" in str(exc) and "qemu command line: " in str(exc)
    assert booted.unusable.startswith("GuestFrozen during command 'sleep 30; echo done'")
    assert not booted.healthy()

    exc, took = _timed(booted.qmp.execute, "query-status", timeout=60)
    assert isinstance(exc, GuestFrozen) and took < FOUND_WITHIN
    assert str(exc).splitlines()[0] == (f"QEMU (pid {pid}) is stopped (SIGSTOP or a job-control stop): "
                                        "/proc state 'T': no answer to QMP 'query-status'")
    assert exc.__cause__ is None and exc.__suppress_context__

    os.kill(pid, signal.SIGCONT)  # running again: the teardown still ends it, in seconds
    exc, took = _timed(booted.close)
    assert exc is None and took < 10
    assert booted.shutdown_stage in ("qmp quit", "SIGTERM", "SIGKILL")
    assert qemu_processes(token) == []
    harness = booted.logs["harness log"].read_text()
    assert "unusable: GuestFrozen during command" in harness


@pytest.mark.qemu
def test_guest_left_stopped_is_killed_by_the_teardown(booted, token, qemu_processes):
    os.kill(booted.process.pid, signal.SIGSTOP)
    _until_stopped(booted.process.pid)
    exc, _ = _timed(booted.run, "true", timeout=60)
    assert isinstance(exc, GuestFrozen), exc
    assert isinstance(exc, GuestError) and not isinstance(exc, GuestTimeout)
    exc, took = _timed(booted.close)
    assert exc is None and took < 10
    assert booted.shutdown_stage == "SIGKILL"
    assert qemu_processes(token) == []
