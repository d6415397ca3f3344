"""SEV, SEV-ES and SEV-SNP activation, proven by independent witnesses.

Every witness answers yes / no / unknown (with the reason); unknown is never
an answer. A plain control guest runs in every mode and must look
unencrypted; its memory witness must find the marker it wrote (else the
instrument is broken), and a decoy search proves a dump without the marker is
"unknown", never "encrypted". The SEV guest (policy 0x1) and the SEV-ES guest
run when the mode and host allow (design.md's mode table: skip in auto, fail
fast in --sev / --sev-es; --sev-es runs the SEV subset too), and so does the
SEV-SNP guest (fail fast in --sev-snp, which runs SEV-ES and SEV where the host
can). The cross-check counts decisive answers only: >= 4 agreeing for
SEV/SEV-ES/SEV-SNP, the MSR on every vCPU and one host-side witness among them
(SNP guests: each witness that can tell must say SNP; QEMU keeps no launch
measurement for them, so that row is unknown); >= 3 for the plain control.
"""

from __future__ import annotations

import contextlib
import json

import allure
import pytest

from pytest_sev.errors import PytestSevError
from pytest_sev.guest.specs import cbitpos_of, plain_spec, reduced_phys_bits_of, sev_spec, snp_spec
from pytest_sev.plugin.fixtures import scoped_guest
from pytest_sev.proofs import witnesses
from pytest_sev.sev import evidence

pytestmark = [pytest.mark.qemu, allure.epic("pytest-sev"), allure.feature("activation")]

KINDS = ["plain", "sev", "sev-es", "sev-snp"]
#: the marker of each kind: the plugin applies the mode table to it before any boot
#: and its xdist group, so under ``--dist loadgroup`` each kind's guest boots in one worker only
PARAMS = [pytest.param(kind, marks=[getattr(pytest.mark, marker), pytest.mark.xdist_group(f"activation-{kind}")])
          for kind, marker in (("plain", "plain"), ("sev", "sev"), ("sev-es", "sev_es"), ("sev-snp", "sev_snp"))]
#: what each witness must answer per kind: (memory encrypted, SEV-ES), and SEV-SNP where it can tell
EXPECTED = evidence.EXPECTED
EXPECTED_SNP = evidence.EXPECTED_SNP
#: answers recorded by the witness tests, read by the cross-check
ANSWERS: dict[str, dict[str, witnesses.Witness]] = {kind: {} for kind in KINDS}
#: the decoy searched in the memory view's own dump, read by the decoy test
#: (one dump instead of two; the test dumps again where it ran elsewhere)
DECOYS: dict[str, witnesses.Witness] = {}

GUEST_MEMORY_MIB = 512  # the host dumps all of it: keep it small


class Subject:
    def __init__(self, kind: str, guest) -> None:
        self.kind, self.guest = kind, guest


@pytest.fixture(scope="module", params=PARAMS)
def subject(request, run_config, host):
    """The guest of one kind; the kind's marker already decided (skip/fail
    naming the host check) before this fixture could boot anything."""
    kind = request.param
    if kind == "plain":
        spec = plain_spec(run_config, name="plain-control", memory_mib=GUEST_MEMORY_MIB)
    elif kind == "sev-snp":
        spec = snp_spec(run_config, cbitpos_of(host), reduced_phys_bits_of(host), memory_mib=GUEST_MEMORY_MIB)
    else:
        spec = sev_spec(run_config, kind, cbitpos_of(host), memory_mib=GUEST_MEMORY_MIB)
    with _named_failures(), scoped_guest(request, run_config, f"activation-{kind}", spec) as guest:
        yield Subject(kind, guest)


@contextlib.contextmanager
def _named_failures():
    """A guest that failed to start or died: name a known field failure first."""
    try:
        yield
    except PytestSevError as exc:
        known = witnesses.diagnose_error(exc)
        if not known:
            raise
        pytest.fail(f"{known}\n{exc}", pytrace=False)


def _record(subject: Subject, witness: witnesses.Witness) -> witnesses.Witness:
    ANSWERS[subject.kind][witness.name] = witness
    allure.attach(json.dumps({"answer": witness.answer, "encrypted": witness.encrypted, "es": witness.es,
                              "snp": witness.snp,
                              "evidence": witness.evidence, **witness.details}, indent=1, default=str),
                  name=f"{subject.kind}: {witness.name}", attachment_type=allure.attachment_type.JSON)
    return witness


def _assert_expected(subject: Subject, witness: witnesses.Witness, check_es: bool = True,
                     may_be_unknown: bool = False) -> None:
    """A decisive answer must match the kind. An unknown one fails, except
    where the cross-check may do without it (then it is reported as a skip
    with its reason, and the cross-check counts it as missing)."""
    want_enc, want_es = EXPECTED[subject.kind]
    if witness.encrypted is None:
        if may_be_unknown:
            pytest.skip(f"{witness.name} could not answer (the cross-check counts it missing): {witness.evidence}")
        pytest.fail(f"{witness.name} is unknown, which is never an answer: {witness.evidence}", pytrace=False)
    assert witness.encrypted == want_enc, f"{witness.name}: {witness.evidence}"
    if check_es and witness.es is not None:
        assert witness.es == want_es, f"{witness.name}: {witness.evidence}"
    if witness.snp is not None:
        assert witness.snp == EXPECTED_SNP[subject.kind], f"{witness.name}: {witness.evidence}"


def test_guest_kernel_log(subject):
    _assert_expected(subject, _record(subject, witnesses.kernel_log(subject.guest)))


def test_sev_status_msr(subject):
    w = _record(subject, witnesses.sev_status_msr(subject.guest))
    # on a KVM host a plain guest's read of SEV_STATUS may fault (EIO): unknown,
    # and the plain cross-check decides with the other four witnesses
    _assert_expected(subject, w, may_be_unknown=subject.kind == "plain")


def test_qmp_query_sev(subject, host):
    w = _record(subject, witnesses.query_sev(subject.guest, subject.kind, host.facts.get("sev_api")))
    _assert_expected(subject, w)
    assert not w.details["problems"], w.evidence


def test_host_memory_view(subject):
    view, DECOYS[subject.kind] = witnesses.host_memory_view_and_decoy(subject.guest)
    w = _record(subject, view)
    assert w.details["marker_written"], f"the guest did not confirm writing the marker: {w.evidence}"
    if subject.kind == "plain" and not w.details["found"]:
        pytest.fail(f"instrument broken: the plain control's marker is not in the host's dump: {w.evidence}",
                    pytrace=False)
    _assert_expected(subject, w, check_es=False)
    if subject.kind != "plain":
        assert w.details["found"] == 0 and w.details["sampled_entropy"] >= 7.5, w.evidence


def test_memory_view_decoy_is_unknown(subject):
    """Discrimination self-test: a real dump searched for a marker the guest never
    wrote must be unknown on plaintext memory, never "encrypted"."""
    w = DECOYS.pop(subject.kind, None) or witnesses.host_memory_view(subject.guest, decoy=True)
    assert w.details.get("decoy") is True, w.details
    if subject.kind == "plain":
        assert w.encrypted is None, f"a dump without the marker answered {w.answer}: {w.evidence}"
    else:
        assert w.encrypted is not False, w.evidence


def test_launch_measurement(subject):
    # SEV/SEV-ES only: an SNP guest's row is unknown by design (its proof is the attestation report)
    _assert_expected(subject, _record(subject, witnesses.launch_measurement(subject.guest)), check_es=False,
                     may_be_unknown=subject.kind == "sev-snp")


def _gather(subject: Subject, host) -> dict[str, witnesses.Witness]:
    """Answers of this process's witness tests; any that ran elsewhere (an
    xdist worker) or not at all are asked again here."""
    guest = subject.guest
    askers = {
        evidence.KERNEL_LOG: lambda: witnesses.kernel_log(guest),
        evidence.MSR: lambda: witnesses.sev_status_msr(guest),
        evidence.QUERY_SEV: lambda: witnesses.query_sev(guest, subject.kind, host.facts.get("sev_api")),
        evidence.MEMORY: lambda: witnesses.host_memory_view(guest),
        evidence.MEASUREMENT: lambda: witnesses.launch_measurement(guest),
    }
    answers = ANSWERS[subject.kind]
    for name, ask in askers.items():
        if name not in answers:
            _record(subject, ask())
    return answers


def test_witnesses_agree(subject, host):
    """Enough decisive witnesses, the required ones among them, all agreeing."""
    answers = _gather(subject, host)
    check = evidence.cross_check(subject.kind, [w.row() for w in answers.values()])
    allure.attach(check.table, name=f"{subject.kind}: witness table", attachment_type=allure.attachment_type.TEXT)
    if not check.ok:
        known = witnesses.diagnose(subject.guest, answers)  # a named field failure goes first
        pytest.fail((known + "\n" if known else "") + check.message(), pytrace=False)


@pytest.mark.sev
def test_sev_guest_fixture(sev_guest):
    """The plugin's ``sev_guest`` fixture boots an SEV (not SEV-ES) guest:
    SEV_STATUS bit 0 set and bit 1 clear on every vCPU."""
    w = witnesses.sev_status_msr(sev_guest)
    assert w.encrypted is True and w.es is False, w.evidence


@pytest.mark.sev_snp
def test_sev_snp_guest_fixture(sev_snp_guest):
    """The plugin's ``sev_snp_guest`` fixture boots an SEV-SNP guest: SEV_STATUS
    bits 0, 1 and 2 set on every vCPU."""
    w = witnesses.sev_status_msr(sev_snp_guest)
    assert (w.encrypted, w.es, w.snp) == (True, True, True), w.evidence
