"""Guest policy: AMD launch-qemu.sh defaults and contradictions."""

import pytest

from pytest_sev.sev import policy as P


@pytest.mark.parametrize(
    "mode,debug,expected",
    [("sev", False, 0x1), ("sev", True, 0x0), ("sev-es", False, 0x5), ("sev-es", True, 0x4)],
)
def test_policy_for_matches_amd_script(mode, debug, expected):
    assert P.policy_for(mode, debug) == expected


def test_policy_for_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown SEV mode"):
        P.policy_for("sev-snp")


def test_bit_table():
    assert [(m, n) for m, n, _ in P.POLICY_BITS] == [
        (0x1, "NODBG"), (0x2, "NOKS"), (0x4, "ES"), (0x8, "NOSEND"), (0x10, "DOMAIN"), (0x20, "SEV")]
    assert P.KNOWN_MASK == 0x3F


@pytest.mark.parametrize("mask,name", [(m, n) for m, n, _ in P.POLICY_BITS])
def test_decode_each_bit(mask, name):
    assert P.decode_policy(mask) == [name]


def test_decode_combined_and_unknown():
    assert P.decode_policy(0x5) == ["NODBG", "ES"]
    assert P.decode_policy(0) == []
    assert P.decode_policy(0x41) == ["NODBG", "bit6"]
    with pytest.raises(ValueError):
        P.decode_policy(-1)


@pytest.mark.parametrize("policy,mode", [(0x1, "sev"), (0x0, "sev"), (0x3F & ~0x4, "sev"),
                                         (0x5, "sev-es"), (0x4, "sev-es"), (0x3F, "sev-es")])
def test_check_policy_accepts(policy, mode):
    P.check_policy(policy, mode)


@pytest.mark.parametrize(
    "policy,mode,msg",
    [
        (0x5, "sev", "sets the ES bit"),
        (0x4, "sev", "sets the ES bit"),
        (0x1, "sev-es", "lacks the ES bit"),
        (0x0, "sev-es", "lacks the ES bit"),
        (0x45, "sev-es", "outside the known mask"),
        (0x10000, "sev", "outside the known mask"),
        (-1, "sev", "negative"),
        (True, "sev", "not an integer"),
        (0x1, "plain", "unknown SEV mode"),
    ],
)
def test_check_policy_contradictions(policy, mode, msg):
    with pytest.raises(ValueError, match=msg) as exc:
        P.check_policy(policy, mode)
    assert "\n" not in str(exc.value)
