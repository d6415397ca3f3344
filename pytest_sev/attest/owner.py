"""The guest owner's side of one attested launch, over QMP.

Why a module of its own: the pure pieces (chain, session, measurement MAC,
secret packet) are each tested against known answers; a launch needs them in
one order, against one QEMU, with every answer kept for the report:

1. :func:`prepare`: read the platform's PDH and certificate chain
   (``query-sev-capabilities``), verify the chain up to AMD's ARK (the
   package's pinned roots; the CEK from the chain or AMD's signed copy given
   as ``cek``) and refuse, before anything is sealed or written, when it does
   not get there; then create the owner's DH certificate and the session
   (TEK/TIK wrapped for the PDH) in a private directory; QEMU is then started
   paused with ``dh-cert-file``/``session-file``;
2. :func:`check_measurement`: ``query-sev`` (API, build, policy) and
   ``query-sev-launch-measure``, the MAC recomputed with the TIK over every
   candidate digest (SEV, SEV-ES per VMSA layout): SEV-ES proven, SEV only,
   or no match naming what was tried;
3. :func:`inject_secret`: a GUID-keyed secret table sealed with the TEK,
   bound to the measurement, sent with ``sev-inject-launch-secret``; only
   for an anchored chain and a verdict that matches the policy (an SEV-only
   match under an ES policy releases nothing);
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
from pytest_sev.attest.chain import ChainVerdict, from_qmp, verify_chain
from pytest_sev.attest.errors import ChainNotAnchored, ReleaseRefused
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


def require_anchored(chain: ChainVerdict) -> None:
    """Raise :class:`ChainNotAnchored` naming the first link that does not hold."""
    failed = chain.failed
    if failed is not None:
        raise ChainNotAnchored(f"certificate chain not anchored to AMD's ARK: {failed.describe()}; "
                               "nothing is sealed to this PDH")


def require_release(session: OwnerSession, verdict: MeasureVerdict) -> None:
    """Raise :class:`ReleaseRefused` unless a secret may go to this launch: an anchored
    chain, and a measurement verdict of the session's own policy that matches it."""
    try:
        require_anchored(session.chain)
    except ChainNotAnchored as exc:
        raise ReleaseRefused(f"no secret released: {exc}") from None
    if verdict.policy != session.policy:
        raise ReleaseRefused(f"no secret released: the verdict is for policy {verdict.policy:#x}, "
                             f"the session's is {session.policy:#x}")
    if not verdict.releases_secrets:
        raise ReleaseRefused(f"no secret released: policy {session.policy:#x} needs a {verdict.policy_status} "
                             f"match, the verdict is {verdict.status}: {verdict.describe()}")


def prepare(capabilities: Mapping[str, Any], policy: int, keydir: Path, cek: bytes | None = None) -> OwnerSession:
    """Step 1: the chain verified up to AMD's ARK, then the session sealed and written.

    ``cek``: AMD's signed CEK of this chip (``--sev-cek``), for platforms
    whose exported chain carries the firmware's unsigned copy. A chain that
    does not reach the ARK raises :class:`ChainNotAnchored` before a key is
    made or a file written.
    """
    pdh, chain = from_qmp(str(capabilities["pdh"]), str(capabilities["cert-chain"]))
    cek_cert: SevCert | None = parse_sev_cert(cek, "CEK file") if cek is not None else None
    verdict = verify_chain(pdh, chain, load_all_roots(), cek=cek_cert)
    require_anchored(verdict)
    start, key = new_launch_start(pdh, policy)
    files = write_session(start, key, keydir)
    log.info("owner: session for policy %#x in %s; chain: %s", policy, files.directory, verdict.describe())  # pragma: no mutate, log only
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
    log.info("owner: %s", verdict.describe())  # pragma: no mutate, log only
    return verdict, blob


def inject_secret(qmp: QmpLike, session: OwnerSession, verdict: MeasureVerdict,
                  secrets: Sequence[tuple[str, bytes]]) -> LaunchSecret:
    """Step 3: the secret table, sealed for this launch and bound to the measurement
    of ``verdict``, injected into the paused guest; :class:`ReleaseRefused` (nothing
    sent) unless :func:`require_release` allows it."""
    require_release(session, verdict)
    table = build_secret_table(secrets)
    packet = new_launch_secret(table, session.start.tek, session.start.tik, verdict.blob)
    qmp.execute("sev-inject-launch-secret", **packet.qmp_arguments())
    log.info("owner: launch secret injected (%d entries, %d bytes)", len(secrets), len(table))  # pragma: no mutate, log only
    return packet


def attested_launch(qmp: QmpLike, session: OwnerSession, inputs: LaunchInputs,
                    secrets: Sequence[tuple[str, bytes]] = ()) -> MeasureVerdict:
    """Steps 2-4 on a guest paused in state ``launch-secret``: measure; with
    ``secrets``, inject them only when the measurement matches the policy
    (else :class:`ReleaseRefused`, and the guest stays paused); then ``cont``."""
    verdict, _blob = check_measurement(qmp, session, inputs)
    if secrets:
        inject_secret(qmp, session, verdict, secrets)
    qmp.execute("cont")
    return verdict
