"""SEV-ES activation, proven by independent witnesses.

A plain control guest runs in every mode and must look unencrypted to every
witness (its memory marker visible from the host), which proves the
witnesses can tell.  The SEV-ES guest runs when the mode and host allow
(design.md's mode table: skip in auto, fail fast in --sev-es) and must look
encrypted to every witness.  The last test puts all answers in one table.
"""

from __future__ import annotations

import json

import allure
import pytest

from pytest_sev.guest.specs import cbitpos_of, plain_spec, sev_spec
from pytest_sev.plugin.fixtures import scoped_guest
from pytest_sev.sev import witnesses

pytestmark = [pytest.mark.qemu, allure.epic("pytest-sev"), allure.feature("activation")]

KINDS = ["plain", "sev-es"]
#: the marker of each kind: the plugin applies the mode table to it before any boot
#: and its xdist group, so under ``--dist loadgroup`` each kind's guest boots in one worker only
PARAMS = [pytest.param("plain", marks=[pytest.mark.plain, pytest.mark.xdist_group("activation-plain")]),
          pytest.param("sev-es", marks=[pytest.mark.sev_es, pytest.mark.xdist_group("activation-sev-es")])]
#: what each witness must answer per kind: (memory encrypted, SEV-ES)
EXPECTED = {"plain": (False, False), "sev-es": (True, True)}
#: answers recorded by the witness tests, read by the cross-check
ANSWERS: dict[str, dict[str, witnesses.Witness]] = {kind: {} for kind in KINDS}

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
    else:
        spec = sev_spec(run_config, kind, cbitpos_of(host), memory_mib=GUEST_MEMORY_MIB)
    with scoped_guest(request, run_config, f"activation-{kind}", spec) as guest:
        yield Subject(kind, guest)


def _record(subject: Subject, witness: witnesses.Witness) -> witnesses.Witness:
    ANSWERS[subject.kind][witness.name] = witness
    allure.attach(json.dumps({"encrypted": witness.encrypted, "es": witness.es,
                              "evidence": witness.evidence, **witness.details}, indent=1, default=str),
                  name=f"{subject.kind}: {witness.name}", attachment_type=allure.attachment_type.JSON)
    return witness


def _assert_expected(subject: Subject, witness: witnesses.Witness, check_es: bool = True) -> None:
    want_enc, want_es = EXPECTED[subject.kind]
    if witness.encrypted is None:
        if subject.kind == "plain":
            pytest.skip(f"{witness.name} cannot tell on this guest: {witness.evidence}")
        pytest.fail(f"{witness.name} is unknown, which is never a pass: {witness.evidence}", pytrace=False)
    assert witness.encrypted == want_enc, f"{witness.name}: {witness.evidence}"
    if check_es and witness.es is not None:
        assert witness.es == want_es, f"{witness.name}: {witness.evidence}"


def test_guest_kernel_log(subject):
    guest = subject.guest
    _assert_expected(subject, _record(subject, witnesses.kernel_log(guest)))


def test_sev_status_msr(subject):
    guest = subject.guest
    _assert_expected(subject, _record(subject, witnesses.sev_status_msr(guest)))


def test_qmp_query_sev(subject, host):
    guest = subject.guest
    w = _record(subject, witnesses.query_sev(guest, subject.kind, host.facts.get("sev_api")))
    _assert_expected(subject, w)
    assert not w.details["problems"], w.evidence


def test_host_memory_view(subject):
    guest = subject.guest
    w = _record(subject, witnesses.host_memory_view(guest))
    assert w.details["marker_written"], f"the guest did not confirm writing the marker: {w.evidence}"
    _assert_expected(subject, w, check_es=False)
    if subject.kind == "plain":
        assert w.details["found"] > 0


def test_launch_measurement(subject):
    guest = subject.guest
    w = _record(subject, witnesses.launch_measurement(guest))
    _assert_expected(subject, w, check_es=False)


def _gather(subject: Subject, host) -> dict[str, witnesses.Witness]:
    """Answers of this process's witness tests; any that ran elsewhere (an
    xdist worker) or not at all are asked again here."""
    guest = subject.guest
    askers = {
        "guest kernel log": lambda: witnesses.kernel_log(guest),
        "MSR 0xC0010131": lambda: witnesses.sev_status_msr(guest),
        "QMP query-sev": lambda: witnesses.query_sev(guest, subject.kind, host.facts.get("sev_api")),
        "host memory view": lambda: witnesses.host_memory_view(guest),
        "launch measurement": lambda: witnesses.launch_measurement(guest),
    }
    answers = ANSWERS[subject.kind]
    for name, ask in askers.items():
        if name not in answers:
            _record(subject, ask())
    return answers


def test_witnesses_agree(subject, host):
    """Every witness that answered agrees with the requested mode."""
    assert subject.guest is not None
    answers = _gather(subject, host)
    want_enc, want_es = EXPECTED[subject.kind]
    rows, bad, decisive = [], [], 0
    for name, w in sorted(answers.items()):
        if w.encrypted is None:
            verdict = "unknown"  # neither agrees nor disagrees; its own test says why
        else:
            decisive += 1
            ok = w.encrypted == want_enc and (w.es is None or w.es == want_es)
            verdict = "ok" if ok else "DISAGREES"
            if not ok:
                bad.append(name)
        rows.append(f"{name:<22} encrypted={str(w.encrypted):<5} es={str(w.es):<5} "
                    f"{verdict:<9} {w.evidence[:100]}")
    table = "\n".join([f"{subject.kind}: expected encrypted={want_enc} es={want_es}"] + rows)
    allure.attach(table, name=f"{subject.kind}: witness table", attachment_type=allure.attachment_type.TEXT)
    assert decisive >= 3, f"too few witnesses could tell to cross-check:\n{table}"
    assert not bad, f"witnesses disagree with the requested mode:\n{table}"
