"""The I/O half of the witnesses (pytest_sev/proofs/witnesses.py), driven by the guest
double of tests/evidence_doubles.py (no QEMU): what each witness asks, with which
time limit, and how each answer or failure becomes yes / no / unknown.

Inputs: recorded guest outputs (fixtures/recorded/guest: the plain ones captured on the
development machine, SEV/SEV-ES reconstructed, see that README); memory dumps are
synthesised by the double.
"""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

import pytest
from evidence_doubles import FakeExecuteError, plain_guest, qmp_reply, recorded, sev_guest, timeout_error

from pytest_sev.errors import GuestLaunchError
from pytest_sev.proofs import witnesses
from pytest_sev.proofs.witnesses import Witness
from pytest_sev.sev import evidence, memview, msr

NOT_ACTIVE = "QEMU says SEV is not active: "


def recording(guest):
    """Record (command, timeout) of every guest.run and (cmd, args) of every QMP call."""
    runs, calls = [], []
    run, execute = guest.run, guest.qmp.execute

    def rec_run(cmd, timeout=None):  # None: the caller gave no time limit
        runs.append((cmd, timeout))
        return run(cmd, timeout)

    def rec_execute(cmd, **args):
        calls.append((cmd, args))
        return execute(cmd, **args)

    guest.run, guest.qmp.execute = rec_run, rec_execute
    return runs, calls


# -- Witness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("enc,answer,decisive", [(True, "yes", True), (False, "no", True), (None, "unknown", False)])
def test_witness_answer_and_row(enc, answer, decisive):
    w = Witness("w", enc, False, "because")
    assert w.answer == answer and w.decisive is decisive
    assert w.row() == evidence.Row("w", enc, False, "because")
    assert w.details == {} and w.host_side is False


# -- the guest kernel log ------------------------------------------------------------------------

def test_read_dmesg_runs_dmesg_with_its_time_limit():
    guest = plain_guest()
    runs, _ = recording(guest)
    assert witnesses.read_dmesg(guest).ok
    assert witnesses.read_dmesg(guest, timeout=5).ok
    assert runs == [("dmesg", 60), ("dmesg", 5)]


def test_read_dmesg_that_could_not_run_is_unknown_with_the_error():
    read = witnesses.read_dmesg(plain_guest(dmesg=timeout_error()))
    assert read.text is None
    assert read.reason == ("dmesg could not run: GuestTimeout: "
                           + str(timeout_error())[:160])
    long = GuestLaunchError("y" * 300)
    assert witnesses.read_dmesg(plain_guest(dmesg=long)).reason == f"dmesg could not run: GuestLaunchError: {'y' * 160}"


def test_read_dmesg_checks_the_status():
    read = witnesses.read_dmesg(plain_guest(dmesg=(recorded("plain-6.1-tcg-serial.log"), 1)))
    assert read.text is None and "exit status 1" in read.reason


def test_judge_kernel_log_of_a_failed_read():
    assert witnesses.judge_kernel_log(evidence.LogRead(None, "why")) == (None, None, "unknown: why", {})


@pytest.mark.parametrize("log,enc,es", [
    ("sev-es-6.1-guest.log", True, True),
    ("sev-es-5.15-guest.log", True, True),
    ("sev-4.19-guest.log", True, False),
    ("plain-6.1-tcg-serial.log", False, False),
])
def test_judge_kernel_log_decides(log, enc, es):
    enc_, es_, ev, details = witnesses.judge_kernel_log(evidence.LogRead(recorded(log)))
    assert (enc_, es_) == (enc, es), ev
    assert not ev.startswith("unknown") and details["boots"] >= 1  # the serial log holds a dmesg replay
    assert set(details) == {"features", "eras", "boots"}


def test_judge_kernel_log_details():
    _, _, ev, details = witnesses.judge_kernel_log(evidence.LogRead(recorded("sev-es-6.1-guest.log")))
    assert details == {"features": ["SEV", "SEV-ES"], "eras": ["5.19+"], "boots": 1}
    assert ev.startswith("guest log (5.19+): SEV SEV-ES from ")


def test_sev_line_without_the_boot_start_still_decides():
    """The SEV line itself is evidence even when 'Linux version' left the ring buffer."""
    lines = recorded("sev-es-6.1-guest.log").splitlines()
    tail = "\n".join(ln for ln in lines if "Linux version" not in ln)
    enc, es, _, details = witnesses.judge_kernel_log(evidence.LogRead(tail))
    assert (enc, es) == (True, True) and details["boots"] == 0


def test_no_sev_line_and_no_boot_start_is_unknown():
    tail = "\n".join(recorded("plain-6.1-tcg-serial.log").splitlines()[200:300])
    enc, es, ev, details = witnesses.judge_kernel_log(evidence.LogRead(tail))
    assert (enc, es) == (None, None) and details["boots"] == 0
    assert ev == "unknown: no SEV line, but the log does not reach back to 'Linux version'"


def test_tdx_log_is_unknown():
    enc, es, ev, _ = witnesses.judge_kernel_log(evidence.LogRead(recorded("tdx-6.8-guest.log")))
    assert (enc, es) == (None, None) and ev == "unknown: the guest log names Intel TDX, not SEV"


def test_disagreeing_lines_are_unknown():
    text = recorded("sev-es-6.1-guest.log") + "\n[    0.300000] AMD Memory Encryption Features active: SEV\n"
    enc, es, ev, details = witnesses.judge_kernel_log(evidence.LogRead(text))
    assert (enc, es) == (None, None) and ev.startswith("unknown: ") and "DISAGREE" in ev
    assert details["features"] == ["SEV", "SEV-ES"]


def test_es_without_sev_is_not_sev_es():
    """A line naming SEV-ES without SEV (no kernel prints it) never yields an ES 'yes'."""
    text = "[    0.1] Linux version 6.1\n[    0.2] Memory Encryption Features active: AMD SEV-ES\n"
    enc, es, _, _ = witnesses.judge_kernel_log(evidence.LogRead(text))
    assert (enc, es) == (False, False)


def test_kernel_log_witness():
    w = witnesses.kernel_log(sev_guest("sev-es"))
    assert (w.name, w.answer, w.es, w.host_side) == (evidence.KERNEL_LOG, "yes", True, False)
    assert w.details["boots"] == 1


# -- SEV_STATUS ------------------------------------------------------------------------------------

def test_msr_witness_asks_the_read_command_with_its_time_limit():
    guest = sev_guest("sev-es")
    runs, _ = recording(guest)
    w = witnesses.sev_status_msr(guest)
    assert runs == [(msr.guest_read_command(load_module=True), 60)]
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MSR, True, True, False)
    assert w.details == {"per_cpu": {"0": 3, "1": 3}, "raw": recorded("msr/guest-read-sev-es-2cpu.txt"),
                         "flags": ["SEV", "SEV-ES"]}
    assert w.snp is False


def test_msr_witness_checks_every_vcpu_of_the_guest():
    """The guest has 4 vCPUs, the read answered for 2: unknown, never 'yes'."""
    w = witnesses.sev_status_msr(sev_guest("sev-es", vcpus=4))
    assert w.encrypted is None and "expected 4 CPU(s), got 2" in w.evidence


def test_msr_read_that_did_not_return_is_unknown():
    guest = sev_guest("sev-es")
    guest.run = lambda cmd, timeout=60.0: (_ for _ in ()).throw(timeout_error())
    w = witnesses.sev_status_msr(guest)
    assert (w.name, w.encrypted, w.es) == (evidence.MSR, None, None)
    assert w.evidence == "SEV_STATUS unknown: the read did not return (GuestTimeout)"


# -- query-sev ---------------------------------------------------------------------------------------

def test_query_sev_asks_query_sev():
    guest = sev_guest("sev-es")
    _, calls = recording(guest)
    w = witnesses.query_sev(guest, "sev-es", "1.55")
    assert calls == [("query-sev", {})]
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.QUERY_SEV, True, True, True)
    assert w.details == {"reply": qmp_reply("qmp/sev-es-qemu7.2-query-sev-running.json"), "problems": []}


def test_query_sev_error_saying_sev_is_off_is_a_no():
    exc = FakeExecuteError("GenericError", "SEV feature is not available")
    w = witnesses.judge_query_sev(exc, "sev-es", None)
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.QUERY_SEV, False, False, True)
    assert w.evidence == NOT_ACTIVE + "SEV feature is not available"
    assert w.details == {"reply": "SEV feature is not available", "problems": []}


def test_query_sev_error_that_says_nothing_is_unknown():
    exc = ConnectionResetError(104, "Connection reset by peer")
    w = witnesses.judge_query_sev(exc, "sev-es", None)
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.QUERY_SEV, None, None, True)
    reason = "QMP socket lost (ConnectionResetError: [Errno 104] Connection reset by peer)"
    assert w.evidence == "unknown: " + reason
    assert w.details == {"reply": str(exc), "problems": [reason]}


def test_query_sev_is_judged_against_the_requested_kind():
    reply = qmp_reply("qmp/plain-qemu7.2-tcg-query-sev.json")
    plain = witnesses.judge_query_sev(reply, "plain", None)
    assert (plain.encrypted, plain.details["problems"]) == (False, [])
    as_sev = witnesses.judge_query_sev(reply, "sev", None)
    assert as_sev.encrypted is False and "SEV is not enabled (expected sev)" in as_sev.details["problems"]


def test_query_sev_reply_with_problems_keeps_them_in_details():
    w = witnesses.judge_query_sev(qmp_reply("qmp/sev-es-qemu7.2-query-sev-launch-secret.json"), "sev-es", None)
    assert w.encrypted is None and w.details["problems"] == ["state is 'launch-secret', expected 'running'"]


# -- the launch measurement ------------------------------------------------------------------------

def _blob(n):
    return {"data": base64.b64encode(bytes(n)).decode()}


def test_launch_measurement_asks_its_command():
    guest = sev_guest("sev-es")
    _, calls = recording(guest)
    w = witnesses.launch_measurement(guest)
    assert calls == [("query-sev-launch-measure", {})]
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEASUREMENT, True, None, True)
    assert w.evidence == "present=True length=48" and w.details == {"present": True, "length": 48}


def test_launch_measure_error_saying_sev_is_off_is_a_no():
    exc = FakeExecuteError("GenericError", "SEV launch measurement is not available")
    w = witnesses.judge_launch_measure(exc)
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEASUREMENT, False, None, True)
    assert w.evidence == NOT_ACTIVE + "SEV launch measurement is not available"
    assert w.details == {"present": False, "length": None}


def test_launch_measure_error_that_says_nothing_is_unknown():
    w = witnesses.judge_launch_measure(TimeoutError("timed out"))
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEASUREMENT, None, None, True)
    assert w.evidence == "unknown: QMP timed out (TimeoutError: timed out)"
    assert w.details == {"present": False, "length": None}


def test_launch_measure_not_available_in_a_wire_reply_is_a_no():
    reply = {"error": {"class": "GenericError", "desc": "SEV launch measurement is not available"}}
    w = witnesses.judge_launch_measure(reply)
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEASUREMENT, False, None, True)
    assert w.evidence == NOT_ACTIVE + "GenericError: SEV launch measurement is not available"
    assert w.details == {"present": False, "length": None}


@pytest.mark.parametrize("n", [1, 47, 49])
def test_launch_measure_of_the_wrong_size_is_unknown(n):
    w = witnesses.judge_launch_measure(_blob(n))
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEASUREMENT, None, None, True)
    assert w.evidence.startswith(f"unknown: 'data' decodes to {n} bytes")
    assert w.details == {"present": False, "length": n}


def test_launch_measure_other_error_reply_is_unknown():
    w = witnesses.judge_launch_measure({"error": {"class": "GenericError", "desc": "boom"}})
    assert w.encrypted is None and w.evidence == "unknown: GenericError: boom"


# -- the host memory view -----------------------------------------------------------------------------

def test_judge_dump_of_the_wrong_size_is_unknown(tmp_path):
    dump = tmp_path / "d.bin"
    dump.write_bytes(b"\0" * 4096)
    w = witnesses.judge_dump(dump, 8192, "00" * 16, True)
    assert w.encrypted is None and w.found == 0
    assert w.evidence == "unknown: dump holds 4096 bytes, 8192 asked for (wrong range or pmemsave failed)"
    assert w == memview.MemViewWitness(0, None, 0.0, None, w.evidence)  # nothing found, nothing sampled
    missing = witnesses.judge_dump(tmp_path / "none.bin", 8192, "00" * 16, True)
    assert missing.evidence.startswith("unknown: dump holds 0 bytes, 8192 asked for")


def test_judge_dump_passes_on_whether_the_marker_was_written(tmp_path):
    """Ciphertext-like memory without the marker: 'encrypted' only if the guest wrote it."""
    dump = tmp_path / "d.bin"
    dump.write_bytes(os.urandom(256 << 10))
    marker = "cd" * 16
    written = witnesses.judge_dump(dump, 256 << 10, marker, True)
    not_written = witnesses.judge_dump(dump, 256 << 10, marker, False)
    assert written.encrypted is True and not_written.encrypted is None


def test_judge_dump_of_the_right_size_is_judged(tmp_path):
    marker = "ab" * 16
    dump = tmp_path / "d.bin"
    page = (memview.marker_bytes(marker) + b"\n") * 100
    dump.write_bytes(page + b"\0" * (8192 - len(page)))
    w = witnesses.judge_dump(dump, 8192, marker, True)
    assert w == memview.evaluate_dump(dump, memview.marker_bytes(marker), marker_written=True)
    assert w.found > 0
    assert witnesses.judge_dump(dump, 8192, marker, False) == memview.evaluate_dump(
        dump, memview.marker_bytes(marker), marker_written=False)


def scratch_dirs(monkeypatch) -> list[str]:
    """The directories tempfile.mkdtemp makes from now on, in order (they are still made)."""
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])
    return made


def test_memory_view_asks_marker_dump_and_cleanup(monkeypatch):
    guest = plain_guest()
    runs, calls = recording(guest)
    made = scratch_dirs(monkeypatch)
    w = witnesses.host_memory_view(guest)
    assert [r[1] for r in runs] == [120, 60] and "SEVMARK" in runs[0][0] and runs[1][0].startswith("rm -f")
    assert [c[0] for c in calls] == ["pmemsave"]
    args = calls[0][1]
    assert args["val"] == 0 and args["size"] == 64 << 20 and args["filename"] == str(Path(made[0]) / "guest-memory.bin")
    assert Path(made[0]).name.startswith("sev-memdump-") and not Path(made[0]).exists()
    assert (w.name, w.encrypted, w.es, w.host_side) == (evidence.MEMORY, False, None, True)
    d = w.details
    assert d["marker_written"] is True and d["found"] > 0 and d["range"] == [0, 64 << 20] and d["decoy"] is False
    assert set(d) == {"found", "entropy_at_marker", "sampled_entropy", "samples", "marker_written", "range", "decoy"}


def test_memory_view_of_encrypted_memory_is_yes():
    w = witnesses.host_memory_view(sev_guest("sev-es"))
    assert w.encrypted is True and w.details["found"] == 0 and w.details["sampled_entropy"] > 7.5


def test_memory_view_with_a_given_range():
    guest = plain_guest()
    _, calls = recording(guest)
    w = witnesses.host_memory_view(guest, start=16 << 20, size=1 << 20)
    assert (calls[0][1]["val"], calls[0][1]["size"]) == (16 << 20, 1 << 20)
    assert w.details["range"] == [16 << 20, 1 << 20] and w.encrypted is False


def test_memory_view_decoy_searches_another_marker():
    w = witnesses.host_memory_view(plain_guest(), decoy=True)
    assert w.encrypted is None and w.details["decoy"] is True and w.details["found"] == 0


def test_memory_view_and_decoy_share_one_marker_and_one_dump(monkeypatch):
    guest = plain_guest()
    runs, calls = recording(guest)
    made = scratch_dirs(monkeypatch)
    real, decoy = witnesses.host_memory_view_and_decoy(guest)
    assert [r[1] for r in runs] == [120, 60] and "SEVMARK" in runs[0][0] and runs[1][0].startswith("rm -f")
    assert [c[0] for c in calls] == ["pmemsave"] and len(made) == 1 and not Path(made[0]).exists()
    assert (real.encrypted, real.details["decoy"], decoy.details["decoy"]) == (False, False, True)
    assert real.details["found"] > 0 and decoy.details["found"] == 0 and decoy.encrypted is None
    assert real.details["range"] == decoy.details["range"] == [0, 64 << 20]
    assert real.details["marker_written"] is decoy.details["marker_written"] is True
    assert (decoy.name, decoy.host_side) == (evidence.MEMORY, True)
    # what the two calls with a dump each answer
    alone_real = witnesses.host_memory_view(plain_guest())
    assert (real.encrypted, real.es, real.details["found"] > 0) == (alone_real.encrypted, alone_real.es, True)
    alone = witnesses.host_memory_view(plain_guest(), decoy=True)
    assert (decoy.encrypted, decoy.details["found"]) == (alone.encrypted, alone.details["found"])


def test_memory_view_and_decoy_of_encrypted_memory():
    real, decoy = witnesses.host_memory_view_and_decoy(sev_guest("sev-es"))
    assert real.encrypted is True and decoy.encrypted is not False and decoy.details["decoy"] is True


def _marker_command_times_out():
    """A plain stand-in guest whose marker command does not return."""
    guest = plain_guest()
    real = guest.run

    def run(cmd, timeout=60.0):
        if "SEVMARK" in cmd:
            raise timeout_error()
        return real(cmd, timeout)

    guest.run = run
    return guest


def test_memory_view_and_decoy_without_a_marker_or_a_dump_are_both_unknown():
    guest = _marker_command_times_out()
    both = witnesses.host_memory_view_and_decoy(guest)
    assert [w.encrypted for w in both] == [None, None] and guest.qmp.calls == []
    assert all(w.evidence.startswith("unknown: marker command did not return") for w in both)
    failing = plain_guest()
    failing.qmp.replies["pmemsave"] = FakeExecuteError("GenericError", "SEV is not enabled")
    both = witnesses.host_memory_view_and_decoy(failing)
    assert [w.encrypted for w in both] == [None, None]
    assert [w.details["decoy"] for w in both] == [False, True]
    assert all(w.evidence == "unknown: pmemsave failed: QEMU says SEV is not active: SEV is not enabled"
               for w in both)


def test_marker_command_that_did_not_return_is_unknown():
    guest = _marker_command_times_out()
    w = witnesses.host_memory_view(guest)
    assert (w.name, w.encrypted, w.host_side) == (evidence.MEMORY, None, True)
    assert w.evidence == f"unknown: marker command did not return ({timeout_error()})"
    assert w.details == {"marker_written": False, "found": 0}
    assert guest.qmp.calls == []  # nothing dumped


def test_pmemsave_failure_leaves_no_scratch(monkeypatch):
    guest = plain_guest()
    guest.qmp.replies["pmemsave"] = FakeExecuteError("GenericError", "SEV is not enabled")
    made = scratch_dirs(monkeypatch)
    w = witnesses.host_memory_view(guest)
    assert w.encrypted is None  # even QEMU's "no" on pmemsave is no memory view
    assert w.evidence == "unknown: pmemsave failed: QEMU says SEV is not active: SEV is not enabled"
    d = w.details
    assert (d["found"], d["entropy_at_marker"], d["sampled_entropy"], d["samples"]) == (0, None, 0.0, 0)
    assert not Path(made[0]).exists()


# -- all five, and the diagnosis ----------------------------------------------------------------------

def test_all_witnesses_in_order():
    ws = witnesses.all_witnesses(sev_guest("sev"), "sev", "1.55")
    assert [w.name for w in ws] == [evidence.KERNEL_LOG, evidence.MSR, evidence.QUERY_SEV, evidence.MEMORY,
                                    evidence.MEASUREMENT]
    assert [w.host_side for w in ws] == [False, False, True, True, True]
    assert [(w.encrypted, w.es) for w in ws] == [(True, False), (True, False), (True, False), (True, None),
                                                 (True, None)]


def test_all_witnesses_pass_the_host_api_on():
    ws = witnesses.all_witnesses(sev_guest("sev"), "sev", "1.51")
    assert ws[2].encrypted is None and "differs from host firmware 1.51" in ws[2].evidence


MEMLOCK = "qemu-system-x86_64: SEV: 131072 locked pages exceed the lock limit of 16384.\n"


def _guest_with_logs(tmp_path, **texts):
    guest = plain_guest()
    guest.logs = {}
    for label, text in texts.items():
        path = tmp_path / f"{label}.log"
        path.write_text(text)
        guest.logs[label.replace("_", " ")] = path
    return guest


@pytest.mark.parametrize("label", ["qemu_stderr", "console_log"])
def test_diagnose_reads_qemu_stderr_and_console(tmp_path, label):
    guest = _guest_with_logs(tmp_path, **{label: MEMLOCK})
    assert witnesses.diagnose(guest).startswith("SEV signature memlock-limit: ")
    assert f"(in {label.replace('_', ' ')}: " in witnesses.diagnose(guest)


def test_diagnose_reads_logs_with_bytes_that_are_not_utf8(tmp_path):
    guest = _guest_with_logs(tmp_path, qemu_stderr="")
    Path(guest.logs["qemu stderr"]).write_bytes(b"\xff\xfe garbage \x80\n" + MEMLOCK.encode())
    assert witnesses.diagnose(guest).startswith("SEV signature memlock-limit: ")
    exc = GuestLaunchError("x", logs={"qemu stderr": guest.logs["qemu stderr"]})
    assert witnesses.diagnose_error(exc).startswith("SEV signature memlock-limit: ")


def test_diagnose_skips_missing_and_other_logs(tmp_path):
    guest = _guest_with_logs(tmp_path, other=MEMLOCK)
    guest.logs["qemu stderr"] = tmp_path / "absent.log"
    assert witnesses.diagnose(guest) == ""
    assert witnesses.diagnose(plain_guest()) == ""  # a guest without logs


def _line_then_pad(total):
    """The kernel's memlock line first, padded to ``total`` characters."""
    line = MEMLOCK.split(": ", 1)[1]  # "SEV: 131072 locked pages ..."
    return line + "x" * (total - len(line))


def test_diagnose_reads_the_last_200000_characters(tmp_path):
    inside = _guest_with_logs(tmp_path, qemu_stderr=_line_then_pad(200_000))
    assert witnesses.diagnose(inside).startswith("SEV signature memlock-limit: ")
    outside = _guest_with_logs(tmp_path, qemu_stderr=_line_then_pad(200_001))  # its 'S' falls just outside
    assert witnesses.diagnose(outside) == ""


def test_diagnose_reads_dmesg_only_from_a_live_guest():
    guest = plain_guest(dmesg=("[    1.0] SEV: 131072 locked pages exceed the lock limit of 16384.\n", 0))
    runs, _ = recording(guest)
    assert witnesses.diagnose(guest).startswith("SEV signature memlock-limit: ")
    assert "(in guest dmesg: " in witnesses.diagnose(guest) and runs[0] == ("dmesg", 60)
    guest.alive = False
    runs.clear()
    assert witnesses.diagnose(guest) == "" and runs == []


def test_diagnose_ignores_a_failed_dmesg():
    guest = plain_guest(dmesg=("SEV: 131072 locked pages exceed the lock limit of 16384.\n", 1))
    assert witnesses.diagnose(guest) == ""


@pytest.mark.parametrize("msr_es,log_es,named", [(True, False, True), (True, True, False), (False, False, False),
                                                 (None, False, False), (True, None, False)])
def test_diagnose_compares_msr_and_log_answers(msr_es, log_es, named):
    answers = {}
    if msr_es is not None:
        answers[evidence.MSR] = Witness(evidence.MSR, True, msr_es, "")
    if log_es is not None:
        answers[evidence.KERNEL_LOG] = Witness(evidence.KERNEL_LOG, True, log_es, "")
    known = witnesses.diagnose(plain_guest(), answers)
    assert known.startswith("SEV signature guest-log-without-es: ") is named
    assert witnesses.diagnose(plain_guest(), None) == ""


def test_diagnose_error_reads_detail_console_and_logs(tmp_path):
    stderr = tmp_path / "stderr.log"
    stderr.write_text(MEMLOCK)
    assert witnesses.diagnose_error(GuestLaunchError("x", logs={"qemu stderr": stderr})).startswith(
        "SEV signature memlock-limit: ")
    assert "(in error: " in witnesses.diagnose_error(GuestLaunchError("x", detail=MEMLOCK))
    assert "(in console: " in witnesses.diagnose_error(GuestLaunchError("x", console_tail=MEMLOCK))
    gone = GuestLaunchError("x", logs={"qemu stderr": tmp_path / "gone.log", "qemu log": stderr})
    assert "(in qemu log: " in witnesses.diagnose_error(gone)  # an unreadable log is skipped, not fatal
    assert witnesses.diagnose_error(ValueError("plain error")) == ""


def test_diagnose_error_reads_the_last_200000_characters(tmp_path):
    stderr = tmp_path / "stderr.log"
    stderr.write_text(_line_then_pad(200_001))  # its 'S' falls just outside
    assert witnesses.diagnose_error(GuestLaunchError("x", logs={"qemu stderr": stderr})) == ""
    stderr.write_text(_line_then_pad(200_000))
    assert witnesses.diagnose_error(GuestLaunchError("x", logs={"qemu stderr": stderr}))
