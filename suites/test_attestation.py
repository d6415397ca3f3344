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
- ``test_secret_reaches_guest`` runs the guest's side of secret delivery on a
  plain guest: the real AmdSev OVMF and the guest kernel's ``efi_secret``
  read the table the owner built (QEMU's generic loader puts it where the PSP
  would decrypt it); it needs the AmdSev OVMF and a kernel with
  CONFIG_EFI_SECRET, and skips naming the command that builds what is missing;
- ``test_attested_launch`` launches real SEV / SEV-ES guests where the host
  can (the markers apply the mode table: skip in auto, fail under --sev-es),
  on the AmdSev OVMF with ``kernel-hashes=on`` when there is one.
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
from pytest_sev.attest.guest_secrets import delivery_problems, read_guest_secrets
from pytest_sev.attest.launch_verify import parse_measure_blob
from pytest_sev.attest.measure import LaunchInputs, candidate_digests, ovmf_facts
from pytest_sev.attest.owner import HARNESS_SECRET_GUID, OwnerSession, check_measurement, inject_secret
from pytest_sev.attest.report import judge_report, parse_attestation_report
from pytest_sev.attest.secret import SECRET_TABLE_GUID, build_secret_table, parse_secret_table
from pytest_sev.attest.session import LaunchStart, aes128_ctr, parse_session
from pytest_sev.attest.session_files import SessionFiles
from pytest_sev.build.kconfig import secret_notes
from pytest_sev.cache import file_digest
from pytest_sev.guest.specs import amdsev_firmware, ovmf_firmware, plain_spec, secret_delivery_spec
from pytest_sev.images.default_kernel import default_kernel, kernel_config
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


def _record_expected(request, inputs: LaunchInputs, kind: str, extra: dict[str, str]) -> None:
    """The candidate digests of *inputs*, attached and appended to the digest
    history as *kind*; a change against this runner's last entry names the inputs."""
    cands = candidate_digests(inputs)
    expected = {c.label: c.digest.hex() for c in cands}
    _attach_json(f"expected launch digests ({kind})", {"inputs": inputs.describe(), "digests": expected})
    assert all(len(bytes.fromhex(d)) == 32 for d in expected.values())
    sev_es = [c for c in cands if c.mode == "sev-es"]
    if sev_es:  # the SEV-ES digest covers the VMSAs: it can never equal the SEV one
        assert all(c.digest != cands[0].digest for c in sev_es)
    entry = history.DigestEntry(runner=runner_name(), kind=kind, expected=expected,
                                inputs={"ovmf": inputs.ovmf, "ovmf_sha256": ovmf_facts(inputs.ovmf).sha256,
                                        "vcpus": str(inputs.vcpus), "vcpu_type": inputs.vcpu_type, **extra})
    changed = history.record(_history_file(request.config), entry)
    if changed:
        _attach_json("launch digest changed", changed)
        print("\nlaunch digest changed against the last run: " + "; ".join(changed))


@pytest.mark.plain
def test_expected_digests(run_config, request):
    """The SEV and SEV-ES digests of what this run's SEV-ES guest would be
    launched with (its OVMF, vCPUs, -cpu EPYC), kept in the digest history;
    a change against this runner's last entry names the inputs that changed."""
    fw = ovmf_firmware(run_config.ovmf_code, run_config.ovmf_vars)
    _record_expected(request, LaunchInputs(str(fw.code), SEV_ES_VCPUS, "EPYC"), "expected", {})


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
    _record_expected(request, inputs, "expected-kernel-hashes",
                     {"kernel_sha256": file_digest(guest.kernel),
                      "initrd_sha256": file_digest(guest.initrd) if guest.initrd else "none",
                      "append": guest.append})


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
    from pytest_sev.attest.owner import attested_launch, prepare
    from pytest_sev.guest.specs import attested_spec, cbitpos_of
    from pytest_sev.host.qmp_probe import query_sev_capabilities

    answer = query_sev_capabilities(run_config.qemu, "kvm")
    if not answer.ok or answer.result is None:
        pytest.fail(f"query-sev-capabilities failed on an SEV host: {answer.error_class} {answer.error_desc}",
                    pytrace=False)
    spec = attested_spec(run_config, kind, cbitpos_of(host), amdsev_firmware(run_config), memory_mib=1024)
    assert spec.sev is not None
    session = prepare(answer.result, spec.sev.policy, tmp_path / "owner")
    _attach_json("platform chain", session.chain.describe())
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
