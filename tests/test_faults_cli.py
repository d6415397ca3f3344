"""Faults of the command-line tools (issue 15, rows 6 and 10): signals to
``python -m pytest_sev launch`` without a terminal, and the wording of bad
commands and values."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pytest_sev", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_unknown_command_is_named():
    run = _cli("nonsense")
    assert run.returncode == 2
    from pytest_sev.__main__ import COMMANDS
    assert run.stderr.strip().splitlines() == [
        f"python -m pytest_sev: unknown command 'nonsense' (commands: {', '.join(COMMANDS)}; "
        "--help for what each does)"]


@pytest.mark.parametrize("args,line", [
    (["-smp", "0"], "launch: -smp 0: vcpus 0 out of range 1..64"),
    (["-mem", "10"], "launch: -mem 10: memory 10 MiB is too small to boot (>= 64)"),
])
def test_launch_names_the_bad_value_before_nothing_to_boot(args, line, tmp_path):
    run = _cli("launch", *args, cwd=tmp_path)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [line]


def test_build_lists_only_real_components():
    run = _cli("build", "nothing")
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert "unknown component 'nothing' (choose from qemu, ovmf, kernel, ovmf-amdsev, fio, kvm-selftests, kvm-unit-tests)" in last
    assert "[]" not in run.stderr


@pytest.mark.qemu
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_launch_without_terminal_cleans_up_on_signal(sig, tmp_path, qemu_processes):
    from pytest_sev.guest.specs import default_guest_spec
    try:
        spec = default_guest_spec()
    except Exception as exc:  # noqa: BLE001 - not provisioned here
        pytest.skip(f"default guest not available: {exc}")
    token = str(tmp_path)  # in QEMU's argv: the QMP socket's path
    kernel = spec.kernel
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pytest_sev", "launch", "-kernel", str(kernel),
                             "-initrd", str(spec.initrd), "-append", spec.append, "-mem", "512", "-smp", "1",
                             "--log", str(tmp_path / "console.log")],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(tmp_path / "stdout.log", "wb"), stderr=subprocess.PIPE,
                            start_new_session=True, text=True)
    try:
        deadline = time.monotonic() + 60
        sockets: list[Path] = []
        while time.monotonic() < deadline and not (sockets and qemu_processes(token)):
            sockets = list(tmp_path.glob("*.qmp")) + list(Path("/tmp").glob(f"sev-launch-{proc.pid}-*.qmp"))
            time.sleep(0.2)
        assert sockets and qemu_processes(token), "QEMU did not start"
        time.sleep(1)
        started = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    assert f"launch: {sig.name}: guest stopped" in err
    assert took < 15  # seconds, not minutes
    assert qemu_processes(token) == []
    assert not any(p.exists() for p in sockets), sockets


@pytest.mark.qemu
def test_interactive_launch_cleans_up_on_sigterm(tmp_path, qemu_processes):
    """On a terminal: SIGTERM stops QEMU, removes the QMP socket, restores
    the terminal (pexpect's interact) and says so in one line."""
    import pexpect

    from pytest_sev.guest.specs import default_guest_spec
    try:
        spec = default_guest_spec()
    except Exception as exc:  # noqa: BLE001 - not provisioned here
        pytest.skip(f"default guest not available: {exc}")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = pexpect.spawn(sys.executable, ["-m", "pytest_sev", "launch", "-kernel", str(spec.kernel),
                                           "-initrd", str(spec.initrd), "-append", spec.append,
                                           "-mem", "512", "-smp", "1"],
                          cwd=str(tmp_path), env=env, timeout=120)
    try:
        child.expect(rb"sev-guest# ")
        assert qemu_processes(str(tmp_path))
        started = time.monotonic()
        os.kill(child.pid, signal.SIGTERM)
        child.expect(rb"launch: SIGTERM: guest stopped")
        child.expect(pexpect.EOF)
        took = time.monotonic() - started
    finally:
        child.close(force=True)
    assert child.exitstatus == 128 + signal.SIGTERM
    assert took < 15
    assert qemu_processes(str(tmp_path)) == []
    assert list(tmp_path.glob("*.qmp")) == []
