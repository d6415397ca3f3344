"""Attested launch: the harness plays the guest owner.

It computes the launch digest it expects for exactly what it launches, gives
QEMU a session only the owner and the PSP can open, checks the firmware's
measurement MAC against the SEV and SEV-ES digests (the SEV-ES digest covers
one VMSA per vCPU, so a match *proves* SEV-ES), delivers a secret bound to
that measurement, and keeps a digest history that flags silent changes.

- ``test_expected_digests`` runs in every mode (offline: this host's OVMF,
  each digest also computed by sev-snp-measure's command line); the digest
  history fails the test when a digest changed while its inputs did not;
- ``test_reconstructed_launch`` replays a RECONSTRUCTED SEV-ES launch
  (fixtures/recorded/attest/sev-es-launch.json: PSP answers from a firmware
  double, launched inputs with a known-answer digest): the owner refuses it
  (the double's chain does not reach AMD's ARK), and steps 3-6 are then
  replayed through the lower-level calls, labelled as not an attested launch;
- ``test_secret_reaches_guest`` runs the guest's side of secret delivery on a
  plain guest: the real AmdSev OVMF and the guest kernel's ``efi_secret``
  read the table the owner built (QEMU's generic loader puts it where the PSP
  would decrypt it); it needs the AmdSev OVMF and a kernel with
  CONFIG_EFI_SECRET, and skips naming the command that builds what is missing;
- ``test_attested_launch`` launches real SEV / SEV-ES guests where the host
  can (the markers apply the mode table: skip in auto, fail under --sev-es),
  on the AmdSev OVMF with ``kernel-hashes=on`` when there is one; it fails
  before sealing when the platform's chain does not reach AMD's ARK (give
  AMD's signed CEK with ``--sev-cek`` where the exported one is unsigned),
  and the owner injects the secret only on the verdict the policy asks for.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import allure
import pytest

from pytest_sev.attest import history
from pytest_sev.attest.amdroots import load_all_roots
from pytest_sev.attest.chain import from_qmp, verify_chain
from pytest_sev.attest.errors import ChainNotAnchored, ReleaseRefused
from pytest_sev.attest.launch_verify import parse_measure_blob
from pytest_sev.attest.measure import Candidate, LaunchInputs, candidate_digests, ovmf_facts
from pytest_sev.attest.owner import HARNESS_SECRET_GUID, OwnerSession, check_measurement, inject_secret, prepare
from pytest_sev.attest.report import judge_report, parse_attestation_report
from pytest_sev.attest.secret import SECRET_TABLE_GUID, build_secret_table, new_launch_secret, parse_secret_table
from pytest_sev.attest.session import LaunchStart, aes128_ctr, parse_session
from pytest_sev.attest.session_files import SessionFiles
from pytest_sev.build.kconfig import secret_notes
from pytest_sev.cache import file_digest
from pytest_sev.guest.specs import amdsev_firmware, ovmf_firmware, plain_spec, secret_delivery_spec
from pytest_sev.images.default_kernel import default_kernel, kernel_config
from pytest_sev.proofs.guest_secrets import delivery_problems, read_guest_secrets
from pytest_sev.reporting.runner_name import runner_name

pytestmark = [allure.epic("pytest-sev"), allure.feature("attestation")]

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "fixtures" / "recorded" / "attest" / "sev-es-launch.json"
SEV_ES_VCPUS = 2  # what suites' SEV-ES guests get (GuestSpec default)
#: a second entry beside the harness's own, so the table has more than one
SECOND_SECRET_GUID = "736869e5-84f0-4973-92ec-06879ce3da0b"
BUILD_AMDSEV = "python -m pytest_sev build ovmf-amdsev (then --ovmf-amdsev FILE), or --components ovmf-amdsev=build"
BUILD_KERNEL = "--components kernel=build (fixtures/kernel/efi-secret.config) or --guest-kernel with CONFIG_EFI_SECRET=y"


def _history_file(config: pytest.Config) -> Path:
    return Path(config.rootpath) / "reports" / "attest" / "digest-history.jsonl"


def _attach_json(name: str, data: Any) -> None:
    allure.attach(json.dumps(data, indent=1, default=str), name=name, attachment_type=allure.attachment_type.JSON)


def _sev_snp_measure(inputs: LaunchInputs, mode: str) -> str:
    """The digest sev-snp-measure's command line prints for *inputs* (an independent process
    and front end; ``seves`` is its QEMU, i.e. init2, VMSA layout)."""
    ssm = shutil.which("sev-snp-measure", path=os.path.dirname(sys.executable)) or "sev-snp-measure"
    argv = [ssm, "--mode", mode, "--vcpus", str(inputs.vcpus), "--vcpu-type", inputs.vcpu_type, "--ovmf", inputs.ovmf]
    if inputs.kernel:
        argv += ["--kernel", inputs.kernel, "--initrd", inputs.initrd or "/dev/null", "--append", inputs.append or ""]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout
    return out.split()[-1]


def _compare_with_sev_snp_measure(cands: list[Candidate], inputs: LaunchInputs) -> None:
    """Every digest sev-snp-measure can compute (SEV, SEV-ES with the init2 VMSA) equals ours."""
    theirs = {"sev": _sev_snp_measure(inputs, "sev")}
    if any(c.mode == "sev-es" for c in cands):
        theirs["sev-es (init2 VMSA)"] = _sev_snp_measure(inputs, "seves")
    ours = {c.label: c.digest.hex() for c in cands if c.label in theirs}
    _attach_json("sev-snp-measure command line", {"ours": ours, "sev-snp-measure": theirs})
    assert ours == theirs, f"our digests {ours} differ from sev-snp-measure's {theirs}"


def _record_expected(request, inputs: LaunchInputs, kind: str, extra: dict[str, str]) -> list[Candidate]:
    """The candidate digests of *inputs*, attached and appended to the digest
    history as *kind*. Against this runner's last entry: a changed digest with
    changed inputs is shown in the report (a step naming them); a changed
    digest with unchanged inputs fails the test."""
    cands = candidate_digests(inputs)
    expected = {c.label: c.digest.hex() for c in cands}
    _attach_json(f"expected launch digests ({kind})", {"inputs": inputs.describe(), "digests": expected})
    sev_es = [c for c in cands if c.mode == "sev-es"]
    if sev_es:  # the SEV-ES digest covers the VMSAs: it can never equal the SEV one
        assert all(c.digest != cands[0].digest for c in sev_es)
    entry = history.DigestEntry(runner=runner_name(), kind=kind, expected=expected,
                                inputs={"ovmf": inputs.ovmf, "ovmf_sha256": ovmf_facts(inputs.ovmf).sha256,
                                        "vcpus": str(inputs.vcpus), "vcpu_type": inputs.vcpu_type,
                                        "sev-snp-measure": version("sev-snp-measure"), **extra})
    change = history.record_and_judge(_history_file(request.config), entry)
    if change.changed:
        with allure.step(change.describe()):
            _attach_json("launch digest changed", {"digests": change.digests, "inputs": change.inputs})
    assert not change.unexplained, (f"{change.describe()} (runner {entry.runner}, kind {kind}; "
                                    f"history {_history_file(request.config)})")
    return cands


@pytest.mark.plain
def test_expected_digests(run_config, request):
    """The SEV and SEV-ES digests of what this run's SEV-ES guest would be
    launched with (its OVMF, vCPUs, -cpu EPYC), kept in the digest history;
    a change against this runner's last entry names the inputs that changed."""
    fw = ovmf_firmware(run_config.ovmf_code, run_config.ovmf_vars)
    inputs = LaunchInputs(str(fw.code), SEV_ES_VCPUS, "EPYC")
    _compare_with_sev_snp_measure(_record_expected(request, inputs, "expected", {}), inputs)


@pytest.mark.plain
def test_expected_digests_with_kernel_hashes(run_config, request):
    """The same for an attested launch on the AmdSev OVMF (``kernel-hashes=on``):
    the guest's kernel, initrd and command line enter the digest, so the
    history also names a kernel or command-line change."""
    amdsev = amdsev_firmware(run_config)
    if amdsev is None:
        pytest.skip(f"no AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc; Debian 12 ships none): {BUILD_AMDSEV}")
    guest = plain_spec(run_config, firmware="ovmf")  # the kernel, initrd and append SEV guests get
    assert guest.kernel is not None
    inputs = LaunchInputs(str(amdsev.code), SEV_ES_VCPUS, "EPYC", str(guest.kernel),
                          str(guest.initrd) if guest.initrd else None, guest.append)
    cands = _record_expected(request, inputs, "expected-kernel-hashes",
                             {"kernel_sha256": file_digest(guest.kernel),
                              "initrd_sha256": file_digest(guest.initrd) if guest.initrd else "none",
                              "append": guest.append})
    _compare_with_sev_snp_measure(cands, inputs)


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
    """A reconstructed SEV-ES launch (labelled so in the fixture): the owner refuses it, because
    the firmware double's chain does not reach AMD's ARK; the rest is replayed through the
    lower-level calls, each labelled NOT AN ATTESTED LAUNCH, to check the measurement,
    the report and the secret packet against the recorded answers."""
    rec = json.loads(RECORDED.read_text())
    assert rec["provenance"] == "reconstructed"
    qmp = RecordedQmp(rec["qmp"])
    caps = rec["qmp"]["query-sev-capabilities"]

    # step 1: the owner's library refuses to seal anything to this PDH, naming the link, and writes nothing
    keydir = tmp_path / "owner"
    with pytest.raises(ChainNotAnchored, match="not anchored to AMD's ARK: ASK -> CEK: FAILED") as refused:
        prepare(caps, rec["policy"], keydir)
    assert not keydir.exists()
    _attach_json("owner refused the platform", str(refused.value))
    pdh, chain = from_qmp(caps["pdh"], caps["cert-chain"])
    verdict_chain = verify_chain(pdh, chain, load_all_roots())
    assert verdict_chain.failed is not None and verdict_chain.failed.name == "ASK -> CEK", verdict_chain.describe()
    assert all(link.ok for link in verdict_chain.links[1:]), "the double's own PEK/OCA/CEK links must hold"

    # NOT AN ATTESTED LAUNCH from here: the recorded session, built by hand around the refused chain
    owner = rec["owner"]
    start = LaunchStart(rec["policy"], bytes.fromhex(owner["tek"]), bytes.fromhex(owner["tik"]),
                        base64.b64decode(owner["dh_cert_b64"]), parse_session(base64.b64decode(owner["session_b64"])))
    session = OwnerSession(rec["policy"], verdict_chain, start, SessionFiles(tmp_path, *(tmp_path / n for n in "abcde")))
    i = rec["inputs"]
    inputs = LaunchInputs(str(ROOT / i["ovmf"]), i["vcpus"], i["vcpu_type"], i["kernel"], i["initrd"], i["append"])

    # step 3: the firmware's MAC proves the SEV-ES digest (known answer 0dccbcab...de91)
    verdict, blob = check_measurement(qmp, session, inputs)
    _attach_json("measurement verdict (not an attested launch)", {"status": verdict.status, "describe": verdict.describe()})
    assert verdict.sev_es_proven and verdict.releases_secrets, verdict.describe()
    assert verdict.matched is not None and verdict.matched.digest.hex().startswith("0dccbcab")

    # step 4: the attestation report, signed by the double's PEK, fresh and of this digest
    rep = rec["qmp"]["query-sev-attestation-report"]
    pek = next(c for c in chain if c.name == "PEK")
    report_verdict = judge_report(parse_attestation_report(rep["data"]), pek, base64.b64decode(rep["mnonce"]),
                                  candidate_digests(inputs))
    assert report_verdict.ok and report_verdict.matched is not None, report_verdict

    # step 5: the library releases no secret to this session, though the measurement matched ...
    secret = os.urandom(24)
    with pytest.raises(ReleaseRefused, match="no secret released: certificate chain not anchored"):
        inject_secret(qmp, session, verdict, [(HARNESS_SECRET_GUID, secret)])
    assert [cmd for cmd, _ in qmp.sent] == ["query-sev", "query-sev-launch-measure"]
    # ... and the packet itself, sealed by the lower-level call (NOT AN ATTESTED LAUNCH), opens with the TEK
    packet = new_launch_secret(build_secret_table([(HARNESS_SECRET_GUID, secret)]), start.tek, start.tik, blob)
    table = parse_secret_table(aes128_ctr(start.tek, packet.header[4:20], packet.payload))
    assert table[next(iter(table))] == secret and str(next(iter(table))) == HARNESS_SECRET_GUID
    assert parse_measure_blob(rec["qmp"]["query-sev-launch-measure"]["data"]).to_bytes() == blob

    # step 6: the history explains a changed digest by a changed input, and refuses one without
    hist = tmp_path / "digest-history.jsonl"
    label, digest = verdict.matched.label, verdict.matched.digest.hex()
    first = history.DigestEntry("recorded", "sev-es", {label: digest}, {"ovmf": i["ovmf"], "vcpus": str(i["vcpus"])},
                                reported=label)
    assert not history.record_and_judge(hist, first).changed
    later = history.DigestEntry("recorded", "sev-es", {label: "00" * 32}, {"ovmf": i["ovmf"], "vcpus": "8"},
                                reported="no-match")
    explained = history.record_and_judge(hist, later)
    assert explained.changed and not explained.unexplained and "input vcpus: 4 -> 8" in explained.inputs
    silent = history.DigestEntry("recorded", "sev-es", {label: "11" * 32}, {"ovmf": i["ovmf"], "vcpus": "8"})
    assert history.record_and_judge(hist, silent).unexplained


def _secret_kernel(run_config) -> Path:
    """The guest kernel whose efi_secret will read the table, or a skip saying
    why this one cannot (Debian 12's kernels: ``# CONFIG_EFI_COCO_SECRET is not set``)."""
    vmlinuz = run_config.guest_kernel or default_kernel().vmlinuz
    cfg = kernel_config(vmlinuz)
    notes = secret_notes(cfg) if cfg is not None else []
    if notes:
        pytest.skip(f"guest kernel {vmlinuz}: {notes[0]}; {BUILD_KERNEL}")
    return Path(vmlinuz)


@pytest.mark.plain
@pytest.mark.qemu
def test_secret_reaches_guest(run_config, guest_factory, tmp_path):
    """The guest's side of a launch secret, for real, on a plain guest.

    On SEV hardware the PSP decrypts the owner's sealed table into the AmdSev
    OVMF's secret page; here QEMU's generic loader puts the same plaintext
    there.  Everything after that is the real thing: OVMF (SecretPei/SecretDxe)
    publishes the page as an EFI config table, the kernel keeps it, and
    efi_secret parses the table the harness built.  The control: the same
    table with its header GUID flipped must give no entries, so the entries
    of the first boot can only have come from the harness's table."""
    amdsev = amdsev_firmware(run_config)
    if amdsev is None:
        pytest.skip(f"no AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc; Debian 12 ships none): {BUILD_AMDSEV}")
    assert amdsev.code is not None
    vmlinuz = _secret_kernel(run_config)
    facts = ovmf_facts(str(amdsev.code))
    assert facts.secret_area is not None, facts.describe()
    base, size = facts.secret_area
    secrets = {HARNESS_SECRET_GUID: os.urandom(32), SECOND_SECRET_GUID: b"pytest-sev second secret\n"}
    table = build_secret_table(list(secrets.items()))
    assert len(table) <= size, f"a {len(table)}-byte table does not fit the {size}-byte secret page"
    owner = tmp_path / "owner"
    owner.mkdir(mode=0o700)
    good, flipped = owner / "secret-table.bin", owner / "secret-table-bad-header.bin"
    good.write_bytes(table)
    flipped.write_bytes(bytes([table[0] ^ 0xFF]) + table[1:])
    assert table[:16] == SECRET_TABLE_GUID.bytes_le
    _attach_json("secret delivery inputs", {"ovmf": facts.describe(), "kernel": str(vmlinuz),
                                            "secret page": f"{base:#x}+{size:#x}", "table bytes": len(table),
                                            "guids": list(secrets)})

    guest = guest_factory(secret_delivery_spec(run_config, amdsev, good, base, kernel=vmlinuz))
    got = read_guest_secrets(guest)
    guest.close()
    _attach_json("efi_secret read back", {"status": got.status, "describe": got.describe(),
                                          "kernel lines": got.kernel_lines})
    problems = delivery_problems(secrets, got)
    assert not problems, "secret delivery: " + "; ".join(problems)

    control = guest_factory(secret_delivery_spec(run_config, amdsev, flipped, base, kernel=vmlinuz,
                                                 name="secret-control"))
    bad = read_guest_secrets(control)
    _attach_json("control: header GUID flipped", {"status": bad.status, "describe": bad.describe()})
    assert bad.status != "unknown", f"control unreadable: {bad.describe()}"
    assert not bad.entries, ("efi_secret listed entries from a table with a broken header: the instrument "
                             f"cannot tell the harness's table from any other ({bad.describe()})")


@pytest.mark.qemu
@pytest.mark.parametrize("kind", [pytest.param("sev-es", marks=pytest.mark.sev_es),
                                  pytest.param("sev", marks=pytest.mark.sev)])
def test_attested_launch(kind, run_config, host, guest_factory, tmp_path):
    """A real launch: the platform's chain, the owner's session, the guest
    started paused, the measurement proven, a secret injected and read back."""
    from pytest_sev.attest.owner import attested_launch
    from pytest_sev.guest.specs import attested_spec, cbitpos_of
    from pytest_sev.host.qmp_probe import query_sev_capabilities

    answer = query_sev_capabilities(run_config.qemu, "kvm")
    if not answer.ok or answer.result is None:
        pytest.fail(f"query-sev-capabilities failed on an SEV host: {answer.error_class} {answer.error_desc}",
                    pytrace=False)
    spec = attested_spec(run_config, kind, cbitpos_of(host), amdsev_firmware(run_config), memory_mib=1024)
    assert spec.sev is not None
    cek = run_config.sev_cek.read_bytes() if run_config.sev_cek else None
    try:  # the library refuses to seal to a PDH whose chain does not reach AMD's ARK
        session = prepare(answer.result, spec.sev.policy, tmp_path / "owner", cek=cek)
    except ChainNotAnchored as exc:
        _attach_json("platform chain", str(exc))
        pytest.fail(f"{exc} (--sev-cek: {run_config.sev_cek or 'not given'})", pytrace=False)
    _attach_json("platform chain", session.chain.describe())
    assert session.chain.ok and session.chain.generation is not None, session.chain.describe()
    hashed = spec.sev.kernel_hashes  # the AmdSev OVMF: kernel, initrd and command line are measured too
    inputs = LaunchInputs(str(spec.firmware.code), spec.vcpus, spec.cpu or "EPYC", vmsa="legacy",
                          kernel=str(spec.kernel) if hashed else None,
                          initrd=str(spec.initrd) if hashed and spec.initrd else None,
                          append=spec.append if hashed else None)
    secret = os.urandom(32)
    verdicts = []

    def before_boot(qmp) -> None:
        verdicts.append(attested_launch(qmp, session, inputs, [(HARNESS_SECRET_GUID, secret)]))

    guest = guest_factory(spec.with_(sev=spec.sev.with_session(session.files.dh_cert, session.files.session)),
                          before_boot=before_boot)
    verdict = verdicts[0]
    _attach_json("measurement verdict", {"status": verdict.status, "describe": verdict.describe()})
    assert verdict.status == kind, verdict.describe()
    got = read_guest_secrets(guest)
    _attach_json("efi_secret read back", {"status": got.status, "describe": got.describe()})
    if got.status == "no-area" and not hashed:
        pytest.skip(f"the measurement is proven, but the guest has no efi_secret area: no AmdSev OVMF "
                    f"({BUILD_AMDSEV}) or no CONFIG_EFI_SECRET ({BUILD_KERNEL}): {got.describe()}")
    problems = delivery_problems({HARNESS_SECRET_GUID: secret}, got)
    assert not problems, "secret delivery: " + "; ".join(problems)
