"""Verification of an SEV platform's certificate chain, link by link.

Why: the owner wraps the launch keys for the platform's PDH; a PDH the owner
cannot trace to AMD may belong to anyone (a hypervisor in the middle). The
chain is ``PDH <- PEK <- OCA`` (owner's CA, self-signed) and
``PEK <- CEK <- ASK <- ARK`` (AMD). Every link is reported on its own so a
failure names the certificate at fault instead of "chain invalid".

The CEK in QMP's ``cert-chain`` is the one PDH_CERT_EXPORT returns; the CEK
signed by AMD's ASK is fetched from AMD's key server by chip id. Without that
file the verdict says the chain is anchored at the PEK only (the PEK is
proven to sign the PDH, but nothing ties the PEK to AMD).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .cacert import CaCert
from .errors import ChainError
from .qmpdata import qmp_bytes
from .sevcert import USAGE_CEK, USAGE_OCA, USAGE_PDH, USAGE_PEK, SevCert, parse_sev_cert, split_certs
from .sigverify import verify_ca_by_ca, verify_sev_by_ca, verify_sev_by_sev


@dataclass(frozen=True)
class Link:
    """One signature in the chain; ``ok`` is ``None`` when it was not checked."""

    signer: str
    subject: str
    ok: bool | None
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.signer} (self-signed)" if self.signer == self.subject else f"{self.signer} -> {self.subject}"

    def describe(self) -> str:
        state = {True: "ok", False: "FAILED", None: "not checked"}[self.ok]
        return f"{self.name}: {state}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ChainVerdict:
    """The links checked and how far up the PDH is anchored (``"ARK"`` or ``"PEK"``)."""

    links: tuple[Link, ...]
    anchored_to: str
    generation: str | None
    pdh: SevCert

    @property
    def ok(self) -> bool:
        return not any(link.ok is False for link in self.links)

    @property
    def failed(self) -> Link | None:
        """The first failing link, top of the chain first."""
        return next((link for link in self.links if link.ok is False), None)

    @property
    def fully_anchored(self) -> bool:
        return self.ok and self.anchored_to == "ARK"

    def describe(self) -> str:
        if not self.ok:
            head = f"certificate chain INVALID at {self.failed.name}"  # type: ignore[union-attr]
        elif self.anchored_to == "ARK":
            head = f"certificate chain verified up to AMD's {self.generation} ARK"
        else:
            head = "certificate chain verified up to the PEK only (no ASK-signed CEK supplied)"
        return head + ": " + "; ".join(link.describe() for link in self.links)


def from_qmp(pdh_b64: str, cert_chain_b64: str) -> tuple[SevCert, list[SevCert]]:
    """``query-sev-capabilities``' ``pdh`` and ``cert-chain`` as certificates."""
    pdh = parse_sev_cert(qmp_bytes(pdh_b64, "pdh"), "pdh")
    return pdh, split_certs(qmp_bytes(cert_chain_b64, "cert-chain"), "cert-chain")


def _pick(certs: Iterable[SevCert], usage: int, name: str, required: bool) -> SevCert | None:
    found = [c for c in certs if c.usage == usage]
    if len(found) > 1:
        raise ChainError(f"the chain holds {len(found)} {name} certificates, expected one")
    if not found and required:
        raise ChainError(f"the chain holds no {name} certificate")
    return found[0] if found else None


def _link(signer: str, subject: str, why: str | None) -> Link:
    return Link(signer, subject, why is None, why or "")


def verify_chain(pdh: SevCert, chain: Iterable[SevCert], roots: Mapping[str, tuple[CaCert, CaCert]],
                 cek: SevCert | None = None, generation: str | None = None) -> ChainVerdict:
    """Verify ``pdh`` and the platform ``chain`` (PEK, OCA, optionally CEK).

    ``roots``: generation -> (ARK, ASK) (see :mod:`.amdroots`). ``cek``: the
    ASK-signed CEK from AMD's key server; without it the verdict is anchored
    at the PEK. ``generation``: which roots to use; ``None`` tries each
    generation whose ASK signs the CEK.
    """
    if pdh.usage != USAGE_PDH:
        raise ChainError(f"the PDH certificate has usage {pdh.name}")
    certs = list(chain)
    pek = _pick(certs, USAGE_PEK, "PEK", True)
    oca = _pick(certs, USAGE_OCA, "OCA", True)
    chain_cek = _pick(certs, USAGE_CEK, "CEK", False)
    assert pek is not None and oca is not None
    the_cek = cek if cek is not None else chain_cek

    links: list[Link] = []
    gen = None
    if cek is not None:
        if cek.usage != USAGE_CEK:
            raise ChainError(f"the supplied CEK file holds a {cek.name} certificate")
        gen = generation or _generation_of(cek, roots)
        if gen is None:
            links.append(Link("ASK", "CEK", False,
                              f"no ASK of {', '.join(roots) or 'any generation'} signs this CEK"))
        else:
            if gen not in roots:
                raise ChainError(f"no ARK/ASK loaded for generation {gen!r}")
            ark, ask = roots[gen]
            if ark.signature is None:
                links.append(Link("ARK", "ARK", None,
                                  "no self-signature in this encoding; trusted as the pinned anchor"))
            else:
                links.append(_link("ARK", "ARK", verify_ca_by_ca(ark, ark)))
            links.append(_link("ARK", "ASK", verify_ca_by_ca(ark, ask)))
            links.append(_link("ASK", "CEK", verify_sev_by_ca(ask, cek)))
    else:
        links.append(Link("ASK", "CEK", None, "no ASK-signed CEK supplied; fetch it from AMD's key server by chip id"))
    links.append(_link("OCA", "OCA", verify_sev_by_sev(oca, oca)))
    links.append(_link("OCA", "PEK", verify_sev_by_sev(oca, pek)))
    if the_cek is not None:
        links.append(_link("CEK", "PEK", verify_sev_by_sev(the_cek, pek)))
    else:
        links.append(Link("CEK", "PEK", None, "no CEK in the chain"))
    links.append(_link("PEK", "PDH", verify_sev_by_sev(pek, pdh)))
    anchored = "ARK" if cek is not None and gen is not None else "PEK"
    return ChainVerdict(tuple(links), anchored, gen, pdh)


def _generation_of(cek: SevCert, roots: Mapping[str, tuple[CaCert, CaCert]]) -> str | None:
    for gen, (_ark, ask) in roots.items():
        if verify_sev_by_ca(ask, cek) is None:
            return gen
    return None
