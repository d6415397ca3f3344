"""The EFI-program runner (pytest_sev.guest.efi_app) with real QEMU and real OVMF.

No kvm-unit-tests tree is reachable on a fresh machine, so the program here is
OVMF's own UEFI shell running a ``startup.nsh`` from the FAT disk: it prints
check lines the way kvm-unit-tests does and ends QEMU through the same
isa-debug-exit port (``mm 0xf4 <code> -IO -w 4``), so QEMU's exit status is
``(code << 1) | 1`` exactly as for ``amd_sev.efi``.  (The shell waits 5 s
before it runs startup.nsh: each of these boots takes about 9 s here.)
tests/test_kut_live.py runs the real amd_sev.efi where a tree is given.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pytest_sev.config import RunConfig
from pytest_sev.guest.efi_app import BOOT_PATH, EfiRun, esp_disk, make_esp, run_efi_program
from pytest_sev.guest.specs import efi_program_spec
from pytest_sev.qemu.accel import choose_accel
from pytest_sev.qemu.firmware import find_ovmf
from pytest_sev.sev import kut

pytestmark = [pytest.mark.skipif(find_ovmf() is None, reason="no OVMF installed (apt install ovmf)")]


def _shell_esp(tmp_path: Path, script: str) -> Path:
    """An esp with no boot program: OVMF falls back to its shell, which runs startup.nsh."""
    esp = tmp_path / "esp"
    esp.mkdir()
    (esp / "startup.nsh").write_text(script.replace("\n", "\r\n"))
    return esp


def _run(tmp_path: Path, esp: Path, timeout: float = 90.0) -> EfiRun:
    spec = efi_program_spec(RunConfig(), "plain", esp_disk(esp), None)
    return run_efi_program(spec, program="shell", workdir=tmp_path / "run", qemu="qemu-system-x86_64",
                           accel=choose_accel("auto"), timeout=timeout)


def _qemu_pids(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def test_a_program_that_passes(tmp_path):
    esp = _shell_esp(tmp_path, 'echo "PASS: from the shell"\necho "SUMMARY: 1 tests"\nmm 0xf4 0x0 -IO -w 4\n')
    run = _run(tmp_path, esp)
    assert (run.exit_code, run.timed_out, run.frozen) == (1, False, None), run.stderr
    verdict = kut.judge(run.output, run.exit_code, timed_out=run.timed_out, timeout=run.timeout, stderr=run.stderr)
    assert (verdict.outcome, verdict.reason) == ("pass", "1 of 1 checks passed")
    assert [r.name for r in verdict.parsed.results] == ["from the shell"]
    assert run.argv[0].endswith("qemu-system-x86_64") and "isa-debug-exit,iobase=0xf4,iosize=0x4" in run.argv
    assert (tmp_path / "run" / "qemu-argv.txt").read_text().split("\n")[0] == run.argv[0]
    assert oct((tmp_path / "run").stat().st_mode & 0o777) == "0o700"
    assert not _qemu_pids(str(tmp_path))


def test_a_program_that_fails(tmp_path):
    esp = _shell_esp(tmp_path, 'echo "FAIL: from the shell"\necho "SUMMARY: 1 tests, 1 unexpected failures"\n'
                               "mm 0xf4 0x1 -IO -w 4\n")
    run = _run(tmp_path, esp)
    assert run.exit_code == kut.EXIT_FAIL
    verdict = kut.judge(run.output, run.exit_code, timed_out=run.timed_out, timeout=run.timeout)
    assert verdict.outcome == "fail" and "from the shell" in verdict.reason


def test_a_program_that_never_ends_is_stopped_at_its_limit(tmp_path):
    esp = _shell_esp(tmp_path, "echo waiting\n")
    start = time.monotonic()
    run = _run(tmp_path, esp, timeout=3.0)
    assert time.monotonic() - start < 30
    assert (run.exit_code, run.timed_out) == (None, True)
    assert kut.judge(run.output, run.exit_code, timed_out=True, timeout=run.timeout).outcome == "timeout"
    assert not _qemu_pids(str(tmp_path))


def test_a_stopped_qemu_ends_the_wait_named(tmp_path):
    esp = _shell_esp(tmp_path, "echo waiting\n")
    stopped: list[int] = []

    def stop_it() -> None:
        for _ in range(100):
            pids = _qemu_pids(str(tmp_path / "run"))
            if pids:
                os.kill(pids[0], signal.SIGSTOP)
                stopped.append(pids[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=stop_it)
    thread.start()
    start = time.monotonic()
    run = _run(tmp_path, esp, timeout=60.0)
    thread.join()
    assert stopped, "QEMU was never seen"
    assert time.monotonic() - start < 15
    assert run.frozen is not None and f"pid {stopped[0]}" in run.frozen and "stopped" in run.frozen
    assert not run.timed_out and run.exit_code is None
    assert not _qemu_pids(str(tmp_path))


def test_make_esp_puts_the_program_where_ovmf_boots_it(tmp_path):
    program = tmp_path / "prog.efi"
    program.write_bytes(b"MZ...")
    esp = make_esp(tmp_path, program)
    assert esp.joinpath(*BOOT_PATH).read_bytes() == b"MZ..."
    disk = esp_disk(esp)
    assert (disk.format, disk.readonly, disk.iommu_platform) == ("vvfat", True, True)
