"""Verification of an SEV platform's certificate chain, link by link, up to AMD's ARK.

Why: the owner wraps the launch keys (TEK/TIK) for the platform's PDH. A PDH
the owner cannot trace to AMD may belong to anyone (a hypervisor in the
middle), and whoever holds its private key learns the TIK and so can forge
the measurement MAC. The chain is ``PDH <- PEK``, ``PEK <- OCA`` (owner's
CA, self-signed) and ``PEK <- CEK <- ASK <- ARK`` (AMD). The verdict is
``ok`` only when every one of those links verifies with the ARK/ASK of the
platform's generation; anything short of that (a link that fails, a CEK no
ASK signs, no CEK at all) is a failure naming the link, never a partial
pass. Every link is reported on its own so a failure names the certificate
at fault instead of "chain invalid".

The CEK is the one in QMP's ``cert-chain`` (PDH_CERT_EXPORT) or, for
platforms whose exported CEK lacks the ASK's signature, AMD's signed copy
given as a file (AMD's key server serves it by chip id); either is tried
against the ASK of each generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .cacert import CaCert
from .errors import ChainError
from .qmpdata import qmp_bytes
from .sevcert import USAGE_ASK, USAGE_CEK, USAGE_OCA, USAGE_PDH, USAGE_PEK, SevCert, parse_sev_cert, split_certs
from .sigverify import verify_ca_by_ca, verify_sev_by_ca, verify_sev_by_sev

Roots = Mapping[str, tuple[CaCert, CaCert]]

#: what to do when the platform's CEK is not the AMD-signed one
CEK_HINT = "give AMD's signed CEK of this chip (AMD's key server, by chip id) with --sev-cek FILE"


@dataclass(frozen=True)
class Link:
    """One signature in the chain; ``ok`` is ``None`` when it was not checked.

    ``required`` is False only for the ARK's self-signature when the ARK's
    encoding carries none: the ARK is trusted because it is pinned, not
    because it signs itself, so a missing self-signature loses nothing."""

    signer: str
    subject: str
    ok: bool | None
    reason: str = ""
    required: bool = True

    @property
    def holds(self) -> bool:
        return self.ok is True or (self.ok is None and self.required is False)

    @property
    def name(self) -> str:
        return f"{self.signer} (self-signed)" if self.signer == self.subject else f"{self.signer} -> {self.subject}"

    def describe(self) -> str:
        state = {True: "ok", False: "FAILED", None: "not checked"}[self.ok]
        return f"{self.name}: {state}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ChainVerdict:
    """The links checked and the generation whose ARK/ASK certify the CEK (``None``: none does)."""

    links: tuple[Link, ...]
    generation: str | None
    pdh: SevCert

    @property
    def failed(self) -> Link | None:
        """The first link that does not hold, top of the chain first."""
        return next((link for link in self.links if not link.holds), None)

    @property
    def ok(self) -> bool:
        """Every link holds: the PDH is anchored to AMD's ARK of ``generation``."""
        return self.failed is None

    @property
    def fully_anchored(self) -> bool:
        """The same as :attr:`ok` (there is no partial anchor)."""
        return self.ok

    def describe(self) -> str:
        failed = self.failed
        links = "; ".join(link.describe() for link in self.links)
        if failed is None:
            return f"certificate chain verified up to AMD's {self.generation} ARK: {links}"
        return f"certificate chain not anchored to AMD's ARK: {failed.describe()}; links: {links}"


def from_qmp(pdh_b64: str, cert_chain_b64: str) -> tuple[SevCert, list[SevCert]]:
    """``query-sev-capabilities``' ``pdh`` and ``cert-chain`` as certificates."""
    pdh = parse_sev_cert(qmp_bytes(pdh_b64, "pdh"), "pdh")
    return pdh, split_certs(qmp_bytes(cert_chain_b64, "cert-chain"), "cert-chain")


def _pick(certs: Iterable[SevCert], usage: int, name: str) -> SevCert | None:
    """The chain's one certificate of ``usage``, or ``None``; two are an error."""
    found = [c for c in certs if c.usage == usage]
    if len(found) > 1:
        raise ChainError(f"the chain holds {len(found)} {name} certificates, expected one")
    return found[0] if found else None


def _need(certs: Iterable[SevCert], usage: int, name: str) -> SevCert:
    cert = _pick(certs, usage, name)
    if cert is None:
        raise ChainError(f"the chain holds no {name} certificate")
    return cert


def _link(signer: str, subject: str, why: str | None) -> Link:
    return Link(signer, subject, why is None, why or "")


def _generation_of(cek: SevCert, roots: Roots) -> str | None:
    """The first generation whose ASK signs ``cek``."""
    for gen, (_ark, ask) in roots.items():
        if verify_sev_by_ca(ask, cek) is None:
            return gen
    return None


def _no_ask_signs(cek: SevCert, roots: Roots) -> str:
    """Why no generation was found for ``cek``, with what to do about it."""
    if not any(slot.usage == USAGE_ASK for slot in cek.signatures()):
        return f"the CEK carries no ASK signature (the firmware's own copy): {CEK_HINT}"
    return f"no ASK of {', '.join(roots) or 'any generation'} signs this CEK: {CEK_HINT}"


def _amd_links(cek: SevCert | None, roots: Roots, generation: str | None) -> tuple[list[Link], str | None]:
    """ARK (self), ARK -> ASK, ASK -> CEK, and the generation they belong to."""
    if cek is None:
        return [Link("ASK", "CEK", False, f"no CEK: the platform's chain holds none; {CEK_HINT}")], None
    gen = generation or _generation_of(cek, roots)
    if gen is None:
        return [Link("ASK", "CEK", False, _no_ask_signs(cek, roots))], None
    if gen not in roots:
        raise ChainError(f"no ARK/ASK loaded for generation {gen!r}")
    ark, ask = roots[gen]
    if ark.signature is None:
        ark_self = Link("ARK", "ARK", None, "no self-signature in this encoding; trusted as the pinned anchor",
                        required=False)
    else:
        ark_self = _link("ARK", "ARK", verify_ca_by_ca(ark, ark))
    return [ark_self, _link("ARK", "ASK", verify_ca_by_ca(ark, ask)),
            _link("ASK", "CEK", verify_sev_by_ca(ask, cek))], gen


def verify_chain(pdh: SevCert, chain: Iterable[SevCert], roots: Roots,
                 cek: SevCert | None = None, generation: str | None = None) -> ChainVerdict:
    """Verify ``pdh`` and the platform ``chain`` (PEK, OCA, CEK) up to an ARK of ``roots``.

    ``roots``: generation -> (ARK, ASK), the trust anchors (AMD's:
    :func:`.amdroots.load_all_roots`). ``cek``: AMD's signed CEK, used
    instead of the chain's own. ``generation``: which roots to use;
    ``None`` takes the generation whose ASK signs the CEK.
    """
    if pdh.usage != USAGE_PDH:
        raise ChainError(f"the PDH certificate has usage {pdh.name}")
    if cek is not None and cek.usage != USAGE_CEK:
        raise ChainError(f"the supplied CEK file holds a {cek.name} certificate")
    certs = list(chain)
    pek = _need(certs, USAGE_PEK, "PEK")
    oca = _need(certs, USAGE_OCA, "OCA")
    chain_cek = _pick(certs, USAGE_CEK, "CEK")
    the_cek = cek if cek is not None else chain_cek

    links, gen = _amd_links(the_cek, roots, generation)
    links.append(_link("OCA", "OCA", verify_sev_by_sev(oca, oca)))
    links.append(_link("OCA", "PEK", verify_sev_by_sev(oca, pek)))
    if the_cek is not None:
        links.append(_link("CEK", "PEK", verify_sev_by_sev(the_cek, pek)))
    else:
        links.append(Link("CEK", "PEK", False, "no CEK to check the PEK with"))
    links.append(_link("PEK", "PDH", verify_sev_by_sev(pek, pdh)))
    return ChainVerdict(tuple(links), gen, pdh)
