"""The capture bundle of the development machine, replayed.

``fixtures/hosts/capture-devbox-2026-12-01`` and
``fixtures/recorded/capture-devbox-2026-12-01`` were CAPTURED on this
project's development machine with ``python -m pytest_sev capture`` (an
Intel Xeon VM, QEMU 7.2 TCG, no SEV; see their meta.json). The host probe
must rebuild the saved report from the host inputs, and the plain guest's
recorded witness answers must cross-check as a plain control; SEV guests
were not boot-able there and the bundle says why.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from evidence_doubles import FakeExecuteError, ReplayGuest

from pytest_sev.cli.capture import scrub, wire
from pytest_sev.host.recorded import load_recorded
from pytest_sev.proofs import witnesses
from pytest_sev.sev import evidence

FIX = Path(__file__).resolve().parents[1] / "fixtures"
NAME = "capture-devbox-2026-12-01"


def test_host_inputs_replay_to_the_saved_report(tmp_path):
    host = load_recorded(FIX / "hosts" / NAME, tmp_path)
    assert host.meta["provenance"] == "captured"
    report = host.probe()
    assert report.format_text() == host.expected_text()
    assert report.first_failure("sev-es") is not None  # no SEV here, and the report says which check


def _replies(path: Path) -> dict:
    out = {}
    for cmd, reply in json.loads(path.read_text()).items():
        err = reply.get("error")
        out[cmd] = FakeExecuteError(err["class"], err["desc"]) if err else reply["return"]
    return out


def test_plain_guest_witnesses_replay_as_a_plain_control():
    rec = FIX / "recorded" / NAME
    meta = json.loads((rec / "meta.json").read_text())
    assert meta["provenance"] == "captured" and meta["guests"]["plain"]["dmesg_status"] == 0
    assert "skipped" in meta["guests"]["sev-es"]  # said, not silently absent
    guest = ReplayGuest(dmesg=((rec / "plain" / "dmesg.txt").read_text(), meta["guests"]["plain"]["dmesg_status"]),
                        msr=(rec / "plain" / "msr.txt").read_text(), qmp=_replies(rec / "plain" / "qmp.json"))
    ws = [witnesses.kernel_log(guest), witnesses.sev_status_msr(guest),
          witnesses.query_sev(guest, "plain", None), witnesses.launch_measurement(guest)]
    assert [w.answer for w in ws] == ["no"] * 4, [w.evidence for w in ws]
    check = evidence.cross_check("plain", [w.row() for w in ws])
    assert check.ok, check.message()
    assert "guest ready" in (rec / "plain" / "console.log").read_text()


def test_wire_and_scrub():
    assert wire(lambda: {"a": 1}) == {"return": {"a": 1}}
    assert wire(lambda: (_ for _ in ()).throw(FakeExecuteError("GenericError", "x"))) == {
        "error": {"class": "GenericError", "desc": "x"}}
    assert scrub("booted on myrunner01 today", "myrunner01") == "booted on <host> today"


def test_capture_cli_is_registered():
    proc = subprocess.run([sys.executable, "-m", "pytest_sev"], capture_output=True, text=True)
    assert "capture" in proc.stdout


@pytest.mark.qemu
@pytest.mark.timeout(300)
def test_capture_host_only(tmp_path):
    """A fresh host-only capture replays to its own report (guests: see the bundle above)."""
    from pytest_sev.cli.capture import capture
    capture(tmp_path, "capture-test", guests=False)
    host = load_recorded(tmp_path / "hosts" / "capture-test", tmp_path / "scratch")
    assert host.meta["provenance"] == "captured"
    assert host.probe().format_text() == host.expected_text()
