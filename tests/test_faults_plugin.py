"""Faults of a pytest run (issue 15, rows 1, 3, 4 and 5), in real pytest
sessions (pytester subprocesses), with real guests where the row needs one.

Each row ends in a named failure or a one-line warning within seconds, the
run goes on where it should, and no QEMU process, socket or work directory
is left.  Time is only asserted as generous upper bounds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def qemu_under(directory: Path) -> list[int]:
    """QEMU processes running in a work directory under *directory* (leak check)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = (proc / "cmdline").read_bytes().split(b"\0")[0]
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if b"qemu-system" in exe and cwd.startswith(str(directory)):
            found.append(int(proc.name))
    return found


@contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A small tmpfs at *path* (root only): a sink that fills up or is read-only."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def one_error_line(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in result.stderr.str() and "INTERNALERROR" not in result.stdout.str()
    assert "must not run" not in result.stdout.str()
    return errors[0]


NEVER = "def test_never(): raise AssertionError('must not run')"


# -- sinks that cannot be written: one line at start-up ------------------------------

@pytest.mark.parametrize("how", ["read-only", "full", "/dev/full"])
def test_unwritable_alluredir_is_one_line_at_start_up(pytester, tmp_path, how):
    pytester.makepyfile(NEVER)
    if how == "/dev/full":
        result = pytester.runpytest_subprocess("--alluredir=/dev/full")
        assert "--alluredir /dev/full: not a directory" in one_error_line(result)
        return
    with tmpfs(tmp_path / "allure", "64k", readonly=how == "read-only") as sink:
        if how == "full":
            fill(sink)
        result = pytester.runpytest_subprocess(f"--alluredir={sink}")
        line = one_error_line(result)
    assert f"--alluredir {sink}: " in line
    assert ("not writable" if how == "read-only" else "no space left") in line


def test_read_only_reports_dir_is_one_line_at_start_up(pytester):
    pytester.makepyfile(NEVER)
    pytester.makeini("[pytest]\nsev_allure = true\n")
    with tmpfs(pytester.path / "reports", "64k", readonly=True):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        line = one_error_line(result)
    assert "the default Allure results directory" in line and "not writable" in line
    assert "sev_allure=false" in line


@pytest.mark.parametrize("how", ["read-only", "full", "/dev/full"])
def test_unwritable_guest_log_dir_is_one_line_at_start_up(pytester, tmp_path, how):
    pytester.makepyfile(NEVER)
    if how == "/dev/full":
        result = pytester.runpytest_subprocess("--guest-log-dir=/dev/full", "-o", "sev_allure=false")
        assert "--guest-log-dir /dev/full: not a directory" in one_error_line(result)
        return
    with tmpfs(tmp_path / "logs", "64k", readonly=how == "read-only") as sink:
        if how == "full":
            fill(sink)
        result = pytester.runpytest_subprocess(f"--guest-log-dir={sink}", "-o", "sev_allure=false")
        line = one_error_line(result)
    assert f"--guest-log-dir {sink}: " in line
    assert ("not writable" if how == "read-only" else "no space left") in line


# -- sinks that fill up mid-run: one warning, the run goes on, guests torn down ------------

FILLS_ALLURE = """
import allure, pytest

@pytest.mark.parametrize("n", range(8))
def test_attach_a_lot(n):
    allure.attach(b"x" * 300_000, name=f"blob-{n}", attachment_type=allure.attachment_type.TEXT)

def test_guest_after_the_disk_filled(guest):
    assert guest.run("echo still-here") == ("still-here\\n", 0)
"""


@pytest.mark.qemu
def test_allure_dir_filling_up_mid_run_is_one_warning(pytester, tmp_path):
    pytester.makepyfile(FILLS_ALLURE)
    logs = tmp_path / "logs"
    with tmpfs(tmp_path / "allure", "1200k") as sink:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off",
                                               f"--alluredir={sink}", f"--guest-log-dir={logs}", timeout=600)
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    result.assert_outcomes(passed=9)
    assert out.count(f"pytest-sev: WARNING: cannot write to {sink} (No space left on device)") == 2  # once + summary
    assert qemu_under(logs) == []


FILLS_LOGS = """
import pathlib

def fill(directory):
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\\0" * 65536)
                f.flush()
        except OSError:
            pass

def test_fill_then_boot(guest_factory, run_config):
    fill(pathlib.Path(run_config.log_dir))
    g = guest_factory()
    assert g.run("echo one") == ("one\\n", 0)

def test_next_guest_too(guest_factory):
    g = guest_factory()
    assert g.run("echo two") == ("two\\n", 0)
"""


@pytest.mark.qemu
def test_guest_log_dir_filling_up_mid_run_is_one_warning(pytester, tmp_path, monkeypatch):
    pytester.makepyfile(FILLS_LOGS)
    scratch = tmp_path / "tmp"  # guests fall back to temporary work dirs here
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    with tmpfs(tmp_path / "logs", "1100k") as sink:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", "-o", "sev_allure=false",
                                               f"--guest-log-dir={sink}", timeout=600)
        out = result.stdout.str()
        assert "Traceback" not in out and "INTERNALERROR" not in out
        result.assert_outcomes(passed=2)
        assert out.count(f"pytest-sev: WARNING: cannot write to {sink} (No space left on device)") == 2
        assert qemu_under(sink) == [] and qemu_under(scratch) == []
    assert [p for p in scratch.iterdir() if p.name.startswith("sev-")] == []


# -- a guest that a test left unusable is replaced --------------------------------------

POISON = """
import pytest

def test_a_command_times_out(guest):
    guest.run("sleep 100", timeout=3)

def test_b_gets_a_fresh_guest(guest):
    assert guest.run("echo hi") == ("hi\\n", 0)
    log = guest.logs["harness log"].read_text()
    assert "replaces shared guest" in log and "GuestTimeout during command 'sleep 100'" in log

@pytest.mark.timeout(8)
def test_c_pytest_timeout_expires(guest):
    guest.run("sleep 300", timeout=600)

def test_d_fresh_again(guest):
    assert guest.run("echo ok") == ("ok\\n", 0)
    assert "Timeout" in guest.logs["harness log"].read_text()
"""


@pytest.mark.qemu
def test_poisoned_shared_guest_is_replaced(pytester, tmp_path):
    pytester.makepyfile(POISON)
    logs = tmp_path / "logs"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "--sev-mode=off",
                                           "-o", "sev_allure=false", f"--guest-log-dir={logs}", timeout=600)
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "timed out after 3s waiting for command 'sleep 100' to finish" in out
    assert "waiting for command 'echo hi'" not in out
    assert qemu_under(logs) == []
    # the replaced guests' logs are kept, each saying why it became unusable
    harness = sorted(p.read_text() for p in logs.glob("session-guest/*/harness.log"))
    assert any("unusable: GuestTimeout during command 'sleep 100'" in h for h in harness)


# -- SIGTERM (CI cancel) and pytest-timeout's thread method: like Ctrl-C -------------------

HANGS = """
import pathlib, time, pytest

def test_first_passes():
    pass

{marker}
def test_hangs(guest_factory):
    g = guest_factory()
    pathlib.Path({flag!r}).write_text("up")
    g.run("sleep 600", timeout=900)

def test_never_reached():
    pass
"""


def _run_until_booted(pytester: pytest.Pytester, tmp_path: Path, marker: str = "",
                      signal_to_send: int | None = signal.SIGTERM) -> tuple[str, float, subprocess.Popen]:
    flag = tmp_path / "booted"
    pytester.makepyfile(HANGS.format(marker=marker, flag=str(flag)))
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--sev-mode=off", "-p", "no:cacheprovider",
                             "-o", "sev_allure=false", f"--guest-log-dir={tmp_path / 'logs'}"],
                            cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert flag.exists(), "the guest did not boot"
        assert qemu_under(tmp_path / "logs"), "the guest should be running now"
        started = time.monotonic()
        if signal_to_send is not None:
            proc.send_signal(signal_to_send)
        out = proc.communicate(timeout=120)[0].decode()
        return out, time.monotonic() - started, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _nothing_left(tmp_path: Path) -> None:
    assert qemu_under(tmp_path / "logs") == []
    assert list((tmp_path / "tmp").iterdir()) == []
    logs = tmp_path / "logs"
    assert not logs.exists() or not any(logs.rglob("*.log")), list(logs.rglob("*"))


@pytest.mark.qemu
def test_sigterm_tears_down_and_prints_the_summary(pytester, tmp_path):
    out, took, proc = _run_until_booted(pytester, tmp_path)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out[-3000:]
    assert "pytest-sev: SIGTERM: stopping like Ctrl-C" in out
    assert "KeyboardInterrupt" in out and "1 passed" in out  # pytest's summary line
    assert "Task exception was never retrieved" not in out
    assert took < 30
    _nothing_left(tmp_path)


@pytest.mark.qemu
def test_pytest_timeout_thread_method_tears_down_and_prints_the_summary(pytester, tmp_path):
    out, took, proc = _run_until_booted(pytester, tmp_path, '@pytest.mark.timeout(8, method="thread")',
                                        signal_to_send=None)
    assert "Timeout (>8s)" in out and "pytest-sev stops the run like SIGTERM" in out, out[-3000:]
    assert "KeyboardInterrupt" in out and "1 passed" in out
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    assert took < 60
    _nothing_left(tmp_path)


FREEZES = """
import os, pathlib, signal

def test_freezes_its_qemu(guest_factory):
    g = guest_factory()
    g.run("true")
    g.qmp.frozen = None  # no early GuestFrozen: this test is about Ctrl-C during an asyncio wait
    os.kill(g.process.pid, signal.SIGSTOP)
    pathlib.Path({flag!r}).write_text("frozen")
    g.qmp.execute("query-status", timeout=60)  # Ctrl-C arrives while asyncio waits for the reply
"""


@pytest.mark.qemu
def test_ctrl_c_during_teardown_of_a_frozen_guest_is_clean(pytester, tmp_path):
    """Ctrl-C while a QMP command waits on a frozen QEMU: QEMU is killed in
    the teardown and no asyncio "Task exception was never retrieved"
    traceback follows the summary."""
    flag = tmp_path / "frozen"
    pytester.makepyfile(FREEZES.format(flag=str(flag)))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--sev-mode=off", "-p", "no:cacheprovider",
                             "-o", "sev_allure=false", f"--guest-log-dir={tmp_path / 'logs'}"],
                            cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert flag.exists(), "the guest did not boot"
        time.sleep(0.5)  # the test now waits for QMP's reply
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode()
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Task exception was never retrieved" not in out, out[-3000:]
    assert "KeyboardInterrupt" in out
    assert took < 10  # the frozen guest's teardown: seconds
    assert qemu_under(tmp_path / "logs") == []
