"""What AMD's key server writes into a VCEK: the product, the TCB it was derived for, the chip id.

Why: a VCEK is derived from one chip's secret and one TCB. A report whose
reported TCB or chip id differs from what its VCEK was issued for was signed
by a key of another TCB (a rolled-back firmware whose VCEK someone kept) or
another chip; the extensions let the verifier say so.

The extensions (OID prefix 1.3.6.1.4.1.3704.1, AMD's VCEK/KDS spec 57230;
names and encodings as read by google/go-sev-guest ``kds/kds.go``
``Oid*`` and ``kdsOidMapToExtensions``, and virtee/snpguest
``src/verify.rs`` ``SnpOid``)::

    .1     structVersion  INTEGER
    .2     productName1   IA5String, e.g. "Milan-B0"
    .3.1   blSPL          INTEGER (bootloader)
    .3.2   teeSPL         INTEGER
    .3.3   snpSPL         INTEGER
    .3.4-7 spl_4..spl_7   INTEGER (reserved)
    .3.8   ucodeSPL       INTEGER (microcode)
    .3.9   fmcSPL         INTEGER (Turin only; snpguest ``SnpOid::Fmc``)
    .4     hwID           the chip id: 64 raw bytes (the key server omits the
                          OCTET STRING tag) or an OCTET STRING; VCEK only
    .5     cspID          IA5String; VLEK only
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from .errors import FormatError

KDS_OID_PREFIX = "1.3.6.1.4.1.3704.1"
OID_PRODUCT_NAME = f"{KDS_OID_PREFIX}.2"
OID_HWID = f"{KDS_OID_PREFIX}.4"
#: TCB component -> OID of its security patch level
TCB_OIDS: dict[str, str] = {
    "bootloader": f"{KDS_OID_PREFIX}.3.1",
    "tee": f"{KDS_OID_PREFIX}.3.2",
    "snp": f"{KDS_OID_PREFIX}.3.3",
    "microcode": f"{KDS_OID_PREFIX}.3.8",
    "fmc": f"{KDS_OID_PREFIX}.3.9",
}
_DER_INTEGER = 0x02
_DER_OCTET_STRING = 0x04
_DER_IA5STRING = 0x16
CHIP_ID_SIZE = 64


@dataclass(frozen=True)
class VcekFacts:
    """The KDS extensions of one VCEK/VLEK certificate; a field is ``None`` when the certificate lacks it."""

    product_name: str | None
    tcb: dict[str, int]
    hwid: bytes | None

    @property
    def product(self) -> str | None:
        """``milan``/``genoa``/``turin`` from ``productName1`` (``Milan-B0`` -> ``milan``)."""
        if not self.product_name:
            return None
        return self.product_name.split("-", 1)[0].strip().lower() or None


def _der_value(data: bytes, tag: int, what: str) -> bytes:
    """The value of one short-form DER element of ``tag`` that fills ``data``."""
    if len(data) < 2 or data[0] != tag:
        raise FormatError(f"VCEK extension {what}: expected DER tag {tag:#x}, got {data[:1].hex() or 'nothing'}")
    length = data[1]
    if length & 0x80 or 2 + length != len(data):
        raise FormatError(f"VCEK extension {what}: malformed DER length")
    return data[2:]


def _integer(data: bytes, what: str) -> int:
    value = _der_value(data, _DER_INTEGER, what)
    number = int.from_bytes(value, "big", signed=True)
    if not 0 <= number <= 255:
        raise FormatError(f"VCEK extension {what}: {number} is not a security patch level (0..255)")
    return number


#: Turin's VCEKs carry only the first 8 bytes of the chip id
TURIN_HWID_SIZE = 8


def _hwid(data: bytes) -> bytes:
    # the key server's untagged form: 64 bytes (Milan, Genoa) or 8 (Turin; virtee/snpguest
    # PR #159). Unambiguous: a tagged 8-byte OCTET STRING is 10 bytes long.
    if len(data) in (CHIP_ID_SIZE, TURIN_HWID_SIZE):
        return data
    return _der_value(data, _DER_OCTET_STRING, "hwID")


def vcek_facts(cert: x509.Certificate) -> VcekFacts:
    """The KDS extensions of ``cert`` (AMD-specific, so ``cryptography`` leaves them undecoded)."""
    raw: dict[str, bytes] = {}
    for ext in cert.extensions:
        if isinstance(ext.value, x509.UnrecognizedExtension):
            raw[ext.oid.dotted_string] = ext.value.value
    name = None
    if OID_PRODUCT_NAME in raw:
        name = _der_value(raw[OID_PRODUCT_NAME], _DER_IA5STRING, "productName1").decode("ascii", "replace")
    tcb = {comp: _integer(raw[oid], comp) for comp, oid in TCB_OIDS.items() if oid in raw}
    hwid = _hwid(raw[OID_HWID]) if OID_HWID in raw else None
    return VcekFacts(name, tcb, hwid)


__all__ = ["KDS_OID_PREFIX", "TCB_OIDS", "OID_HWID", "OID_PRODUCT_NAME", "VcekFacts", "vcek_facts"]
