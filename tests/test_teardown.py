"""Real guests under QEMU: every path tears the guest down and says why.

Each inner run names its guests with a fresh token so the leak check finds
exactly the QEMU processes this test started, and nothing else on the host.
"""

import os
import re
import secrets
import signal
import subprocess
import sys
import time

import pytest

from pytest_sev.errors import GuestDied, GuestTimeout
from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec

pytestmark = pytest.mark.qemu


@pytest.fixture
def token():
    return "leak" + secrets.token_hex(4)


def test_command_timeout_carries_what_tail_and_logs(tmp_path, token, qemu_processes):
    with Guest(default_guest_spec(name=token), workdir=tmp_path / "g", keep_workdir=True) as g:
        g.run("echo before-the-sleep")
        with pytest.raises(GuestTimeout) as err:
            g.run("sleep 30", timeout=2)
        message = str(err.value)
        assert "timed out after 2s waiting for command 'sleep 30' to finish" in message
        assert "before-the-sleep" not in message or "console tail" in message
        assert "--- console tail ---" in message
        assert "qemu command line: " in message and "-name " + token in message
        assert f"console log: {tmp_path / 'g' / 'console.log'}" in message
    assert g.shutdown_stage in ("qmp quit", "SIGTERM", "SIGKILL")  # shell was busy
    assert qemu_processes(token) == []


def test_qemu_killed_from_outside_fails_clearly(tmp_path, token, qemu_processes):
    with Guest(default_guest_spec(name=token), workdir=tmp_path / "g") as g:
        os.kill(g.process.pid, signal.SIGKILL)
        # whether the harness sees the death before sending the command or while waiting
        # for it is a race; either way it is GuestDied with QEMU's exit status
        with pytest.raises(GuestDied, match="QEMU exited (while waiting for|before) command 'true'") as err:
            g.run("true", timeout=30)
        assert "QEMU exit status -9" in str(err.value)
    assert qemu_processes(token) == []


def test_qemu_dead_before_the_command_is_guest_died_too(tmp_path, token, qemu_processes):
    """The other side of that race, made certain: QEMU reaped before run()."""
    with Guest(default_guest_spec(name=token), workdir=tmp_path / "g") as g:
        os.kill(g.process.pid, signal.SIGKILL)
        g.process.wait(10)
        assert not g.alive
        with pytest.raises(GuestDied, match="QEMU exited before command 'true' \\(QEMU exit status -9"):
            g.run("true", timeout=30)
    assert qemu_processes(token) == []


def test_no_temp_dir_outlives_a_guest(tmp_path, token, monkeypatch, qemu_processes):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with Guest(default_guest_spec(name=token)) as g:
        assert oct(g.workdir.stat().st_mode & 0o777) == "0o700"
        assert g.workdir.parent == tmp_path
    assert list(tmp_path.iterdir()) == []


INNER = """
import os, signal, time, pytest
from pytest_sev.errors import GuestDied

def test_fails_after_boot(guest_factory):
    g = guest_factory(name="{token}")
    assert g.run("echo up")[0] == "up\\n"
    assert False, "deliberate failure"

def test_killed_from_outside(guest_factory):
    g = guest_factory(name="{token}")
    os.kill(g.process.pid, signal.SIGKILL)
    g.run("true")

def test_next_test_still_works(guest_factory):
    g = guest_factory(name="{token}")
    assert g.run("echo fine") == ("fine\\n", 0)

@pytest.mark.timeout(8)
def test_pytest_timeout_expires(guest_factory):
    g = guest_factory(name="{token}")
    g.run("sleep 300", timeout=600)
"""


def test_failing_killed_and_timed_out_tests_leave_nothing(pytester, token, tmp_path, qemu_processes):
    pytester.makepyfile(INNER.format(token=token))
    logdir = tmp_path / "logs"
    result = pytester.runpytest_subprocess("--sev-mode=off", f"--guest-log-dir={logdir}", "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "deliberate failure" in out
    # the death is seen before the command is sent or while waiting for it (a race): GuestDied either way
    assert re.search(r"GuestDied: QEMU exited (while waiting for|before) command 'true'", out), out[-3000:]
    assert "Timeout" in out
    assert qemu_processes(token) == []
    kept = sorted(p.name for p in logdir.iterdir())
    # logs of the three failed tests are kept, the passing test's are removed
    assert len(kept) == 3 and not any("next_test_still_works" in k for k in kept)
    assert all(any(d.glob("*/console.log")) for d in logdir.iterdir())


def test_interrupted_run_leaves_no_qemu(pytester, token, tmp_path, qemu_processes):
    flag = tmp_path / "booted"
    pytester.makepyfile(f"""
import pathlib, time
def test_hangs(guest_factory):
    g = guest_factory(name="{token}")
    pathlib.Path({str(flag)!r}).write_text("up")
    time.sleep(600)
""")
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "--sev-mode=off", "-p", "no:cacheprovider",
                             f"--guest-log-dir={tmp_path / 'logs'}"],
                            cwd=pytester.path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not flag.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert flag.exists(), proc.stdout.read().decode()[-3000:] if proc.poll() is not None else "no boot"
        assert qemu_processes(token), "the guest should be running now"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "KeyboardInterrupt" in out
    assert qemu_processes(token) == []
    leftovers = [p for p in tmp_path.iterdir() if p.name not in ("booted", "logs")]
    assert leftovers == []


def test_paused_guest_runs_the_before_boot_step_first(tmp_path):
    """``paused=True`` starts QEMU with -S: the before-boot step sees a guest
    that has not run (QMP status prelaunch), then the guest boots as usual."""
    seen = []

    def before_boot(qmp):
        seen.append(qmp.execute("query-status")["status"])

    with Guest(default_guest_spec(name="paused", paused=True), workdir=tmp_path / "g") as g:
        pass
    g2 = Guest(default_guest_spec(name="paused2", paused=True), workdir=tmp_path / "g2")
    try:
        g2.start(before_boot=before_boot)
        assert seen == ["prelaunch"]
        assert g2.run("echo up")[0] == "up\n"
        assert "-S" in g2.argv
    finally:
        g2.close()
    assert g.boot_seconds is not None  # without a step, a paused spec is simply continued
