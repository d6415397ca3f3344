"""The guest owner's steps decide: nothing is sealed to an unanchored PDH, and a
secret goes only to a launch whose measurement matches the policy.

The platforms: the real Rome chain (fixtures/sev-kat, AMD-signed: sealing must
go ahead) and chains made here (tests/test_attest_chain.py's ForgedPlatform:
refused). The firmware's answers come from a QMP double that records what the
owner sent; its measurement blobs are MACs over digests of the AmdSev OVMF
vector, keyed with the TIK the owner sealed.
"""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import pytest
from test_attest_chain import CERTS, foreign_cek, forged

from pytest_sev.attest.chain import ChainVerdict, Link
from pytest_sev.attest.errors import ChainNotAnchored, FormatError, ReleaseRefused
from pytest_sev.attest.launch_verify import MeasureVerdict, expected_blob
from pytest_sev.attest.measure import LaunchInputs, candidate_digests
from pytest_sev.attest.owner import (
    HARNESS_SECRET_GUID,
    OwnerSession,
    attested_launch,
    inject_secret,
    prepare,
    require_anchored,
    require_release,
)
from pytest_sev.attest.secret import parse_secret_table
from pytest_sev.attest.session import aes128_ctr

ROOT = Path(__file__).resolve().parents[1]
INPUTS = LaunchInputs(str(ROOT / "fixtures" / "sev-kat" / "sev-crate" / "measurement" / "ovmf_AmdSev_suffix.bin"),
                      2, "EPYC-v4", "/dev/null", "/dev/null", "console=ttyS0")
API, BUILD = (1, 51), 3
MNONCE = bytes(range(16))
SECRET = (HARNESS_SECRET_GUID, b"the owner's secret")


def _rome_caps() -> dict[str, str]:
    d = CERTS / "rome"
    return {"pdh": base64.b64encode((d / "pdh.cert").read_bytes()).decode(),
            "cert-chain": base64.b64encode(b"".join((d / f"{n}.cert").read_bytes() for n in ("pek", "oca", "cek"))).decode()}


@functools.lru_cache(maxsize=1)
def _digests() -> dict[str, bytes]:
    return {c.mode if c.vmsa in (None, "init2") else "legacy": c.digest for c in candidate_digests(INPUTS)}


class FirmwareQmp:
    """query-sev / query-sev-launch-measure answers for a launch that measured ``digest``; records every command."""

    def __init__(self, session: OwnerSession, digest: bytes, policy: int | None = None) -> None:
        self.blob = expected_blob(session.start.tik, *API, BUILD, session.policy if policy is None else policy,
                                  digest, MNONCE)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def execute(self, cmd: str, **args: Any) -> Any:
        self.sent.append((cmd, args))
        if cmd == "query-sev":
            return {"api-major": API[0], "api-minor": API[1], "build-id": BUILD, "policy": 0}
        if cmd == "query-sev-launch-measure":
            return {"data": base64.b64encode(self.blob).decode()}
        return {}

    @property
    def commands(self) -> list[str]:
        return [c for c, _ in self.sent]


def _session(tmp_path: Path, policy: int) -> OwnerSession:
    return prepare(_rome_caps(), policy, tmp_path / "owner")


# -- prepare: the chain first -----------------------------------------------------------------


def test_prepare_seals_to_an_amd_anchored_pdh(tmp_path: Path) -> None:
    """The real Rome chain reaches AMD's ARK: the session is sealed and written."""
    s = _session(tmp_path, 0x5)
    assert s.chain.ok and s.chain.generation == "rome" and s.policy == 0x5
    assert s.files.directory == tmp_path / "owner" and s.files.tik.read_bytes() == s.start.tik
    assert s.start.policy == 0x5


def test_prepare_takes_the_cek_file(tmp_path: Path) -> None:
    s = prepare(_rome_caps(), 0x1, tmp_path / "owner", cek=(CERTS / "rome" / "cek.cert").read_bytes())
    assert s.chain.ok
    with pytest.raises(FormatError, match="CEK file: 10 bytes"):
        prepare(_rome_caps(), 0x1, tmp_path / "other", cek=b"x" * 10)


def _refused(tmp_path: Path, caps: dict[str, str], cek: bytes | None = None) -> str:
    keydir = tmp_path / "owner"
    with pytest.raises(ChainNotAnchored) as err:
        prepare(caps, 0x5, keydir, cek=cek)
    assert not keydir.exists(), "a session was written for an unanchored PDH"
    return str(err.value)


def test_prepare_refuses_a_whole_chain_under_a_test_ark(tmp_path: Path) -> None:
    text = _refused(tmp_path, forged().capabilities())
    assert text.startswith("certificate chain not anchored to AMD's ARK: ASK -> CEK: FAILED (no ASK of naples")
    assert text.endswith("nothing is sealed to this PDH")


def test_prepare_refuses_a_pek_only_chain(tmp_path: Path) -> None:
    caps = _rome_caps()
    caps["cert-chain"] = base64.b64encode(b"".join((CERTS / "rome" / f"{n}.cert").read_bytes()
                                                   for n in ("pek", "oca"))).decode()
    assert "ASK -> CEK: FAILED (no CEK: the platform's chain holds none" in _refused(tmp_path, caps)


def test_prepare_refuses_a_foreign_cek_file(tmp_path: Path) -> None:
    assert "ASK -> CEK: FAILED" in _refused(tmp_path, _rome_caps(), cek=foreign_cek())


def test_prepare_refuses_a_broken_pdh_signature(tmp_path: Path) -> None:
    caps = _rome_caps()
    pdh = bytearray(base64.b64decode(caps["pdh"]))
    pdh[0x41C + 8 + 3] ^= 1
    caps["pdh"] = base64.b64encode(bytes(pdh)).decode()
    assert "not anchored to AMD's ARK: PEK -> PDH: FAILED (signature does not verify)" in _refused(tmp_path, caps)


def test_require_anchored_passes_an_anchored_chain(tmp_path: Path) -> None:
    require_anchored(_session(tmp_path, 0x1).chain)  # no error


# -- attested_launch: a secret only on the policy's own verdict ---------------------------------


@pytest.mark.parametrize("policy,measured", [(0x5, "sev-es"), (0x1, "sev"), (0x4, "sev-es"), (0x0, "sev")])
def test_secret_released_on_the_policys_match(tmp_path: Path, policy: int, measured: str) -> None:
    s = _session(tmp_path, policy)
    qmp = FirmwareQmp(s, _digests()[measured])
    v = attested_launch(qmp, s, INPUTS, [SECRET])
    assert v.status == measured and v.releases_secrets
    assert qmp.commands == ["query-sev", "query-sev-launch-measure", "sev-inject-launch-secret", "cont"]
    args = qmp.sent[2][1]
    header, payload = base64.b64decode(args["packet-header"]), base64.b64decode(args["secret"])
    table = parse_secret_table(aes128_ctr(s.start.tek, header[4:20], payload))
    assert {str(g): v for g, v in table.items()} == {SECRET[0]: SECRET[1]}


@pytest.mark.parametrize("policy,measured,status", [
    (0x5, "sev", "sev"),            # SEV-only match under an ES policy
    (0x4, "legacy", "sev-es"),      # control for the next: a legacy-VMSA ES match is still a match
    (0x1, "sev-es", "no-match"),    # an ES digest under a non-ES policy
])
def test_secret_follows_the_verdict(tmp_path: Path, policy: int, measured: str, status: str) -> None:
    s = _session(tmp_path, policy)
    qmp = FirmwareQmp(s, _digests()[measured])
    if status == "sev-es":
        assert attested_launch(qmp, s, INPUTS, [SECRET]).status == "sev-es"
        assert "sev-inject-launch-secret" in qmp.commands
        return
    with pytest.raises(ReleaseRefused, match=f"needs a {'sev-es' if policy & 4 else 'sev'} match, the verdict is {status}"):
        attested_launch(qmp, s, INPUTS, [SECRET])
    assert qmp.commands == ["query-sev", "query-sev-launch-measure"], "a secret (or cont) was sent"


def test_no_match_releases_nothing(tmp_path: Path) -> None:
    s = _session(tmp_path, 0x5)
    qmp = FirmwareQmp(s, b"\x44" * 32)
    with pytest.raises(ReleaseRefused, match="the verdict is no-match: launch measurement matches no expected digest"):
        attested_launch(qmp, s, INPUTS, [SECRET])
    assert "sev-inject-launch-secret" not in qmp.commands


def test_without_secrets_the_guest_just_runs(tmp_path: Path) -> None:
    """Measuring only: the verdict comes back and the guest is continued, whatever it says."""
    s = _session(tmp_path, 0x5)
    for digest, status in ((_digests()["sev"], "sev"), (b"\x44" * 32, "no-match")):
        qmp = FirmwareQmp(s, digest)
        assert attested_launch(qmp, s, INPUTS).status == status
        assert qmp.commands == ["query-sev", "query-sev-launch-measure", "cont"]


def _verdict(policy: int, status: str = "sev-es") -> MeasureVerdict:
    cand = next(c for c in candidate_digests(INPUTS) if c.mode == status)
    return MeasureVerdict(status, cand, policy, (), "test", b"\0" * 48)  # type: ignore[arg-type]


def test_inject_refuses_a_verdict_of_another_policy(tmp_path: Path) -> None:
    s = _session(tmp_path, 0x5)
    qmp = FirmwareQmp(s, b"\0" * 32)
    with pytest.raises(ReleaseRefused, match="the verdict is for policy 0x7, the session's is 0x5"):
        inject_secret(qmp, s, _verdict(0x7), [SECRET])
    assert qmp.sent == []
    inject_secret(qmp, s, _verdict(0x5), [SECRET])
    assert qmp.commands == ["sev-inject-launch-secret"]


def test_inject_refuses_an_unanchored_session(tmp_path: Path) -> None:
    """An OwnerSession built by hand around a chain that does not reach the ARK releases nothing."""
    good = _session(tmp_path, 0x5)
    unanchored = ChainVerdict((Link("ASK", "CEK", False, "forged"),), None, good.chain.pdh)
    s = OwnerSession(0x5, unanchored, good.start, good.files)
    qmp = FirmwareQmp(s, _digests()["sev-es"])
    with pytest.raises(ReleaseRefused, match="no secret released: certificate chain not anchored to AMD's ARK: "
                                             "ASK -> CEK: FAILED \\(forged\\)"):
        require_release(s, _verdict(0x5))
    with pytest.raises(ReleaseRefused):
        attested_launch(qmp, s, INPUTS, [SECRET])
    assert "sev-inject-launch-secret" not in qmp.commands


def test_check_measurement_uses_the_given_candidates(tmp_path: Path) -> None:
    """Candidates given by the caller replace the computed ones (a digest only they hold matches)."""
    from pytest_sev.attest.measure import Candidate
    s = _session(tmp_path, 0x5)
    mine = Candidate("sev-es", "init2", b"\x55" * 32, INPUTS, "given")
    qmp = FirmwareQmp(s, mine.digest)
    from pytest_sev.attest.owner import check_measurement
    v, blob = check_measurement(qmp, s, INPUTS, [mine])
    assert v.matched is mine and v.tried == (f"sev-es (init2 VMSA) {'55' * 8}... [given]",) and blob == qmp.blob
    v, _ = check_measurement(qmp, s, INPUTS)
    assert v.status == "no-match"
