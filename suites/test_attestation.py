"""Attested launch: the harness plays the guest owner.

It computes the launch digest it expects for exactly what it launches, gives
QEMU a session only the owner and the PSP can open, checks the firmware's
measurement MAC against the SEV and SEV-ES digests (the SEV-ES digest covers
one VMSA per vCPU, so a match *proves* SEV-ES), delivers a secret bound to
that measurement, and keeps a digest history that flags silent changes.

- ``test_expected_digests`` runs in every mode (offline: this host's OVMF);
- ``test_reconstructed_launch`` replays a RECONSTRUCTED SEV-ES launch
  (fixtures/recorded/attest/sev-es-launch.json: PSP answers from a firmware
  double, launched inputs with a known-answer digest) through steps 3-6;
- ``test_attested_launch`` launches real SEV / SEV-ES guests where the host
  can (the markers apply the mode table: skip in auto, fail under --sev-es).
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import allure
import pytest

from pytest_sev.attest import history
from pytest_sev.attest.amdroots import load_all_roots
from pytest_sev.attest.chain import from_qmp, verify_chain
from pytest_sev.attest.launch_verify import parse_measure_blob
from pytest_sev.attest.measure import LaunchInputs, candidate_digests, ovmf_facts
from pytest_sev.attest.owner import HARNESS_SECRET_GUID, OwnerSession, check_measurement, inject_secret
from pytest_sev.attest.report import judge_report, parse_attestation_report
from pytest_sev.attest.secret import parse_secret_table
from pytest_sev.attest.session import LaunchStart, aes128_ctr, parse_session
from pytest_sev.attest.session_files import SessionFiles
from pytest_sev.guest.specs import ovmf_firmware
from pytest_sev.reporting.runner_name import runner_name

pytestmark = [allure.epic("pytest-sev"), allure.feature("attestation")]

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "fixtures" / "recorded" / "attest" / "sev-es-launch.json"
SEV_ES_VCPUS = 2  # what suites' SEV-ES guests get (GuestSpec default)


def _history_file(config: pytest.Config) -> Path:
    return Path(config.rootpath) / "reports" / "attest" / "digest-history.jsonl"


def _attach_json(name: str, data: Any) -> None:
    allure.attach(json.dumps(data, indent=1, default=str), name=name, attachment_type=allure.attachment_type.JSON)


@pytest.mark.plain
def test_expected_digests(run_config, request):
    """The SEV and SEV-ES digests of what this run's SEV-ES guest would be
    launched with (its OVMF, vCPUs, -cpu EPYC), kept in the digest history;
    a change against this runner's last entry names the inputs that changed."""
    fw = ovmf_firmware(run_config.ovmf_code, run_config.ovmf_vars)
    inputs = LaunchInputs(str(fw.code), SEV_ES_VCPUS, "EPYC")
    cands = candidate_digests(inputs)
    expected = {c.label: c.digest.hex() for c in cands}
    _attach_json("expected launch digests", {"inputs": inputs.describe(), "digests": expected})
    assert all(len(bytes.fromhex(d)) == 32 for d in expected.values())
    sev_es = [c for c in cands if c.mode == "sev-es"]
    if sev_es:  # the SEV-ES digest covers the VMSAs: it can never equal the SEV one
        assert all(c.digest != cands[0].digest for c in sev_es)
    entry = history.DigestEntry(runner=runner_name(), kind="expected", expected=expected,
                                inputs={"ovmf": str(fw.code), "ovmf_sha256": ovmf_facts(str(fw.code)).sha256,
                                        "vcpus": str(SEV_ES_VCPUS), "vcpu_type": "EPYC"})
    changed = history.record(_history_file(request.config), entry)
    if changed:
        _attach_json("launch digest changed", changed)
        print("\nlaunch digest changed against the last run: " + "; ".join(changed))


class RecordedQmp:
    """QMP replies from the recording; commands that change state are kept."""

    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies, self.sent = replies, []

    def execute(self, cmd: str, **args: Any) -> Any:
        self.sent.append((cmd, args))
        if cmd in ("sev-inject-launch-secret", "cont"):
            return {}
        return self.replies[cmd]


@pytest.mark.plain
def test_reconstructed_launch(tmp_path, request):
    """Steps 3-6 on a reconstructed SEV-ES launch (labelled so in the fixture)."""
    rec = json.loads(RECORDED.read_text())
    assert rec["provenance"] == "reconstructed"
    qmp = RecordedQmp(rec["qmp"])
    caps = rec["qmp"]["query-sev-capabilities"]
    pdh, chain = from_qmp(caps["pdh"], caps["cert-chain"])
    # the double's chain is signed by its own CEK, not AMD's: verified up to the PEK only
    verdict_chain = verify_chain(pdh, chain, load_all_roots())
    assert verdict_chain.ok and verdict_chain.anchored_to == "PEK", verdict_chain.describe()

    owner = rec["owner"]
    start = LaunchStart(rec["policy"], bytes.fromhex(owner["tek"]), bytes.fromhex(owner["tik"]),
                        base64.b64decode(owner["dh_cert_b64"]), parse_session(base64.b64decode(owner["session_b64"])))
    session = OwnerSession(rec["policy"], verdict_chain, start, SessionFiles(tmp_path, *(tmp_path / n for n in "abcde")))
    i = rec["inputs"]
    inputs = LaunchInputs(str(ROOT / i["ovmf"]), i["vcpus"], i["vcpu_type"], i["kernel"], i["initrd"], i["append"])

    # step 3: the firmware's MAC proves the SEV-ES digest (known answer 0dccbcab...de91)
    verdict, blob = check_measurement(qmp, session, inputs)
    _attach_json("measurement verdict", {"status": verdict.status, "describe": verdict.describe()})
    assert verdict.sev_es_proven, verdict.describe()
    assert verdict.matched is not None and verdict.matched.digest.hex().startswith("0dccbcab")

    # step 4: the attestation report, signed by the PEK of the verified chain, fresh and of this digest
    rep = rec["qmp"]["query-sev-attestation-report"]
    pek = next(c for c in chain if c.name == "PEK")
    report_verdict = judge_report(parse_attestation_report(rep["data"]), pek, base64.b64decode(rep["mnonce"]),
                                  candidate_digests(inputs))
    assert report_verdict.ok and report_verdict.matched is not None, report_verdict

    # step 5: the secret, sealed with the TEK and bound to this measurement (self-consistency: our own unsealing)
    secret = os.urandom(24)
    packet = inject_secret(qmp, session, blob, [(HARNESS_SECRET_GUID, secret)])
    assert qmp.sent[-1][0] == "sev-inject-launch-secret"
    iv = packet.header[4:20]
    table = parse_secret_table(aes128_ctr(start.tek, iv, packet.payload))
    assert table[next(iter(table))] == secret and str(next(iter(table))) == HARNESS_SECRET_GUID
    assert parse_measure_blob(rec["qmp"]["query-sev-launch-measure"]["data"]).to_bytes() == blob

    # step 6: the history flags a changed digest with the input that changed
    hist = tmp_path / "digest-history.jsonl"
    first = history.DigestEntry("recorded", "sev-es", {verdict.matched.label: verdict.matched.digest.hex()},
                                {"ovmf": i["ovmf"], "vcpus": str(i["vcpus"])}, reported=verdict.matched.label)
    assert history.record(hist, first) == []
    later = history.DigestEntry("recorded", "sev-es", {verdict.matched.label: "00" * 32},
                                {"ovmf": i["ovmf"], "vcpus": "8"}, reported="no-match")
    changed = history.record(hist, later)
    assert any("digest changed" in c for c in changed) and "input vcpus: 4 -> 8" in changed


@pytest.mark.qemu
@pytest.mark.parametrize("kind", [pytest.param("sev-es", marks=pytest.mark.sev_es),
                                  pytest.param("sev", marks=pytest.mark.sev)])
def test_attested_launch(kind, run_config, host, guest_factory, tmp_path):
    """A real launch: the platform's chain, the owner's session, the guest
    started paused, the measurement proven, a secret injected and read back."""
    from pytest_sev.attest.owner import attested_launch, prepare
    from pytest_sev.guest.specs import cbitpos_of, sev_spec
    from pytest_sev.host.qmp_probe import query_sev_capabilities

    answer = query_sev_capabilities(run_config.qemu, "kvm")
    if not answer.ok or answer.result is None:
        pytest.fail(f"query-sev-capabilities failed on an SEV host: {answer.error_class} {answer.error_desc}",
                    pytrace=False)
    spec = sev_spec(run_config, kind, cbitpos_of(host), memory_mib=1024)
    assert spec.sev is not None
    session = prepare(answer.result, spec.sev.policy, tmp_path / "owner")
    _attach_json("platform chain", session.chain.describe())
    inputs = LaunchInputs(str(spec.firmware.code), spec.vcpus, spec.cpu or "EPYC", vmsa="legacy")
    secret = os.urandom(32)
    verdicts = []

    def before_boot(qmp) -> None:
        verdicts.append(attested_launch(qmp, session, inputs, [(HARNESS_SECRET_GUID, secret)]))

    guest = guest_factory(spec.with_(sev=spec.sev.with_session(session.files.dh_cert, session.files.session),
                                     paused=True), before_boot=before_boot)
    verdict = verdicts[0]
    _attach_json("measurement verdict", {"status": verdict.status, "describe": verdict.describe()})
    assert verdict.status == kind, verdict.describe()
    out, status = guest.run(f"cat /sys/kernel/security/secrets/coco/{HARNESS_SECRET_GUID} | od -An -tx1 | tr -d ' \\n'")
    if status != 0:
        pytest.skip("the guest has no efi_secret area (needs OVMF from OvmfPkg/AmdSev and CONFIG_EFI_SECRET): "
                    f"{out.strip()[:200]}")
    assert out.strip() == secret.hex()
