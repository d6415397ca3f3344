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


def _b64(n):
    return base64.b64encode(bytes(range(n))).decode()


@pytest.mark.parametrize(
    "data,length",
    [(_b64(20), 20), (_b64(47), 47), (_b64(49), 49), (_b64(96), 96), (_b64(0), None), ("", None),
     ("not base64!!", None), (None, None)],
    ids=["20-bytes", "47-bytes", "49-bytes", "96-bytes", "empty-b64", "empty", "not-base64", "missing"],
)
def test_launch_measure_other_than_48_bytes_is_not_present(data, length):
    """Only the 48-byte blob (32-byte MAC + 16-byte nonce) is a launch measurement."""
    m = Q.evaluate_launch_measure({"return": {"data": data}})
    assert m.present is False and m.length == length and m.measurement is None and not m.not_available
    assert m.problem


def test_launch_measure_47_bytes_names_the_size():
    m = Q.evaluate_launch_measure({"return": {"data": _b64(47)}})
    assert "47 bytes" in m.problem and "48" in m.problem and "no launch measurement" in m.describe()


def test_launch_measure_exactly_48_bytes_splits_mac_and_nonce():
    m = Q.evaluate_launch_measure({"return": {"data": _b64(48)}})
    assert m.present and m.length == 48 and m.problem is None
    assert m.measurement == bytes(range(32)) and m.mnonce == bytes(range(32, 48))
    assert m.describe() == "launch measurement present (48 bytes)"


# -- query-sev as a witness: what the reply proves, and no more --------------------------

def _answer(reply, expect="sev-es", **kw):
    return Q.answer_query_sev(Q.evaluate_query_sev(reply, expect=expect, **kw))


def _with(name, **change):
    from evidence_doubles import edited
    return edited(rec(name)["return"], **change)


@pytest.mark.parametrize("name,expect,es", [
    ("sev-es-qemu7.2-query-sev-running.json", "sev-es", True),
    ("sev-es-qemu9.1-query-sev-running.json", "sev-es", True),  # sev-type "sev": SEV *or* SEV-ES
    ("sev-qemu7.2-query-sev-running.json", "sev", False),
])
def test_healthy_reply_is_a_decisive_yes(name, expect, es):
    a = _answer(rec(name), expect, host_api="1.55")
    assert (a.encrypted, a.es) == (True, es) and a.decisive, a.reason
    assert not a.reason.startswith("unknown")


def test_missing_policy_is_unknown_never_not_es():
    a = _answer(_with("sev-es-qemu7.2-query-sev-running.json", policy=None))
    assert (a.encrypted, a.es) == (None, None) and not a.decisive
    assert a.reason.startswith("unknown: ") and "no policy" in a.reason


def test_missing_policy_on_plain_sev_is_unknown_too():
    a = _answer(_with("sev-qemu7.2-query-sev-running.json", policy=None), "sev")
    assert (a.encrypted, a.es) == (None, None)


def test_launch_secret_state_is_unknown_naming_it():
    a = _answer(rec("sev-es-qemu7.2-query-sev-launch-secret.json"))
    assert (a.encrypted, a.es) == (None, None)
    assert "state is 'launch-secret', expected 'running'" in a.reason


def test_launch_secret_is_decisive_when_that_state_is_expected():
    v = Q.evaluate_query_sev(rec("sev-es-qemu7.2-query-sev-launch-secret.json"), expect="sev-es",
                             expect_state="launch-secret")
    a = Q.answer_query_sev(v)
    assert (a.encrypted, a.es) == (True, True) and v.expect_state == "launch-secret"


@pytest.mark.parametrize("state", [None, "uninit", "launch-update", "send-update", "exploded"])
def test_any_other_state_is_unknown(state):
    a = _answer(_with("sev-es-qemu7.2-query-sev-running.json", state=state))
    assert a.encrypted is None and a.es is None, a.reason


def test_api_mismatch_with_the_host_is_unknown_naming_it():
    a = _answer(rec("sev-es-qemu7.2-query-sev-running.json"), host_api="1.51")
    assert (a.encrypted, a.es) == (None, None)
    assert "guest firmware API 1.55 differs from host firmware 1.51" in a.reason
    same = _answer(rec("sev-es-qemu7.2-query-sev-running.json"), host_api="1.55")
    assert (same.encrypted, same.es) == (True, True)


def test_missing_api_is_unknown():
    a = _answer(_with("sev-es-qemu7.2-query-sev-running.json", api_minor=None))
    assert a.encrypted is None and "api-major/api-minor" in a.reason


@pytest.mark.parametrize("expect", ["sev", "sev-es"])
def test_snp_sev_type_for_a_launched_sev_guest_is_unknown_naming_it(expect):
    a = _answer(rec("snp-qemu9.1-query-sev-running.json"), expect)
    assert (a.encrypted, a.es) == (None, None)
    assert "sev-type is 'sev-snp'" in a.reason


def test_unknown_sev_type_is_unknown():
    a = _answer(_with("sev-es-qemu9.1-query-sev-running.json", sev_type="sev-tdx"))
    assert a.encrypted is None and "'sev-tdx'" in a.reason


def test_policy_without_es_for_a_launched_sev_es_guest_is_a_decisive_no():
    a = _answer(rec("sev-qemu7.2-query-sev-running.json"), "sev-es")
    assert (a.encrypted, a.es) == (True, False) and a.decisive
    assert "policy 0x1 lacks the ES bit" in a.reason


def test_sev_type_sev_with_a_policy_without_es_is_a_no_for_es():
    """QEMU 9.1+ reports sev-type "sev" for SEV and SEV-ES alike (QAPI SevGuestType):
    the policy's ES bit, not the type, decides."""
    a = _answer(_with("sev-es-qemu9.1-query-sev-running.json", policy=1), "sev-es")
    assert (a.encrypted, a.es) == (True, False)


def test_policy_without_es_decides_in_any_state():
    """The policy is fixed at LAUNCH_START: a guest asked for without ES is not SEV-ES,
    whatever state QEMU reports now."""
    a = _answer(_with("sev-es-qemu7.2-query-sev-launch-secret.json", policy=1), "sev-es")
    assert (a.encrypted, a.es) == (True, False)


def test_es_policy_for_a_launched_sev_guest_is_a_decisive_yes_for_es():
    a = _answer(rec("sev-es-qemu7.2-query-sev-running.json"), "sev")
    assert (a.encrypted, a.es) == (True, True) and "sets the ES bit" in a.reason


def test_policy_with_unknown_bits_is_unknown():
    a = _answer(_with("sev-es-qemu7.2-query-sev-running.json", policy=0x45))
    assert a.encrypted is None and "outside the known mask" in a.reason


def test_malformed_field_is_unknown():
    a = _answer(_with("sev-es-qemu7.2-query-sev-running.json", handle="1"))
    assert a.encrypted is None and "'handle' is not an integer" in a.reason


@pytest.mark.parametrize("expect", ["plain", "sev", "sev-es"])
def test_enabled_false_is_a_decisive_no(expect):
    a = _answer(rec("plain-qemu7.2-tcg-query-sev.json"), expect)
    assert (a.encrypted, a.es) == (False, False) and "not enabled" in a.reason


@pytest.mark.parametrize("name,es", [("sev-es-qemu7.2-query-sev-running.json", True),
                                     ("sev-qemu7.2-query-sev-running.json", False),
                                     ("snp-qemu9.1-query-sev-running.json", None)])
def test_enabled_on_the_plain_control_is_a_decisive_yes(name, es):
    a = _answer(rec(name), "plain")
    assert (a.encrypted, a.es) == (True, es) and "plain control" in a.reason


@pytest.mark.parametrize("reply", [{"error": {"class": "GenericError", "desc": "boom"}},
                                   {"state": "running", "policy": 5}, "garbage"])
@pytest.mark.parametrize("expect", ["plain", "sev-es"])
def test_no_usable_reply_is_unknown(reply, expect):
    a = _answer(reply, expect)
    assert (a.encrypted, a.es) == (None, None) and a.reason.startswith("unknown: no usable reply")


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
