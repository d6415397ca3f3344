"""QMP: query-sev verdicts, launch measurement, capability errors, on recorded replies."""

import base64
import json
import pathlib

import pytest

from pytest_sev.sev import qmp_sev as Q

REC = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "recorded" / "guest" / "qmp"


def rec(name):
    return json.loads((REC / name).read_text())


def test_real_plain_reply_from_this_machine():
    reply = rec("plain-qemu7.2-tcg-query-sev.json")
    assert reply["return"] == {"enabled": False, "state": "uninit", "policy": 0, "handle": 0,
                               "api-major": 0, "api-minor": 0, "build-id": 0}
    v = Q.evaluate_query_sev(reply, expect="plain")
    assert v.ok and v.enabled is False
    bad = Q.evaluate_query_sev(reply, expect="sev-es")
    assert not bad.ok
    assert any("not enabled" in p for p in bad.problems)
    assert any("'uninit'" in p for p in bad.problems)


def test_sev_es_running_ok_and_bare_form():
    reply = rec("sev-es-qemu7.2-query-sev-running.json")
    for form in (reply, reply["return"]):
        v = Q.evaluate_query_sev(form, expect="sev-es", host_api="1.55")
        assert v.ok, v.problems
        assert v.policy == 5 and v.es_bit is True and v.api == (1, 55) and v.api_compared


def test_sev_es_reply_judged_as_sev_is_wrong():
    v = Q.evaluate_query_sev(rec("sev-es-qemu7.2-query-sev-running.json"), expect="sev")
    assert not v.ok and any("sets the ES bit" in p for p in v.problems)


def test_sev_reply_judged_as_sev_es_is_wrong():
    v = Q.evaluate_query_sev(rec("sev-qemu7.2-query-sev-running.json"), expect="sev-es")
    assert not v.ok and any("lacks the ES bit" in p for p in v.problems)
    assert Q.evaluate_query_sev(rec("sev-qemu7.2-query-sev-running.json"), expect="sev").ok


def test_api_mismatch_and_unknown_host():
    reply = rec("sev-es-qemu7.2-query-sev-running.json")
    v = Q.evaluate_query_sev(reply, expect="sev-es", host_api="SEV API:1.51 build:3")
    assert any("1.55 differs from host firmware 1.51" in p for p in v.problems)
    for host in (None, "", "unknown"):
        v = Q.evaluate_query_sev(reply, expect="sev-es", host_api=host)
        assert v.ok and not v.api_compared


def test_minor_is_an_integer_not_a_fraction():
    reply = {"enabled": True, "api-major": 1, "api-minor": 5, "build-id": 1, "policy": 5,
             "state": "running", "handle": 1}
    assert not Q.evaluate_query_sev(reply, host_api="1.50").ok
    assert Q.parse_api_version("1.55") == (1, 55)
    with pytest.raises(ValueError):
        Q.parse_api_version("n/a")


def test_qemu91_sev_type():
    v = Q.evaluate_query_sev(rec("sev-es-qemu9.1-query-sev-running.json"), expect="sev-es")
    assert v.ok and v.sev_type == "sev"
    snp = Q.evaluate_query_sev(rec("snp-qemu9.1-query-sev-running.json"), expect="sev-es")
    assert not snp.ok and snp.sev_type == "sev-snp" and snp.snp_policy == 0x30000
    assert any("sev-snp" in p for p in snp.problems)


def test_launch_secret_state():
    reply = rec("sev-es-qemu7.2-query-sev-launch-secret.json")
    assert not Q.evaluate_query_sev(reply, expect="sev-es").ok
    assert Q.evaluate_query_sev(reply, expect="sev-es", expect_state="launch-secret").ok


def test_malformed_and_error_replies():
    v = Q.evaluate_query_sev({"error": {"class": "GenericError", "desc": "boom"}})
    assert not v.ok and v.enabled is None and "boom" in v.problems[0]
    v = Q.evaluate_query_sev({"enabled": "yes", "state": "exploded", "policy": "5"})
    assert not v.ok
    assert any("not a boolean" in p for p in v.problems)
    assert any("unknown state" in p for p in v.problems)
    assert any("not an integer" in p for p in v.problems)
    with pytest.raises(ValueError):
        Q.evaluate_query_sev({}, expect="snp")


def test_plain_expected_but_enabled():
    v = Q.evaluate_query_sev(rec("sev-es-qemu7.2-query-sev-running.json"), expect="plain")
    assert not v.ok and "expected to be plain" in v.problems[0]


def test_launch_measure_48_bytes():
    m = Q.evaluate_launch_measure(rec("sev-es-qemu7.2-query-sev-launch-measure.json"))
    assert m.present and m.length == 48 and len(m.measurement) == 32 and len(m.mnonce) == 16


def test_launch_measure_not_available_recorded():
    m = Q.evaluate_launch_measure(rec("plain-qemu7.2-tcg-query-sev-launch-measure.json"))
    assert not m.present and m.not_available


@pytest.mark.parametrize(
    "data,present,length",
    [(base64.b64encode(b"x" * 20).decode(), True, 20), ("", False, None),
     ("not base64!!", False, None), (None, False, None)],
)
def test_launch_measure_shapes(data, present, length):
    m = Q.evaluate_launch_measure({"return": {"data": data}})
    assert m.present is present and m.length == length and m.measurement is None


def test_capability_errors_every_era():
    codes = [Q.classify_capabilities_error(e["error"]).code
             for e in rec("query-sev-capabilities-errors.json")]
    assert codes == ["no-kvm", "kvm-sev-disabled", "dev-sev", "dev-sev",
                     "sev-unavailable", "qemu-without-sev"]


def test_capability_error_recorded_and_other_forms():
    c = Q.classify_capabilities_error(rec("plain-qemu7.2-tcg-query-sev-capabilities.json"))
    assert c.code == "no-kvm" and "KVM" in c.describe()
    assert Q.classify_capabilities_error("SEV is not enabled in KVM").code == "kvm-sev-disabled"
    assert Q.classify_capabilities_error({"class": "CommandNotFound",
                                          "desc": "The command query-sev-capabilities has not been found"}
                                         ).code == "command-not-found"
    assert Q.classify_capabilities_error("something else").code == "unknown"

    class ExecuteError(Exception):
        error_class = "GenericError"

    assert Q.classify_capabilities_error(ExecuteError("KVM not enabled")).code == "no-kvm"
