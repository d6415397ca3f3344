"""The guest owner's side of one attested launch, over QMP.

Why a module of its own: the pure pieces (chain, session, measurement MAC,
secret packet) are each tested against known answers; a launch needs them in
one order, against one QEMU, with every answer kept for the report:

1. :func:`prepare`: read the platform's PDH and certificate chain
   (``query-sev-capabilities``), verify the chain, create the owner's DH
   certificate and the session (TEK/TIK wrapped for the PDH) in a private
   directory; QEMU is then started paused with ``dh-cert-file``/``session-file``;
2. :func:`check_measurement`: ``query-sev`` (API, build, policy) and
   ``query-sev-launch-measure``, the MAC recomputed with the TIK over every
   candidate digest (SEV, SEV-ES per VMSA layout): SEV-ES proven, SEV only,
   or no match naming what was tried;
3. :func:`inject_secret`: a GUID-keyed secret table sealed with the TEK,
   bound to the measurement, sent with ``sev-inject-launch-secret``;
4. ``cont``: the guest runs.

Works on anything with ``execute(cmd, **args)`` (the guest's QMP, or a
recorded one in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pytest_sev.attest.amdroots import load_all_roots
from pytest_sev.attest.cacert import CaCert
from pytest_sev.attest.chain import ChainVerdict, from_qmp, verify_chain
from pytest_sev.attest.launch_verify import MeasureVerdict, judge_measurement, parse_measure_blob
from pytest_sev.attest.measure import Candidate, LaunchInputs, candidate_digests
from pytest_sev.attest.secret import LaunchSecret, build_secret_table, new_launch_secret
from pytest_sev.attest.session import LaunchStart, new_launch_start
from pytest_sev.attest.session_files import SessionFiles, write_session
from pytest_sev.attest.sevcert import SevCert, parse_sev_cert

log = logging.getLogger(__name__)

#: the GUID of the secret the harness injects and reads back in the guest
#: (``/sys/kernel/security/secrets/coco/<GUID>``); its own, not a well-known one
HARNESS_SECRET_GUID = "5e5e0001-7e57-4a7e-8d5e-c0c0a11ce5ed"


class QmpLike(Protocol):
    def execute(self, cmd: str, **args: Any) -> Any: ...


@dataclass(frozen=True)
class OwnerSession:
    """One launch's owner state; ``start`` holds the TEK/TIK (never reported)."""

    policy: int
    chain: ChainVerdict
    start: LaunchStart
    files: SessionFiles


def prepare(capabilities: Mapping[str, Any], policy: int, keydir: Path,
            roots: Mapping[str, tuple[CaCert, CaCert]] | None = None,
            cek: bytes | None = None) -> OwnerSession:
    """Steps 1: chain verified (as far as it can be), session files written."""
    pdh, chain = from_qmp(str(capabilities["pdh"]), str(capabilities["cert-chain"]))
    cek_cert: SevCert | None = parse_sev_cert(cek, "CEK") if cek is not None else None
    verdict = verify_chain(pdh, chain, roots if roots is not None else load_all_roots(), cek=cek_cert)
    start, key = new_launch_start(pdh, policy)
    files = write_session(start, key, keydir)
    log.info("owner: session for policy %#x in %s; chain: %s", policy, files.directory, verdict)
    return OwnerSession(policy, verdict, start, files)


def measurement_of(qmp: QmpLike) -> tuple[bytes, Mapping[str, Any]]:
    """The 48-byte launch measurement blob and the ``query-sev`` reply."""
    sev = qmp.execute("query-sev")
    blob = parse_measure_blob(str(qmp.execute("query-sev-launch-measure")["data"]))
    return blob.to_bytes(), sev


def check_measurement(qmp: QmpLike, session: OwnerSession, inputs: LaunchInputs,
                      candidates: Sequence[Candidate] | None = None) -> tuple[MeasureVerdict, bytes]:
    """Step 2: the firmware's MAC against every candidate digest; (verdict, blob)."""
    blob, sev = measurement_of(qmp)
    cands = list(candidates) if candidates is not None else candidate_digests(inputs)
    verdict = judge_measurement(blob, session.start.tik, (int(sev["api-major"]), int(sev["api-minor"])),
                                int(sev["build-id"]), session.policy, cands)
    log.info("owner: %s", verdict.describe())
    return verdict, blob


def inject_secret(qmp: QmpLike, session: OwnerSession, measurement: bytes,
                  secrets: Sequence[tuple[str, bytes]]) -> LaunchSecret:
    """Step 3: the secret table, sealed for this launch, injected into the paused guest."""
    table = build_secret_table(secrets)
    packet = new_launch_secret(table, session.start.tek, session.start.tik, measurement)
    qmp.execute("sev-inject-launch-secret", **packet.qmp_arguments())
    log.info("owner: launch secret injected (%d entries, %d bytes)", len(secrets), len(table))
    return packet


def attested_launch(qmp: QmpLike, session: OwnerSession, inputs: LaunchInputs,
                    secrets: Sequence[tuple[str, bytes]] = ()) -> MeasureVerdict:
    """Steps 2-4 on a guest paused in state ``launch-secret``: measure, and
    only when the measurement matches inject the secrets, then ``cont``."""
    verdict, blob = check_measurement(qmp, session, inputs)
    if verdict.status != "no-match" and secrets:
        inject_secret(qmp, session, blob, secrets)
    qmp.execute("cont")
    return verdict
