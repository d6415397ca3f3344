"""Offline verdict on one SEV-SNP attestation report: each check ok, failed or unknown, with the reason.

Why tri-state: an SNP guest is proven by its report only when the report is
signed by a VCEK that AMD's ARK vouches for *and* carries what the owner
launched. A check that could not be made (no VCEK given, no product known
to name the TCB bytes) is ``unknown`` with the reason, never ``ok``, and a
verdict holds only when every check that was asked for is ``ok``.

The checks (names are stable: the CLI's ``--json`` and callers use them):

- ``signature``: ECDSA P-384 / SHA-384 over report bytes 0..0x2A0 by the
  VCEK's public key (R and S little-endian at 0x2A0 and 0x2E8).
- ``chain``: VCEK <- ASK <- ARK, RSA-PSS with SHA-384 and a 48-byte salt,
  the ARK self-signed and equal to one of the pinned AMD ARKs; each link is
  kept and a failure names it (``ASK -> VCEK``). A VLEK-signed report's
  chain is VLEK <- ASVK <- ARK (``ASVK -> VLEK``): a VCEK is checked only
  through chains whose intermediate is an ASK, a VLEK only through an ASVK
  (:attr:`.snp_roots.SnpChain.intermediate`).
- ``vcek_tcb`` / ``vcek_chip_id``: the report's REPORTED_TCB and CHIP_ID
  equal what the VCEK was issued for (its KDS extensions, :mod:`.snp_vcek`).
- ``debug``: policy bit 19 off, unless debugging is allowed.
- asked only when an expectation is given: ``report_data`` (the nonce, zero
  padded to 64 bytes), ``measurement``, ``policy``, ``vmpl``, ``min_tcb``
  (every component of REPORTED_TCB at least the minimum). VMPL is asked only
  when expected: a guest with an SVSM asks from VMPL 1-3 legitimately, so
  the caller that launched without one (the harness) passes 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from .errors import FormatError
from .snp_report import SIG_ALGO_ECDSA_P384_SHA384, TCB_LAYOUTS, SnpReport, TcbVersion
from .snp_roots import ASK, ASVK, SnpChain
from .snp_vcek import VcekFacts, vcek_facts

State = Literal["ok", "failed", "unknown"]
#: AMD signs ARK, ASK and VCEK with RSA-PSS, SHA-384, MGF1-SHA-384, salt 48 (VCEK spec 57230)
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
MinTcb = Mapping[str, int] | TcbVersion


@dataclass(frozen=True)
class Check:
    """One check; ``asked`` is False for an expectation nobody gave (it never decides the verdict)."""

    name: str
    state: State
    reason: str
    asked: bool = True

    @property
    def holds(self) -> bool:
        return self.state == "ok"

    def describe(self) -> str:
        state = self.state if self.asked else "not asked"
        return f"{self.name}: {state} ({self.reason})"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "asked": self.asked, "reason": self.reason}


@dataclass(frozen=True)
class ChainLink:
    """One signature (or the pin) of the VCEK's chain; ``ok`` None: not checked."""

    signer: str
    subject: str
    ok: bool | None
    reason: str = ""

    @property
    def name(self) -> str:
        if self.signer == self.subject:
            return f"{self.signer} (self-signed)"
        return f"{self.signer} -> {self.subject}" if self.subject else self.signer

    def describe(self) -> str:
        state = {True: "ok", False: "FAILED", None: "not checked"}[self.ok]
        return f"{self.name}: {state}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Expectations:
    """What the owner launched and asked for; ``None`` means "not asked"."""

    nonce: bytes | None = None
    measurement: bytes | None = None
    policy: int | None = None
    vmpl: int | None = None
    min_tcb: MinTcb | None = None
    allow_debug: bool = False


@dataclass(frozen=True)
class SnpVerdict:
    """Every check on one report, the chain's links and the product whose layout named the TCB bytes."""

    report: SnpReport
    product: str | None
    checks: tuple[Check, ...]
    links: tuple[ChainLink, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every asked check holds (an unknown one does not)."""
        return all(c.holds for c in self.checks if c.asked)

    @property
    def not_holding(self) -> list[Check]:
        return [c for c in self.checks if c.asked and not c.holds]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def fields(self) -> dict[str, Any]:
        r = self.report
        tcb: dict[str, Any] = {"raw": f"{r.reported_tcb.raw:#018x}"}
        if self.product:
            tcb.update(r.reported_tcb.components(self.product))
        return {
            "version": r.version, "policy": f"{r.policy.raw:#x}", "vmpl": r.vmpl,
            "report_data": r.report_data.hex(), "measurement": r.measurement.hex(),
            "host_data": r.host_data.hex(), "chip_id": r.chip_id.hex(), "reported_tcb": tcb,
            "signing_key": r.signer.signing_key, "product": self.product,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.fields()
        out["checks"] = [c.to_json() for c in self.checks]
        out["chain_links"] = [{"link": link.name, "ok": link.ok, "reason": link.reason} for link in self.links]
        out["ok"] = self.ok
        return out


# -- signature --------------------------------------------------------------------

def check_signature(report: SnpReport, vek: x509.Certificate | None) -> Check:
    """Does the VCEK's P-384 key verify the report's signature over bytes 0..0x2A0?"""
    key_name = report.signer.signing_key  # VCEK or VLEK once "none" is out
    if key_name == "none":
        return Check("signature", "failed", "the report is not signed (SIGNING_KEY 7: none)")
    if vek is None:
        return Check("signature", "unknown", f"no {key_name} given: the signature cannot be checked")
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        return Check("signature", "failed",
                     f"signature algorithm {report.signature_algo} is not ECDSA P-384 with SHA-384 (1)")
    key = vek.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return Check("signature", "failed", f"the {key_name} certificate does not hold a P-384 key")
    try:
        key.verify(encode_dss_signature(report.signature_r, report.signature_s), report.signed_bytes,
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return Check("signature", "failed",
                     f"the {key_name}'s key does not verify the report's signature over bytes 0..0x2A0")
    except ValueError as exc:
        return Check("signature", "failed", f"the report's signature is malformed: {exc}")
    return Check("signature", "ok", f"ECDSA P-384/SHA-384 over bytes 0..0x2A0 verifies with the {key_name}'s key")


# -- chain ------------------------------------------------------------------------

def _signed_by(issuer: x509.Certificate, subject: x509.Certificate) -> str | None:
    """``None`` when ``issuer``'s RSA key verifies ``subject`` with RSA-PSS SHA-384 salt 48, else why not."""
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return "the signer's key is not an RSA key"
    try:
        key.verify(subject.signature, subject.tbs_certificate_bytes, _PSS, hashes.SHA384())
    except InvalidSignature:
        return "signature does not verify (RSA-PSS, SHA-384, salt 48)"
    return None


def _link(signer: str, subject: str, why: str | None, ok_reason: str = "") -> ChainLink:
    return ChainLink(signer, subject, why is None, why or ok_reason)


def _der_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def pinned_product(ark: x509.Certificate, anchors: Mapping[str, x509.Certificate]) -> str | None:
    """The product whose pinned ARK is byte-identical to ``ark``, or ``None``."""
    der = ark.public_bytes(Encoding.DER)
    return next((name for name, pinned in anchors.items() if pinned.public_bytes(Encoding.DER) == der), None)


def chain_links(vek: x509.Certificate, chain: SnpChain, anchors: Mapping[str, x509.Certificate],
                subject: str = "VCEK") -> list[ChainLink]:
    """The links of ``chain`` for ``vek``: ARK self-signature, ARK pinned, ARK -> ASK, ASK -> VCEK
    (the intermediate named as the chain names it: ARK -> ASVK, ASVK -> VLEK)."""
    product = pinned_product(chain.ark, anchors)
    if product is not None:
        pin = ChainLink("ARK pinned", "", True, f"AMD's {product} ARK")
    else:
        pin = ChainLink("ARK pinned", "", False, f"the ARK of {chain.source} (DER sha256 {_der_sha256(chain.ark)[:16]}..) "
                        f"is not AMD's ARK of {', '.join(anchors) or 'any product'}")
    return [
        _link("ARK", "ARK", _signed_by(chain.ark, chain.ark)),
        pin,
        _link("ARK", chain.intermediate, _signed_by(chain.ark, chain.ask)),
        _link(chain.intermediate, subject, _signed_by(chain.ask, vek)),
    ]


def check_chain(report: SnpReport, vek: x509.Certificate | None, chains: Mapping[str, SnpChain],
                anchors: Mapping[str, x509.Certificate]) -> tuple[Check, tuple[ChainLink, ...], str | None]:
    """The chain check, its links and the product of the pinned ARK it reaches (``None``: it reaches none).

    ``chains``: candidate ASK/ARK (or ASVK/ARK) pairs by label (a product, or the chain file);
    a VCEK is tried only against those whose intermediate is an ASK, a VLEK only against an
    ASVK's (:func:`.snp_roots.pinned_chains`). With several, the first whose intermediate signs
    the key is the one reported (as :mod:`.chain` picks a generation).
    ``anchors``: product -> the ARKs trusted (AMD's: :func:`.snp_roots.pinned_arks`)."""
    subject = "VLEK" if report.signer.signing_key == "VLEK" else "VCEK"
    if vek is None:
        return Check("chain", "unknown", f"no {subject} given: the chain cannot be checked"), (), None
    middle = ASVK if subject == "VLEK" else ASK
    usable = {label: chain for label, chain in chains.items() if chain.intermediate == middle}
    if not usable:
        other = [label for label, chain in chains.items() if chain.intermediate != middle]
        only = "an ASK signs VCEKs" if subject == "VLEK" else "an ASVK signs VLEKs"
        note = f" ({only} only: {', '.join(other)} not used)" if other else ""
        return Check("chain", "unknown", f"no {middle}/ARK given to check the {subject} against{note}"), (), None
    candidates = {label: chain_links(vek, chain, anchors, subject) for label, chain in usable.items()}
    chosen = next((label for label, links in candidates.items() if links[-1].ok), None)
    if chosen is None and len(candidates) > 1:
        link = ChainLink(middle, subject, False, f"no {middle} of {', '.join(candidates)} signs this {subject}")
        return Check("chain", "failed", link.describe()), (link,), None
    label = chosen or next(iter(candidates))
    links = tuple(candidates[label])
    failed = next((link for link in links if not link.ok), None)
    if failed is not None:
        return Check("chain", "failed", failed.describe()), links, None
    product = pinned_product(usable[label].ark, anchors)
    return Check("chain", "ok", f"{subject} <- {middle} <- ARK verified to AMD's {product} ARK"), links, product


# -- the VCEK's extensions against the report ---------------------------------------

def check_vcek_tcb(report: SnpReport, facts: VcekFacts | None, product: str | None) -> Check:
    """REPORTED_TCB equals the TCB the VCEK was derived for, component by component."""
    if facts is None:
        return Check("vcek_tcb", "unknown", "no VCEK given")
    if not facts.tcb:
        return Check("vcek_tcb", "unknown", "the certificate carries no TCB extensions")
    if product is None:
        return Check("vcek_tcb", "unknown", "product unknown: the report's TCB bytes cannot be named")
    reported = report.reported_tcb.components(product)
    compared = [c for c in reported if c in facts.tcb]
    if not compared:
        return Check("vcek_tcb", "unknown", f"the certificate names none of the {product} TCB components")
    differ = [f"{c} {reported[c]} (VCEK {facts.tcb[c]})" for c in compared if reported[c] != facts.tcb[c]]
    if differ:
        return Check("vcek_tcb", "failed", "REPORTED_TCB differs from the VCEK's: " + ", ".join(differ))
    missing = [c for c in reported if c not in facts.tcb]
    note = f"; the certificate has no {', '.join(missing)}" if missing else ""
    return Check("vcek_tcb", "ok", "REPORTED_TCB equals the VCEK's " +
                 " ".join(f"{c}={reported[c]}" for c in compared) + note)


def check_vcek_chip_id(report: SnpReport, facts: VcekFacts | None) -> Check:
    """CHIP_ID equals the VCEK's hwID (a Turin hwID is the chip id's first 8 bytes)."""
    if report.signer.signing_key == "VLEK":  # the question does not exist: nothing to decide
        return Check("vcek_chip_id", "unknown", "a VLEK names no chip: the report is bound to the cloud "
                                                "provider's VLEK, not to one chip's key", asked=False)
    if facts is None:
        return Check("vcek_chip_id", "unknown", "no VCEK given")
    if facts.hwid is None:
        return Check("vcek_chip_id", "unknown", "the certificate carries no hwID (a VLEK has none)")
    if report.chip_id_masked:
        return Check("vcek_chip_id", "unknown", "the report's CHIP_ID is masked (all zero)")
    size = len(facts.hwid)
    if size == len(report.chip_id):
        same = report.chip_id == facts.hwid
    elif size == 8:  # Turin: the key server names the chip by CHIP_ID[0:8], the rest is zero (virtee/snpguest fetch.rs)
        same = report.chip_id[:8] == facts.hwid and not any(report.chip_id[8:])
    else:
        return Check("vcek_chip_id", "failed", f"the VCEK's hwID is {size} bytes, expected 64 (or 8 on Turin)")
    if not same:
        return Check("vcek_chip_id", "failed", f"CHIP_ID {report.chip_id.hex()[:16]}.. is not the VCEK's hwID "
                                               f"{facts.hwid.hex()[:16]}..")
    return Check("vcek_chip_id", "ok", "CHIP_ID equals the VCEK's hwID")


# -- what the owner launched ---------------------------------------------------------

def check_report_data(report: SnpReport, nonce: bytes | None) -> Check:
    if nonce is None:
        return Check("report_data", "unknown", "no nonce given", asked=False)
    if len(nonce) > len(report.report_data):
        return Check("report_data", "failed", f"the nonce is {len(nonce)} bytes, REPORT_DATA holds 64")
    want = nonce.ljust(len(report.report_data), b"\0")
    if report.report_data != want:
        return Check("report_data", "failed", f"REPORT_DATA {report.report_data.hex()[:32]}.. is not the nonce "
                                              f"{want.hex()[:32]}..")
    padded = "" if len(nonce) == 64 else f" ({len(nonce)} bytes, zero-padded to 64)"
    return Check("report_data", "ok", f"REPORT_DATA equals the nonce{padded}")


def check_measurement(report: SnpReport, expected: bytes | None) -> Check:
    if expected is None:
        return Check("measurement", "unknown", "no expected measurement given", asked=False)
    if report.measurement != expected:
        return Check("measurement", "failed", f"MEASUREMENT {report.measurement.hex()} is not the expected "
                                              f"{expected.hex()}")
    return Check("measurement", "ok", f"MEASUREMENT equals the expected {expected.hex()[:16]}..")


def check_policy_equals(report: SnpReport, expected: int | None) -> Check:
    if expected is None:
        return Check("policy", "unknown", "no launched policy given", asked=False)
    if report.policy.raw != expected:
        return Check("policy", "failed", f"POLICY {report.policy.raw:#x} is not the launched {expected:#x}")
    return Check("policy", "ok", f"POLICY equals the launched {expected:#x}")


def check_vmpl(report: SnpReport, expected: int | None) -> Check:
    if expected is None:
        return Check("vmpl", "unknown", f"no expected VMPL given; the report's is {report.vmpl}", asked=False)
    if report.vmpl != expected:
        return Check("vmpl", "failed", f"VMPL {report.vmpl} is not the expected {expected}")
    return Check("vmpl", "ok", f"VMPL {report.vmpl}")


def check_min_tcb(report: SnpReport, minimum: MinTcb | None, product: str | None) -> Check:
    """Every component of REPORTED_TCB at least its minimum (components compare on their own)."""
    if minimum is None:
        return Check("min_tcb", "unknown", "no minimum TCB given", asked=False)
    if product is None:
        return Check("min_tcb", "unknown", "product unknown: the report's TCB bytes cannot be named")
    want = minimum.components(product) if isinstance(minimum, TcbVersion) else dict(minimum)
    reported = report.reported_tcb.components(product)
    foreign = sorted(set(want) - set(reported))
    if foreign:
        return Check("min_tcb", "unknown", f"{', '.join(foreign)} is not a {product} TCB component "
                                           f"({', '.join(reported)})")
    below = [f"{c} {reported[c]} < {v}" for c, v in want.items() if reported[c] < v]
    if below:
        return Check("min_tcb", "failed", "REPORTED_TCB below the minimum: " + ", ".join(below))
    return Check("min_tcb", "ok", "REPORTED_TCB " + " ".join(f"{c}={reported[c]}>={v}" for c, v in want.items()))


def check_debug(report: SnpReport, allow_debug: bool) -> Check:
    if not report.policy.debug:
        return Check("debug", "ok", "policy bit 19 (DEBUG) is off")
    if allow_debug:
        return Check("debug", "ok", "policy bit 19 (DEBUG) is on, allowed")
    return Check("debug", "failed", f"policy {report.policy.raw:#x} has bit 19 (DEBUG) on: the host may decrypt "
                                    "the guest's memory (allow debugging explicitly, --allow-debug, to accept)")


# -- the verdict ------------------------------------------------------------------

def parse_min_tcb(text: str) -> MinTcb:
    """``bootloader=2,tee=0,snp=5,microcode=68`` (``fmc=`` on Turin) or a raw TCB_VERSION such as ``0x4405000000000002``."""
    text = text.strip()
    if "=" not in text:
        try:
            return TcbVersion(int(text, 0))
        except ValueError:
            raise FormatError(f"minimum TCB {text!r}: expected component=N,... or a TCB_VERSION number")
    known = {c for layout in TCB_LAYOUTS.values() for c in layout}
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        name = name.strip().lower()
        if name not in known:
            raise FormatError(f"minimum TCB: unknown component {name!r} (known: {', '.join(sorted(known))})")
        try:
            level = int(value, 0)
        except ValueError:
            raise FormatError(f"minimum TCB: {name}={value!r} is not a number")
        if not 0 <= level <= 255:
            raise FormatError(f"minimum TCB: {name}={level} is not a security patch level (0..255)")
        out[name] = level
    return out


def resolve_product(given: str | None, chain_product: str | None, facts: VcekFacts | None,
                    report: SnpReport) -> str | None:
    """The product whose TCB layout applies: given, else the chain's, the VCEK's, the report's CPUID."""
    for candidate in (given, chain_product, facts.product if facts else None, report.product_from_cpuid()):
        if candidate in TCB_LAYOUTS:
            return candidate
    return None


def verify_snp_report(report: SnpReport, vek: x509.Certificate | None, chains: Mapping[str, SnpChain],
                      anchors: Mapping[str, x509.Certificate], expect: Expectations = Expectations(),
                      product: str | None = None) -> SnpVerdict:  # pragma: no mutate, "" names no product, as None
    """Every check on ``report``; ``chains`` the candidate ASK/ARK (ASVK/ARK for a VLEK) by product,
    ``anchors`` the pinned ARKs."""
    facts = vcek_facts(vek) if vek is not None else None
    chain_check, links, chain_product = check_chain(report, vek, chains, anchors)
    the_product = resolve_product(product, chain_product, facts, report)
    checks = (
        check_signature(report, vek),
        chain_check,
        check_vcek_tcb(report, facts, the_product),
        check_vcek_chip_id(report, facts),
        check_debug(report, expect.allow_debug),
        check_report_data(report, expect.nonce),
        check_measurement(report, expect.measurement),
        check_policy_equals(report, expect.policy),
        check_vmpl(report, expect.vmpl),
        check_min_tcb(report, expect.min_tcb, the_product),
    )
    return SnpVerdict(report, the_product, checks, links)


__all__ = ["Check", "ChainLink", "Expectations", "SnpVerdict", "MinTcb", "check_signature", "check_chain",
           "chain_links", "pinned_product", "check_vcek_tcb", "check_vcek_chip_id", "check_report_data", "check_measurement",
           "check_policy_equals", "check_vmpl", "check_min_tcb", "check_debug", "parse_min_tcb",
           "resolve_product", "verify_snp_report"]
