"""QEMU 7.2 accepts the session files on its command line (real QEMU, no SEV hardware).

What this shows, precisely: ``-object sev-guest,...,dh-cert-file=F,session-file=S``
with our files gets past QEMU's option parsing (an unknown property in the
same place is rejected there, as the control shows) and QEMU stops later at
the SEV/KVM stage. QEMU 7.2 *reads* the two files only in
``sev_launch_start`` after KVM has initialised SEV, so without SEV hardware
their content is never parsed by QEMU (a nonexistent file gives the same
stop, see the last test); their content is checked against QEMU's decoding
(base64 of the raw structures) in test_attest_session.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from attest_firmware import FirmwareDouble

from pytest_sev.attest.session import new_launch_start
from pytest_sev.attest.session_files import write_session
from pytest_sev.attest.sevcert import parse_sev_cert

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")

TCG_STOP = "machine->cgs->ready"          # QEMU 7.2 under TCG: no accelerator readied the SEV object
FILE_ERRORS = ("dh-cert-file", "session-file", "base64", "Invalid parameter", "No such file")


def _argv(dh: str, session: str, extra: str = "", accel: str | None = None) -> list[str]:
    argv = [QEMU or "qemu-system-x86_64", "-machine", "q35,confidential-guest-support=sev0",
            "-object", f"sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1,"
                       f"dh-cert-file={dh},session-file={session}{extra}",
            "-display", "none", "-nodefaults", "-S"]
    return argv + (["-accel", accel] if accel else [])


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def session_files(tmp_path: Path):
    start, key = new_launch_start(parse_sev_cert(FirmwareDouble().pdh), 0x5)
    return write_session(start, key, tmp_path / "owner")


def test_qemu_gets_past_option_parsing_under_tcg(session_files) -> None:
    r = _run(_argv(str(session_files.dh_cert), str(session_files.session)))
    assert r.returncode != 0
    assert TCG_STOP in r.stderr, r.stderr
    assert not any(e in r.stderr for e in FILE_ERRORS), r.stderr


def test_control_unknown_property_fails_at_option_parsing(session_files) -> None:
    """Control: the same -object with a bogus property is rejected while parsing options."""
    r = _run(_argv(str(session_files.dh_cert), str(session_files.session), ",bogus=1"))
    assert r.returncode == 1 and "Invalid parameter 'bogus'" in r.stderr and TCG_STOP not in r.stderr


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm not usable")
def test_qemu_reaches_sev_init_under_kvm(session_files) -> None:
    """With KVM but no SEV, QEMU stops in sev_kvm_init (before LAUNCH_START reads the files)."""
    r = _run(_argv(str(session_files.dh_cert), str(session_files.session), accel="kvm"))
    assert r.returncode != 0 and "sev_kvm_init" in r.stderr, r.stderr


def test_files_are_not_read_without_sev(tmp_path: Path) -> None:
    """Documents the limit of the argv test: missing files stop QEMU at the same point."""
    r = _run(_argv(str(tmp_path / "missing-godh.b64"), str(tmp_path / "missing-session.b64")))
    assert TCG_STOP in r.stderr


def test_kernel_hashes_property_gets_past_option_parsing(session_files) -> None:
    """``kernel-hashes=on`` (what an attested launch on the AmdSev OVMF adds) is a
    sev-guest property QEMU 7.2 knows: same stop as without it, unlike ``bogus=1``."""
    r = _run(_argv(str(session_files.dh_cert), str(session_files.session), ",kernel-hashes=on"))
    assert TCG_STOP in r.stderr and "Invalid parameter" not in r.stderr, r.stderr
