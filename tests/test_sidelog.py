"""SideLog: a log file whose failure costs the log, never the guest."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pytest_sev.sidelog import SideLog


def test_text_and_bytes_are_appended(tmp_path):
    text = SideLog(tmp_path / "t.jsonl", "QMP transcript", "g")
    text.write("a\n")
    text.write("b\n")
    assert (tmp_path / "t.jsonl").read_text() == "a\nb\n"  # flushed at each write
    binary = SideLog(tmp_path / "c.log", "console log", "g", binary=True)
    binary.write(b"\x1b[0mok\r\n")
    assert (tmp_path / "c.log").read_bytes() == b"\x1b[0mok\r\n"
    assert text.broken is None and binary.broken is None
    text.close()
    binary.close()
    text.close()  # twice is fine


def test_no_path_writes_nothing(tmp_path):
    log = SideLog(None, "QMP transcript", "g")
    log.write("x")
    assert log.broken is None and list(tmp_path.iterdir()) == []


def test_an_unopenable_file_warns_once_and_writes_are_dropped(tmp_path, caplog):
    caplog.set_level(logging.WARNING, "pytest_sev.sidelog")
    log = SideLog(tmp_path / "missing-dir" / "t.jsonl", "QMP transcript", "guest-1")
    log.write("x\n")
    log.write("y\n")
    assert log.broken == "No such file or directory"
    assert [r.getMessage() for r in caplog.records] == [
        f"guest-1: QMP transcript {tmp_path / 'missing-dir' / 't.jsonl'} cannot be written "
        "(No such file or directory); going on without it"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("binary", [False, True])
def test_a_full_disk_mid_run_warns_once(caplog, binary):
    caplog.set_level(logging.WARNING, "pytest_sev.sidelog")
    log = SideLog(Path("/dev/full"), "console log", "guest-2", binary=binary)
    for _ in range(3):
        log.write(b"data\n" if binary else "data\n")
    assert log.broken == "No space left on device"
    assert len(caplog.records) == 1
