"""SEV-SNP attestation, live: the guest fetches its own report, the harness checks it offline.

QEMU gives no launch measurement for SNP guests; the guest's attestation
report, signed by the chip's VCEK, is the proof. The harness sends a fresh
64-byte nonce over the console, the guest asks its PSP through configfs-tsm
(``/sys/kernel/config/tsm/report``, Linux >= 6.7), and the report that comes
back must hold every check (:mod:`pytest_sev.proofs.snp_attest`):

- signature by the VCEK (from the host's certificate table in ``auxblob``,
  else ``--snp-cert-dir``), VCEK <- ASK <- ARK to AMD's pinned ARK, the
  VCEK's TCB and chip id equal the report's;
- REPORT_DATA equals the nonce; MEASUREMENT equals the digest expected for
  the launched OVMF, vCPU count and type, guest features 0x1 and (with
  ``kernel-hashes=on``) the kernel, initrd and command line; POLICY the
  launched one; VMPL 0; the debug bit off unless the launch allowed it;
  REPORTED_TCB at least ``--snp-min-tcb`` when given.

A check that cannot be made (no VCEK found, no digest computed), or a guest
that cannot ask, is unknown, and unknown never passes: under ``--sev-snp`` it
fails naming it, in auto mode it skips naming it; a check that failed fails in
every mode (:func:`~pytest_sev.proofs.snp_attest.judge_live`). The ``sev_snp``
items skip in auto mode on a host without SNP and fail under ``--sev-snp``
naming the host check (the mode table) before any guest boots. The plain
control's fetch must be unknown: a guest without SNP has no report to give.

The guest kernel must have CONFIG_SEV_GUEST and CONFIG_TSM_REPORTS (built in,
or as modules the guest loads): Debian 12's cloud 6.1 kernel has neither
(README, "SEV-SNP").
"""

from __future__ import annotations

import json
import secrets

import allure
import pytest

from pytest_sev.attest.snp_report import parse_report
from pytest_sev.proofs.snp_attest import check_live_report, describe_inputs, fetch_report, judge_live

pytestmark = [allure.epic("pytest-sev"), allure.feature("snp-attestation")]

FETCH_TIMEOUT = 120.0


def _nonce() -> bytes:
    return secrets.token_bytes(64)


def _act(outcome: str, message: str) -> None:
    if outcome == "skip":
        pytest.skip(message)
    if outcome == "fail":
        pytest.fail(message, pytrace=False)


@pytest.mark.sev_snp
def test_snp_report_holds_every_check(sev_snp_guest, run_config):
    """A report fetched with a fresh nonce: signature, chain, nonce, measurement, policy, VMPL, debug, TCB."""
    demanded = run_config.mode == "sev-snp"
    nonce = _nonce()
    fetched = fetch_report(sev_snp_guest, nonce, timeout=FETCH_TIMEOUT)
    if not fetched.ok:
        _act(*judge_live(fetched, None, demanded))
    live = check_live_report(fetched, sev_snp_guest.spec, nonce, cert_dir=run_config.snp_cert_dir,
                             min_tcb=run_config.snp_min_tcb)
    allure.attach(json.dumps(live.verdict.to_json(), indent=1), name="snp-report-verdict",
                  attachment_type=allure.attachment_type.JSON)
    allure.attach(fetched.report or b"", name="snp-report.bin", attachment_type="application/octet-stream")
    outcome, message = judge_live(fetched, live, demanded)
    _act(outcome, f"{message}\nexpected measurement from: {describe_inputs(sev_snp_guest.spec)}")
    assert outcome == "pass" and live.ok


@pytest.mark.sev_snp
def test_second_fetch_carries_the_new_nonce(sev_snp_guest, run_config):
    """Two fetches, two nonces: each report carries its own (no cached or replayed report)."""
    first, second = _nonce(), _nonce()
    assert first != second
    reports = []
    for nonce in (first, second):
        fetched = fetch_report(sev_snp_guest, nonce, timeout=FETCH_TIMEOUT)
        if not fetched.ok:
            _act(*judge_live(fetched, None, run_config.mode == "sev-snp"))
        reports.append(parse_report(fetched.report or b""))
    assert reports[0].report_data == first, "the first report does not carry its nonce"
    assert reports[1].report_data == second, "the second report does not carry its nonce"
    assert reports[0].report_data != reports[1].report_data


#: the session's shared plain guest, in the smoke suite's xdist group so that
#: it boots once per run: the fetch leaves nothing behind (a configfs-tsm entry
#: it made is removed), and a boot of its own cost some 4 s of the main job
@pytest.mark.qemu
@pytest.mark.plain
@pytest.mark.xdist_group("smoke")
def test_plain_control_has_no_report(guest):
    """A plain guest cannot give an SNP report: its fetch is unknown with the reason, never a report."""
    fetched = fetch_report(guest, _nonce(), timeout=FETCH_TIMEOUT)
    assert fetched.status == "unknown" and fetched.report is None, (
        f"a plain guest handed back a report: {fetched.describe()}")
    assert fetched.reason
    print(f"\nplain control: {fetched.describe()}")
