"""Faults of a running guest (issue 15, rows 1, 2 and 5), on real QEMU.

Each fault ends in a named failure within seconds, the guest is torn down
within seconds (a frozen QEMU included), no QEMU is left behind, and the
guest's logs (``harness.log``, ``qmp.jsonl``) say what happened.  Time is
only asserted as generous upper bounds ("seconds, not minutes").
"""

import json
import os
import secrets
import signal
import time

import pytest

from pytest_sev.errors import GuestPanicked, GuestTimeout, GuestUnusable, QMPLost, ShellDied
from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.qemu import process as qemu_process

pytestmark = pytest.mark.qemu

SECONDS = 10  # "seconds, not minutes": an upper bound, never a measurement


@pytest.fixture
def token():
    return "fault" + secrets.token_hex(4)


@pytest.fixture
def booted(tmp_path, token, qemu_processes):
    guest = Guest(default_guest_spec(name=token), workdir=tmp_path / "g", keep_workdir=True)
    try:
        guest.start()
        yield guest
    finally:
        try:  # a test that froze its QEMU (SIGSTOP) may leave it stopped
            os.kill(guest.process.pid, signal.SIGCONT)
        except (OSError, TypeError):
            pass
        guest.close()
        assert qemu_processes(token) == []


def _transcript(guest: Guest) -> list[dict]:
    return [json.loads(line) for line in guest.logs["qmp transcript"].read_text().splitlines()]


def _timed(fn, *args, **kwargs):
    started = time.monotonic()
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - returned for the test to look at
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def test_timed_out_command_leaves_guest_unusable_and_says_why(booted):
    with pytest.raises(GuestTimeout, match="waiting for command 'sleep 100' to finish"):
        booted.run("sleep 100", timeout=2)
    assert "sleep 100" in booted.unusable
    assert not booted.responsive
    with pytest.raises(GuestUnusable) as err:
        booted.run("echo hi")
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"guest {booted.spec.name} is unusable: GuestTimeout during command 'sleep 100'")
    exc, took = _timed(booted.close)
    assert exc is None and took < SECONDS
    assert "unusable: GuestTimeout during command 'sleep 100'" in booted.logs["harness log"].read_text()


def test_killed_shell_is_detected_at_once(booted):
    exc, took = _timed(booted.run, "kill -9 $$; sleep 30", timeout=120)
    assert isinstance(exc, ShellDied), exc
    assert took < SECONDS  # not the 120 s timeout
    assert str(exc).startswith("the guest shell died while waiting for command 'kill -9 $$; sleep 30'")
    assert booted.unusable and not booted.responsive


def test_panic_during_a_command_is_named_with_the_oops_head(booted):
    exc, took = _timed(booted.run, "echo c > /proc/sysrq-trigger", timeout=120)
    assert isinstance(exc, GuestPanicked), exc
    assert took < SECONDS
    first = str(exc).splitlines()[0]
    assert "guest kernel panicked" in first and "Kernel panic - not syncing: sysrq triggered crash" in first
    head = str(exc).split("--- oops head ---", 1)[1].split("--- console tail ---")[0]
    assert "Call Trace:" in head or "RIP:" in head
    assert "QEMU exit status" not in first


def _until_stopped(pid: int, seconds: float = 5.0) -> float:
    """Wait until *pid* shows the stopped state (SIGSTOP delivery can lag under load); when it did."""
    from pytest_sev.qemu.process import process_state
    end = time.monotonic() + seconds
    while process_state(pid) != "T" and time.monotonic() < end:
        time.sleep(0.01)
    assert process_state(pid) == "T", "SIGSTOP did not stop QEMU"
    return time.monotonic()


def test_frozen_qemu_after_a_timeout_is_killed_in_seconds(booted):
    with pytest.raises(GuestTimeout):
        booted.run("sleep 100", timeout=2)
    os.kill(booted.process.pid, signal.SIGSTOP)
    _until_stopped(booted.process.pid)  # the frozen QEMU this test is about (delivery can lag under load)
    exc, took = _timed(booted.close)
    assert exc is None and took < 5
    assert booted.shutdown_stage == "SIGKILL"
    stages = [e for e in _transcript(booted) if "stop-stage" in e]
    assert [e["stop-stage"] for e in stages] == ["state", "SIGKILL"]
    assert "stopped" in stages[0]["outcome"]
    assert "stop stage SIGKILL: ended it" in booted.logs["harness log"].read_text()


def test_qemu_that_does_not_answer_qmp_is_killed_and_the_failed_quit_recorded(booted, monkeypatch):
    """A QEMU frozen some other way (not visibly stopped): its QMP ``quit``
    times out within the short grace, is recorded, and QEMU is killed."""
    monkeypatch.setattr(qemu_process, "process_state", lambda pid: None)
    with pytest.raises(GuestTimeout):
        booted.run("sleep 100", timeout=2)
    os.kill(booted.process.pid, signal.SIGSTOP)
    exc, took = _timed(booted.close)
    assert exc is None and took < 5
    entries = _transcript(booted)
    quit_ = [e for e in entries if e.get("execute") == "quit"]
    assert quit_ and "error" in quit_[-1], entries
    stages = [(e["stop-stage"], e["outcome"]) for e in entries if "stop-stage" in e]
    assert stages[0][0] == "qmp quit" and stages[0][1].startswith("failed after")
    assert stages[-1] == ("SIGKILL", "ended it")


def test_frozen_responsive_guest_is_killed_in_seconds(booted):
    """Frozen without a timeout first: the guest poweroff stage asks QMP
    first and kills a QEMU that does not answer."""
    os.kill(booted.process.pid, signal.SIGSTOP)
    exc, took = _timed(booted.close)
    assert exc is None and took < 5
    assert booted.shutdown_stage == "SIGKILL"


def test_lost_qmp_is_named_with_argv_last_command_and_logs(booted):
    os.kill(booted.process.pid, signal.SIGKILL)
    booted.process.wait(5)
    with pytest.raises(QMPLost) as err:
        booted.qmp.execute("query-status", timeout=3)
    message = str(err.value)
    assert message.startswith("QMP lost: no answer to 'query-status'")
    assert "last QMP command: query-status" in message
    assert "qemu command line: " in message and booted.spec.name in message
    assert f"qmp transcript: {booted.logs['qmp transcript']}" in message
    assert booted.unusable


def test_sync_leaves_a_fast_tty_and_a_quiet_kernel_console(booted):
    """The boot's one sync round trip set the guest's serial line to 115200
    baud (typed lines reach the shell without the UART's 4 ms receive
    timeout at 9600) and the console log level to 1 (``dmesg -n 1``)."""
    assert booted.check("stty -F /dev/ttyS0 speed") == "115200\n"
    assert booted.check("cat /proc/sys/kernel/printk").split()[0] == "1"
    assert [c for c, _, _ in booted.console.transcript] == ["stty -F /dev/ttyS0 speed",
                                                             "cat /proc/sys/kernel/printk"]
