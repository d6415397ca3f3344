"""Injected evidence faults -> the verdict each now gets.

Every witness answers yes / no / unknown; a read that failed, came back
empty, was denied or could not reach its party is unknown, and the
cross-check counts only decisive answers. Inputs: the plain guest's dmesg,
SEVMSR and QMP replies were captured on the development machine (QEMU 7.2
TCG); SEV/SEV-ES answers are reconstructed (fixtures/recorded/guest/README.md);
memory dumps are synthesised by tests/evidence_doubles.py.
"""

from __future__ import annotations

import pytest
from evidence_doubles import FakeExecuteError, plain_guest, recorded, sev_guest, timeout_error

from pytest_sev.proofs import witnesses
from pytest_sev.sev import evidence


def _cross(kind, ws):
    return evidence.cross_check(kind, [w.row() for w in ws])


def _all(guest, kind):
    return witnesses.all_witnesses(guest, kind, host_api=None)


# -- the healthy baselines -------------------------------------------------------

def test_plain_control_all_five_decisive_and_agree():
    ws = _all(plain_guest(), "plain")
    assert [w.answer for w in ws] == ["no"] * 5, [w.evidence for w in ws]
    assert _cross("plain", ws).ok


@pytest.mark.parametrize("kind", ["sev", "sev-es"])
def test_sev_kinds_all_five_decisive_and_agree(kind):
    ws = _all(sev_guest(kind), kind)
    assert [w.answer for w in ws] == ["yes"] * 5, [w.evidence for w in ws]
    es = {w.name: w.es for w in ws}
    assert es[evidence.MSR] is (kind == "sev-es") and es[evidence.KERNEL_LOG] is (kind == "sev-es")
    assert es[evidence.QUERY_SEV] is (kind == "sev-es")
    check = _cross(kind, ws)
    assert check.ok, check.message()


# -- dmesg --------------------------------------------------------------------------

@pytest.mark.parametrize("dmesg,why", [
    (("dmesg: read kernel buffer failed: Input/output error\n", 1), "exit status 1"),
    (("", 0), "printed nothing"),
    (("dmesg: klogctl: Operation not permitted\n", 1), "permission denied"),
    (timeout_error(), "could not run"),
], ids=["dmesg-fails", "dmesg-empty", "dmesg-denied", "dmesg-times-out"])
def test_dmesg_fault_is_unknown_never_not_encrypted(dmesg, why):
    w = witnesses.kernel_log(plain_guest(dmesg=dmesg))
    assert w.answer == "unknown" and why in w.evidence


def test_log_without_boot_start_is_unknown():
    tail = "\n".join(recorded("plain-6.1-tcg-serial.log").splitlines()[200:300])
    assert "Linux version" not in tail
    assert witnesses.kernel_log(plain_guest(dmesg=(tail, 0))).answer == "unknown"


# -- QMP -----------------------------------------------------------------------------

LOST = ConnectionResetError(104, "Connection reset by peer")
QMP_FAULTS = {
    "CommandNotFound": FakeExecuteError("CommandNotFound", "The command query-sev has not been found"),
    "socket-lost": LOST,
    "eof": EOFError("QMP socket closed"),
    "timeout": TimeoutError("timed out"),
}


@pytest.mark.parametrize("fault", list(QMP_FAULTS))
@pytest.mark.parametrize("cmd", ["query-sev", "query-sev-launch-measure"])
def test_qmp_fault_is_unknown(fault, cmd):
    guest = plain_guest()
    guest.qmp.replies[cmd] = QMP_FAULTS[fault]
    w = (witnesses.query_sev(guest, "plain", None) if cmd == "query-sev"
         else witnesses.launch_measurement(guest))
    assert w.answer == "unknown", w.evidence
    assert w.evidence.startswith("unknown: ")


def test_qemu_saying_sev_is_not_enabled_is_a_real_no():
    guest = plain_guest()
    guest.qmp.replies["query-sev"] = FakeExecuteError("GenericError", "SEV feature is not available")
    assert witnesses.query_sev(guest, "plain", None).answer == "no"
    # the captured plain reply: "SEV launch measurement is not available"
    assert witnesses.launch_measurement(plain_guest()).answer == "no"


def test_qmp_faults_leave_plain_control_short_of_three():
    guest = plain_guest(dmesg=("", 0))
    guest.qmp.replies["query-sev"] = QMP_FAULTS["CommandNotFound"]
    guest.qmp.replies["query-sev-launch-measure"] = LOST
    check = _cross("plain", _all(guest, "plain"))
    assert not check.ok
    assert "only 2 decisive witness(es), 3 needed for plain" in check.message()
    for name in (evidence.KERNEL_LOG, evidence.QUERY_SEV, evidence.MEASUREMENT):
        assert name in check.message()


# -- MSR --------------------------------------------------------------------------------

def test_msr_eio_on_one_vcpu_is_unknown_and_sev_es_fails():
    one_eio = ("SEVMSR cpu=0 val= 0000000000000003\n"
               "SEVMSR cpu=1 err=dd: /dev/cpu/1/msr: Input/output error \nSEVMSR end cpus=2\n")
    guest = sev_guest("sev-es", msr=one_eio)
    ws = _all(guest, "sev-es")
    msr_w = next(w for w in ws if w.name == evidence.MSR)
    assert msr_w.answer == "unknown" and "cpu1: eio" in msr_w.evidence
    check = _cross("sev-es", ws)
    assert not check.ok and "SEV_STATUS MSR on every vCPU is required" in check.message()


def test_plain_control_on_kvm_decides_without_the_msr():
    """On a KVM host a plain guest's SEV_STATUS read faults (EIO): the plain
    control still has four decisive witnesses."""
    guest = plain_guest(msr=recorded("msr/guest-read-eio-2cpu.txt"))
    ws = _all(guest, "plain")
    assert [w.answer for w in ws].count("no") == 4
    assert _cross("plain", ws).ok


# -- host memory view ---------------------------------------------------------------------

def test_pmemsave_of_wrong_range_is_unknown():
    guest = plain_guest()
    w = witnesses.host_memory_view(guest, start=32 << 20, size=16 << 20)  # misses the marker page
    assert w.answer == "unknown", w.evidence
    past = witnesses.host_memory_view(guest, start=1 << 30, size=4 << 20)  # beyond RAM
    assert past.answer == "unknown", past.evidence


def test_marker_not_written_is_unknown():
    w = witnesses.host_memory_view(plain_guest(marker_ok=False))
    assert w.answer == "unknown" and not w.details["marker_written"]


def test_decoy_marker_on_plaintext_is_unknown_never_encrypted():
    w = witnesses.host_memory_view(plain_guest(), decoy=True)
    assert w.answer == "unknown", w.evidence


def test_short_dump_is_unknown(monkeypatch):
    guest = plain_guest()
    real = guest.qmp._dump
    monkeypatch.setattr(guest.qmp, "_dump", lambda s, n, f: real(s, n // 2, f))
    w = witnesses.host_memory_view(guest)
    assert w.answer == "unknown" and "wrong range" in w.evidence


def test_cleanup_failure_does_not_mask_the_answer():
    guest = plain_guest()
    real = guest.run

    def run(cmd, timeout=60.0):
        if cmd.startswith("rm -f"):
            raise timeout_error()
        return real(cmd, timeout)

    guest.run = run
    assert witnesses.host_memory_view(guest).answer == "no"


# -- the cross-check's own rules ------------------------------------------------------------

def test_sev_needs_a_host_side_witness():
    ws = _all(sev_guest("sev"), "sev")
    for w in ws:
        if w.host_side:
            w.encrypted = None
            w.evidence = "unknown: injected"
    check = _cross("sev", ws)
    assert not check.ok and "no host-side witness" in check.message()


def test_disagreement_fails_even_with_enough_answers():
    ws = _all(sev_guest("sev-es"), "sev-es")
    ws[0].encrypted = False
    check = _cross("sev-es", ws)
    assert not check.ok and "disagree" in check.message()


def test_sev_kind_rejects_an_sev_es_guest():
    check = _cross("sev", _all(sev_guest("sev-es"), "sev"))
    assert not check.ok and evidence.MSR in check.disagree


def test_failure_names_the_known_signature_first():
    """An SEV-ES guest whose log lacks the SEV-ES line while the MSR says active:
    the cross-check fails and the failure names the signature with its remedy."""
    guest = sev_guest("sev-es", dmesg=(recorded("sev-4.19-guest.log"), 0))  # an SEV-only era line
    answers = {w.name: w for w in _all(guest, "sev-es")}
    assert not _cross("sev-es", answers.values()).ok
    known = witnesses.diagnose(guest, answers)
    assert known.startswith("SEV signature guest-log-without-es: ") and "remedy: " in known


@pytest.mark.parametrize("fault", list(QMP_FAULTS))
def test_pmemsave_qmp_fault_is_unknown(fault):
    guest = plain_guest()
    guest.qmp.replies["pmemsave"] = QMP_FAULTS[fault]
    w = witnesses.host_memory_view(guest)
    assert w.answer == "unknown" and "pmemsave failed" in w.evidence


# -- query-sev and the launch measurement do not overstate (issue 21, item 4) --------------

def _query_sev_reply(name, **change):
    from evidence_doubles import edited, qmp_reply
    return edited(qmp_reply(f"qmp/{name}"), **change)


def _measure_reply(nbytes):
    import base64
    return {"data": base64.b64encode(bytes(range(nbytes))).decode()}


def test_query_sev_without_policy_is_unknown_not_a_decisive_not_es():
    guest = sev_guest("sev-es")
    guest.qmp.replies["query-sev"] = _query_sev_reply("sev-es-qemu7.2-query-sev-running.json", policy=None)
    w = witnesses.query_sev(guest, "sev-es", "1.55")
    assert (w.answer, w.es) == ("unknown", None) and "no policy" in w.evidence
    assert "reply lacks 'policy'" in w.details["problems"]
    check = _cross("sev-es", _all(guest, "sev-es"))
    assert evidence.QUERY_SEV in check.unknown and evidence.QUERY_SEV not in check.disagree


def test_query_sev_in_launch_secret_state_is_unknown_naming_it():
    guest = sev_guest("sev-es")
    from evidence_doubles import qmp_reply
    guest.qmp.replies["query-sev"] = qmp_reply("qmp/sev-es-qemu7.2-query-sev-launch-secret.json")
    w = witnesses.query_sev(guest, "sev-es", None)
    assert w.answer == "unknown" and w.es is None
    assert "state is 'launch-secret', expected 'running'" in w.evidence


def test_query_sev_api_mismatch_with_the_host_is_unknown_naming_it():
    w = witnesses.query_sev(sev_guest("sev-es"), "sev-es", "SEV API:1.51 build:3")
    assert w.answer == "unknown" and "differs from host firmware 1.51" in w.evidence
    assert witnesses.query_sev(sev_guest("sev-es"), "sev-es", "1.55").answer == "yes"


def test_query_sev_snp_type_for_a_launched_sev_es_guest_is_unknown():
    guest = sev_guest("sev-es")
    from evidence_doubles import qmp_reply
    guest.qmp.replies["query-sev"] = qmp_reply("qmp/snp-qemu9.1-query-sev-running.json")
    w = witnesses.query_sev(guest, "sev-es", "1.55")
    assert w.answer == "unknown" and "sev-type is 'sev-snp'" in w.evidence


def test_query_sev_policy_without_es_fails_the_sev_es_cross_check():
    """A guest launched for SEV-ES whose policy lacks the ES bit is a decisive "no"
    for ES: the cross-check fails naming query-sev, even with every other witness green."""
    guest = sev_guest("sev-es")
    guest.qmp.replies["query-sev"] = _query_sev_reply("sev-es-qemu9.1-query-sev-running.json", policy=1)
    w = witnesses.query_sev(guest, "sev-es", "1.55")
    assert (w.encrypted, w.es) == (True, False) and "lacks the ES bit" in w.evidence
    check = _cross("sev-es", _all(guest, "sev-es"))
    assert not check.ok and check.disagree == (evidence.QUERY_SEV,)


def test_query_sev_type_sev_with_es_policy_is_a_yes_for_es():
    """QEMU 9.1+ names SEV and SEV-ES guests alike sev-type "sev": not a "no"."""
    guest = sev_guest("sev-es")
    from evidence_doubles import qmp_reply
    guest.qmp.replies["query-sev"] = qmp_reply("qmp/sev-es-qemu9.1-query-sev-running.json")
    w = witnesses.query_sev(guest, "sev-es", "1.55")
    assert (w.encrypted, w.es) == (True, True)


@pytest.mark.parametrize("nbytes", [47, 49, 32, 1])
def test_measurement_blob_of_wrong_size_is_unknown(nbytes):
    guest = sev_guest("sev-es")
    guest.qmp.replies["query-sev-launch-measure"] = _measure_reply(nbytes)
    w = witnesses.launch_measurement(guest)
    assert w.answer == "unknown" and f"{nbytes} bytes" in w.evidence
    assert w.details == {"present": False, "length": nbytes}


def test_measurement_blob_of_48_bytes_is_yes():
    guest = sev_guest("sev-es")
    guest.qmp.replies["query-sev-launch-measure"] = _measure_reply(48)
    w = witnesses.launch_measurement(guest)
    assert (w.answer, w.es) == ("yes", None) and w.details == {"present": True, "length": 48}


def test_47_byte_blob_cannot_stand_in_for_the_host_side():
    """With query-sev and the memory view unable to answer, a 47-byte blob used to be
    the one host-side "yes" that let SEV-ES pass; now nothing host-side answers."""
    guest = sev_guest("sev-es")
    guest.qmp.replies["query-sev"] = QMP_FAULTS["CommandNotFound"]
    guest.qmp.replies["pmemsave"] = LOST
    guest.qmp.replies["query-sev-launch-measure"] = _measure_reply(47)
    check = _cross("sev-es", _all(guest, "sev-es"))
    assert not check.ok and "no host-side witness" in check.message()
    assert evidence.MEASUREMENT in check.unknown
    guest.qmp.replies["query-sev-launch-measure"] = _measure_reply(48)
    check = _cross("sev-es", _all(guest, "sev-es"))
    assert evidence.MEASUREMENT in check.decisive and "no host-side witness" not in check.message()
