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


# -- SEV-SNP guest policy --------------------------------------------------------------

def test_snp_default_is_qemus_smt_plus_reserved_bit():
    assert P.SNP_DEFAULT_POLICY == 0x30000 == P.snp_policy_for()
    assert P.snp_policy_for(allow_debug=True) == 0xB0000
    assert P.snp_policy_problem(P.SNP_DEFAULT_POLICY) is None


@pytest.mark.parametrize("policy", [0x20000, 0x30000, 0x1F0000, 0x3FFFFFF, 0x21F05])
def test_snp_policies_with_bit_17_and_known_bits_pass(policy):
    assert P.snp_policy_problem(policy) is None


@pytest.mark.parametrize("policy, msg", [
    (0x10000, "lacks bit 17 (0x20000)"),
    (0x0, "lacks bit 17"),
    (0x4030000, "unknown bits 0x4000000"),
    (0x30000 | 1 << 63, "unknown bits 0x8000000000000000"),
    (-1, "not a 64-bit value"),
    (1 << 64, "not a 64-bit value"),
    (True, "not an integer"),
])
def test_snp_policy_problems_are_one_line(policy, msg):
    problem = P.snp_policy_problem(policy)
    assert problem is not None and msg in problem and "\n" not in problem


@pytest.mark.parametrize("policy, text", [
    (0x30000, "0x30000: SMT allowed, debug off, single socket off, ABI >= 0.0"),
    (0x20000, "0x20000: SMT not allowed, debug off, single socket off, ABI >= 0.0"),
    (0xB0000, "0xb0000: SMT allowed, debug on, single socket off, ABI >= 0.0"),
    (0x130135, "0x130135: SMT allowed, debug off, single socket on, ABI >= 1.53"),
])
def test_describe_snp_policy_names_smt_debug_single_socket(policy, text):
    assert P.describe_snp_policy(policy) == text
