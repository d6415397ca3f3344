"""``query-sev-attestation-report``: parsing and the PEK signature.

Why: on SEV API >= 0.23 firmware the hypervisor can ask (ATTESTATION
command, QEMU 6.1+ ``query-sev-attestation-report`` with a 16-byte mnonce)
for a report signed by the platform's PEK. Unlike the launch measurement it
needs no TIK, so a verifier holding only the verified chain can check what
digest and policy the firmware launched.

Layout (SEV API spec, ATTESTATION; little-endian, 0xD0 bytes)::

    0x00 MNONCE[16]  0x10 LAUNCH_DIGEST[32]  0x30 POLICY u32
    0x34 SIG_USAGE u32 (PEK 0x1002)  0x38 SIG_ALGO u32 (ECDSA-SHA256 0x2)
    0x3C reserved u32  0x40 SIG1[144] = r[72] || s[72]

The signature covers bytes 0x00..0x33 (mnonce, digest, policy).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import FormatError
from .measure import Candidate
from .qmpdata import qmp_bytes
from .sevcert import USAGE_PEK, SevCert, public_key, usage_name
from .sigverify import verify_raw

REPORT_SIZE = 0xD0
SIGNED_SIZE = 0x34


@dataclass(frozen=True)
class AttestationReport:
    mnonce: bytes
    launch_digest: bytes
    policy: int
    sig_usage: int
    sig_algo: int
    sig: bytes
    raw: bytes

    @property
    def signed(self) -> bytes:
        return self.raw[:SIGNED_SIZE]


def parse_attestation_report(data: bytes | str) -> AttestationReport:
    """A report as bytes or as QMP's base64 ``data``."""
    data = qmp_bytes(data, "attestation report")
    if len(data) < REPORT_SIZE:
        raise FormatError(f"attestation report is {len(data)} bytes, expected {REPORT_SIZE}")
    policy, usage, algo = struct.unpack_from("<III", data, 0x30)
    return AttestationReport(bytes(data[0:16]), bytes(data[16:48]), policy, usage, algo,
                             bytes(data[0x40:0x40 + 144]), bytes(data[:REPORT_SIZE]))


@dataclass(frozen=True)
class ReportVerdict:
    signature_ok: bool
    nonce_ok: bool | None
    matched: Candidate | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        what = f"matches {self.matched.label}" if self.matched else "matches no expected digest"
        return f"attestation report: signature {'ok' if self.signature_ok else 'BAD'}, digest {what}" + \
            ("; PROBLEMS: " + "; ".join(self.problems) if self.problems else "")


def verify_report_signature(report: AttestationReport, pek: SevCert) -> str | None:
    """``None`` when ``pek`` signed ``report``, else the reason."""
    if pek.usage != USAGE_PEK:
        return f"the signer is a {pek.name}, reports are signed by the PEK"
    if report.sig_usage != USAGE_PEK:
        return f"the report says it is signed by {usage_name(report.sig_usage)}, not the PEK"
    if report.sig_algo != pek.algo:
        return f"report signature algorithm {report.sig_algo:#x} differs from the PEK's {pek.algo:#x}"
    return verify_raw(public_key(pek), report.sig_algo, report.sig, report.signed)


def judge_report(report: AttestationReport, pek: SevCert, mnonce: bytes | None = None,
                 candidates: Sequence[Candidate] = ()) -> ReportVerdict:
    """Signature, freshness (the mnonce asked for) and which expected digest it carries."""
    problems = []
    why = verify_report_signature(report, pek)
    if why:
        problems.append(why)
    nonce_ok = None if mnonce is None else hmac.compare_digest(mnonce, report.mnonce)
    if nonce_ok is False:
        problems.append("the report's mnonce is not the one requested (replayed report?)")
    matched = next((c for c in candidates if hmac.compare_digest(c.digest, report.launch_digest)), None)
    if candidates and matched is None:
        problems.append(f"launch digest {report.launch_digest.hex()} is none of the expected "
                        + ", ".join(c.label for c in candidates))
    return ReportVerdict(why is None, nonce_ok, matched, tuple(problems))
