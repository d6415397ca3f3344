"""Checking ``query-sev-launch-measure`` against expected digests: a tri-state verdict.

Why: the 48-byte blob is ``HMAC-SHA256(TIK, 0x04 || api_major || api_minor ||
build || policy(u32 le) || launch_digest || mnonce) || mnonce``. Only the
firmware and the owner know the TIK, so a matching MAC proves the firmware
measured exactly the expected digest. Trying the SEV digest and the SEV-ES
digests of the *same* inputs tells "SEV-ES proven" from "SEV only" (the
SEV-ES digest adds the vCPUs' VMSAs), and a miss lists what was tried.
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..sev.policy import ES
from .errors import FormatError
from .kdf import hmac_sha256
from .measure import Candidate
from .qmpdata import qmp_bytes

Status = Literal["sev-es", "sev", "no-match"]
BLOB_SIZE = 48


@dataclass(frozen=True)
class MeasureBlob:
    measurement: bytes
    mnonce: bytes

    def to_bytes(self) -> bytes:
        return self.measurement + self.mnonce


def parse_measure_blob(data: bytes | str) -> MeasureBlob:
    """The blob as bytes or as QMP's base64 ``data``."""
    data = qmp_bytes(data, "launch measurement")
    if len(data) != BLOB_SIZE:
        raise FormatError(f"launch measurement is {len(data)} bytes, SEV/SEV-ES gives {BLOB_SIZE}")
    return MeasureBlob(bytes(data[:32]), bytes(data[32:]))


def measurement_mac(tik: bytes, api_major: int, api_minor: int, build_id: int, policy: int,
                    digest: bytes, mnonce: bytes) -> bytes:
    """The MAC LAUNCH_MEASURE returns for ``digest`` (SEV API spec, LAUNCH_MEASURE)."""
    if len(digest) != 32 or len(mnonce) != 16:
        raise FormatError("the launch digest is 32 bytes and the mnonce 16")
    msg = (bytes([0x04, api_major & 0xFF, api_minor & 0xFF, build_id & 0xFF]) + struct.pack("<I", policy)
           + digest + mnonce)
    return hmac_sha256(tik, msg)


def expected_blob(tik: bytes, api_major: int, api_minor: int, build_id: int, policy: int,
                  digest: bytes, mnonce: bytes) -> bytes:
    """The whole 48-byte blob the firmware would return."""
    return measurement_mac(tik, api_major, api_minor, build_id, policy, digest, mnonce) + mnonce


@dataclass(frozen=True)
class MeasureVerdict:
    """``status``: ``sev-es`` (proven), ``sev`` (SEV only) or ``no-match``."""

    status: Status
    matched: Candidate | None
    policy: int
    tried: tuple[str, ...]
    reason: str
    #: the 48-byte blob the verdict is about (a launch secret is bound to it)
    blob: bytes = b""

    @property
    def sev_es_proven(self) -> bool:
        return self.status == "sev-es"

    @property
    def policy_status(self) -> Status:
        """The verdict the policy asks for: ``sev-es`` under an ES policy, else ``sev``."""
        return "sev-es" if self.policy & ES else "sev"

    @property
    def releases_secrets(self) -> bool:
        """A match of what the policy launched: an SEV-only match under an ES policy
        releases nothing (the VMSAs were not measured, so SEV-ES is not proven)."""
        return self.matched is not None and self.status == self.policy_status

    def describe(self) -> str:
        if self.status == "no-match":
            return "launch measurement matches no expected digest: " + self.reason + \
                "; tried: " + " | ".join(self.tried)
        assert self.matched is not None
        return (f"launch measurement matches the {self.matched.label} digest "
                f"{self.matched.digest.hex()} (policy {self.policy:#x}): {self.reason}")


def judge_measurement(blob: bytes | str | MeasureBlob, tik: bytes, api: tuple[int, int], build_id: int,
                      policy: int, candidates: Sequence[Candidate]) -> MeasureVerdict:
    """Which candidate digest (if any) the firmware's MAC proves.

    ``api``/``build_id``: the firmware's, as ``query-sev`` reports them;
    ``policy``: the guest policy the session was started with.
    """
    mb = blob if isinstance(blob, MeasureBlob) else parse_measure_blob(blob)
    raw = mb.to_bytes()
    tried = tuple(f"{c.label} {c.digest.hex()[:16]}... [{c.summary or c.inputs.describe()}]" for c in candidates)
    hits = [c for c in candidates
            if hmac.compare_digest(measurement_mac(tik, api[0], api[1], build_id, policy, c.digest, mb.mnonce),
                                   mb.measurement)]
    es_hits = [c for c in hits if c.mode == "sev-es"]
    sev_hits = [c for c in hits if c.mode == "sev"]
    if es_hits:
        if policy & ES:
            return MeasureVerdict("sev-es", es_hits[0], policy, tried,
                                  "the firmware measured the VMSAs of the vCPUs under an ES policy: SEV-ES is proven", raw)
        return MeasureVerdict("no-match", None, policy, tried,
                              f"the SEV-ES digest matches but policy {policy:#x} lacks ES (0x4): contradictory", raw)
    if sev_hits:
        why = "no VMSA was measured: the guest is SEV without SEV-ES"
        if policy & ES:
            why += f" although policy {policy:#x} sets ES"
        return MeasureVerdict("sev", sev_hits[0], policy, tried, why, raw)
    if not candidates:
        return MeasureVerdict("no-match", None, policy, tried, "no candidate digests were given", raw)
    return MeasureVerdict("no-match", None, policy, tried,
                          f"no candidate gives the MAC under TIK, API {api[0]}.{api[1]} build {build_id}, "
                          f"policy {policy:#x} (wrong TIK, platform data, or launched inputs)", raw)
