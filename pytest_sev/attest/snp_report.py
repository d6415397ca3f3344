"""The SEV-SNP attestation report (ATTESTATION_REPORT, 0x4A0 bytes): bytes in, a typed value out.

Why a parser of its own: an SNP guest's launch measurement is not given by
QEMU (``query-sev-launch-measure`` is SEV/SEV-ES only); it is read from the
report the guest asks its PSP for, signed by the chip's VCEK. Every verdict
on an SNP guest (measurement, policy, nonce, TCB) is a field of this
report, so the fields are decoded in one place and a report the firmware
could not have produced (wrong size, unknown version, reserved bits set) is
refused here, before any check sees it.

Layout (SNP ABI spec 56860, Table "ATTESTATION_REPORT"; offsets as read by
google/go-sev-guest ``abi/abi.go`` ``ReportToProto`` and virtee/sev
``src/firmware/guest/types/snp.rs`` ``AttestationReport``; every offset is
also recorded in ``shared/data/snp-kat/kat.json`` ``report_layout``)::

    0x000 VERSION u32        0x004 GUEST_SVN u32      0x008 POLICY u64
    0x010 FAMILY_ID[16]      0x020 IMAGE_ID[16]       0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32 0x038 CURRENT_TCB u64    0x040 PLATFORM_INFO u64
    0x048 signer info u32 (bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY)
    0x04C reserved           0x050 REPORT_DATA[64]    0x090 MEASUREMENT[48]
    0x0C0 HOST_DATA[32]      0x0E0 ID_KEY_DIGEST[48]  0x110 AUTHOR_KEY_DIGEST[48]
    0x140 REPORT_ID[32]      0x160 REPORT_ID_MA[32]   0x180 REPORTED_TCB u64
    0x188 CPUID fam, model, stepping (version >= 3; reserved before)
    0x1A0 CHIP_ID[64]        0x1E0 COMMITTED_TCB u64  0x1E8 CURRENT build, minor, major
    0x1EC COMMITTED build, minor, major                0x1F0 LAUNCH_TCB u64
    0x1F8 LAUNCH_MIT_VECTOR u64, 0x200 CURRENT_MIT_VECTOR u64 (version >= 5; reserved before)
    0x2A0 SIGNATURE: R[72] then S[72], little-endian (ECDSA P-384 with SHA-384 over 0x000..0x2A0)

Versions: 2, 3, 4 and 5 are accepted, anything else refused. Sources:
go-sev-guest ``abi/abi.go`` (``MinSupportedReportVersion = 2``,
``MaxSupportedReportVersion = 5``; ``ValidateReportFormat`` refuses the
rest) and virtee/sev ``snp.rs`` ``ReportVariant`` (0 and 1 unsupported; 3
and 4 share a layout; 5 adds the mitigation vectors). Version 3 added the
CPUID family/model/stepping bytes at 0x188; version 5 the mitigation vectors
at 0x1F8/0x200. A version above 5 is refused rather than read as 5 (virtee's
fallback): its layout is not published, so a check could read a field that
moved. The reserved ranges must be zero (go-sev-guest's ``mbz`` checks), so
a version-2 report with CPUID bytes set is refused while the same bytes in a
version-3 report are its CPUID.

TCB_VERSION (u64) has two layouts, chosen by the product (virtee/sev
``src/firmware/host/types/snp.rs`` ``TcbVersion::from_legacy_bytes`` /
``from_turin_bytes``): Milan and Genoa: byte 0 bootloader, 1 TEE, 6 SNP,
7 microcode; Turin: byte 0 FMC, 1 bootloader, 2 TEE, 3 SNP, 7 microcode.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Literal

from ..sev.policy import (
    SNP_DEBUG,
    SNP_KNOWN_MASK,
    SNP_MIGRATE_MA,
    SNP_POLICY_BITS,
    SNP_RESERVED_ONE,
    SNP_SINGLE_SOCKET,
    SNP_SMT,
)
from .errors import FormatError

REPORT_SIZE = 0x4A0
#: the signature covers every byte before it
SIGNED_SIZE = 0x2A0
SIG_R_OFFSET = 0x2A0
SIG_S_OFFSET = 0x2E8
SIG_COMPONENT_SIZE = 72
#: SIGNATURE_ALGO 1: ECDSA P-384 with SHA-384 (SNP ABI spec, "Signature algorithm encodings")
SIG_ALGO_ECDSA_P384_SHA384 = 1

SUPPORTED_VERSIONS: tuple[int, ...] = (2, 3, 4, 5)

Product = Literal["milan", "genoa", "turin"]
PRODUCTS: tuple[Product, ...] = ("milan", "genoa", "turin")

# -- policy bits: the launch's own table (sev/policy.SNP_POLICY_BITS, SNP ABI "GUEST_POLICY"),
#: so a report and a launch name a bit alike; bits the table does not name must be zero
_POLICY_FLAG_NAMES = {mask: name.lower() for mask, name, _ in SNP_POLICY_BITS if mask != SNP_RESERVED_ONE}
_POLICY_MBZ_MASK = ~SNP_KNOWN_MASK & 0xFFFF_FFFF_FFFF_FFFF

#: SIGNING_KEY values (bits 4:2 of the signer info); 2..6 reserved
SIGNING_KEYS = {0: "VCEK", 1: "VLEK", 7: "none"}

#: per product layout: component -> byte index in TCB_VERSION
TCB_LAYOUTS: dict[str, dict[str, int]] = {
    "milan": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "genoa": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "turin": {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}


@dataclass(frozen=True)
class TcbVersion:
    """A TCB_VERSION u64; its components depend on the product (see the module doc)."""

    raw: int

    def components(self, product: str) -> dict[str, int]:
        """Security patch level of each component, by the layout of ``product``."""
        layout = TCB_LAYOUTS.get(product)
        if layout is None:
            raise FormatError(f"no TCB layout for product {product!r}: expected one of {', '.join(TCB_LAYOUTS)}")
        data = self.raw.to_bytes(8, "little")
        return {name: data[at] for name, at in layout.items()}

    def describe(self, product: str) -> str:
        parts = " ".join(f"{k}={v}" for k, v in self.components(product).items())
        return f"{self.raw:#018x} ({parts})"


@dataclass(frozen=True)
class SnpPolicy:
    """GUEST_POLICY decoded; ``raw`` is what the owner launched with (compare that, not the flags)."""

    raw: int

    @property
    def abi_minor(self) -> int:
        return self.raw & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.raw >> 8) & 0xFF

    @property
    def smt(self) -> bool:
        return bool(self.raw & SNP_SMT)

    @property
    def migrate_ma(self) -> bool:
        return bool(self.raw & SNP_MIGRATE_MA)

    @property
    def debug(self) -> bool:
        return bool(self.raw & SNP_DEBUG)

    @property
    def single_socket(self) -> bool:
        return bool(self.raw & SNP_SINGLE_SOCKET)

    def flags(self) -> dict[str, bool]:
        return {name: bool(self.raw & mask) for mask, name in _POLICY_FLAG_NAMES.items()}

    def describe(self) -> str:
        on = [name for name, v in self.flags().items() if v]
        return f"{self.raw:#x} (ABI >= {self.abi_major}.{self.abi_minor}; {', '.join(on) or 'no flags'})"


def check_policy(raw: int, what: str = "policy") -> SnpPolicy:
    """``raw`` as a policy the firmware accepts: bit 17 set, bits 26..63 zero (go-sev-guest ``ParseSnpPolicy``)."""
    if not raw & SNP_RESERVED_ONE:
        raise FormatError(f"{what} {raw:#x}: reserved bit 17 must be 1")
    if raw & _POLICY_MBZ_MASK:
        raise FormatError(f"{what} {raw:#x}: reserved bits 26..63 must be zero")
    return SnpPolicy(raw)


@dataclass(frozen=True)
class SignerInfo:
    """The signer info word at 0x48: which key signed, whether the chip id is masked."""

    raw: int

    @property
    def author_key_en(self) -> bool:
        return bool(self.raw & 1)

    @property
    def mask_chip_key(self) -> bool:
        return bool(self.raw & 2)

    @property
    def signing_key(self) -> str:
        """``VCEK``, ``VLEK`` or ``none`` (an unsigned report)."""
        return SIGNING_KEYS[(self.raw >> 2) & 7]


@dataclass(frozen=True)
class SnpReport:
    """Every field of one ATTESTATION_REPORT; ``raw`` keeps the exact bytes the signature covers."""

    version: int
    guest_svn: int
    policy: SnpPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: int
    signer: SignerInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fms: tuple[int, int, int] | None
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: tuple[int, int, int]
    committed_version: tuple[int, int, int]
    launch_tcb: TcbVersion
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: int
    signature_s: int
    raw: bytes

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_SIZE]

    @property
    def chip_id_masked(self) -> bool:
        return not any(self.chip_id)

    def product_from_cpuid(self) -> Product | None:
        """The product named by the CPUID bytes (version >= 3), or ``None``.

        Family/model ranges as in virtee/sev ``src/lib.rs`` ``Generation::identify_cpu``:
        family 0x19 model 0x00-0x0F Milan, 0x10-0x1F or 0xA0-0xAF Genoa; family 0x1A model
        0x00-0x11 Turin."""
        if self.cpuid_fms is None:
            return None
        family, model, _stepping = self.cpuid_fms
        if family == 0x19 and model <= 0x0F:
            return "milan"
        if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
            return "genoa"
        if family == 0x1A and model <= 0x11:
            return "turin"
        return None


def report_bytes(data: bytes | str) -> bytes:
    """The report's bytes from raw bytes or hex text (whitespace and a ``0x`` prefix allowed)."""
    if isinstance(data, bytes) and len(data) == REPORT_SIZE:
        return data
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    compact = "".join(text.split())
    if compact[:2].lower() == "0x":
        compact = compact[2:]
    if len(compact) == 2 * REPORT_SIZE:
        try:
            return binascii.unhexlify(compact)
        except (binascii.Error, ValueError) as exc:
            raise FormatError(f"report text is not hex: {exc}") from exc
    size = len(data) if isinstance(data, bytes) else len(compact) // 2
    raise FormatError(f"an SNP attestation report is {REPORT_SIZE:#x} bytes (or {2 * REPORT_SIZE} hex digits); "
                      f"got {size} {'bytes' if isinstance(data, bytes) else 'hex bytes'}")


def _mbz(data: bytes, lo: int, hi: int, why: str) -> None:
    if any(data[lo:hi]):
        raise FormatError(f"reserved bytes {lo:#x}..{hi:#x} are not zero ({why}): {data[lo:hi].hex()}")


def _u32(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<I", data, at)[0])


def _u64(data: bytes, at: int) -> int:
    return int(struct.unpack_from("<Q", data, at)[0])


def parse_report(data: bytes | str) -> SnpReport:
    """One attestation report as raw bytes or hex text, or a :class:`FormatError` saying why not."""
    raw = report_bytes(data)
    version = _u32(raw, 0x00)
    if version not in SUPPORTED_VERSIONS:
        raise FormatError(f"report version {version} is not supported (known layouts: versions "
                          f"{', '.join(map(str, SUPPORTED_VERSIONS))})")
    policy = check_policy(_u64(raw, 0x08), "report policy")
    signer_raw = _u32(raw, 0x48)
    if signer_raw >> 5:
        raise FormatError(f"signer info {signer_raw:#x}: reserved bits 5..31 must be zero")
    if (signer_raw >> 2) & 7 not in SIGNING_KEYS:
        raise FormatError(f"signer info {signer_raw:#x}: SIGNING_KEY {(signer_raw >> 2) & 7} is reserved")
    _mbz(raw, 0x4C, 0x50, "after the signer info")
    cpuid: tuple[int, int, int] | None = None
    if version >= 3:
        cpuid = (raw[0x188], raw[0x189], raw[0x18A])
        _mbz(raw, 0x18B, 0x1A0, "after the CPUID bytes")
    else:
        _mbz(raw, 0x188, 0x1A0, "version 2 has no CPUID bytes")
    _mbz(raw, 0x1EB, 0x1EC, "after the current version")
    _mbz(raw, 0x1EF, 0x1F0, "after the committed version")
    launch_mit: int | None = None
    current_mit: int | None = None
    if version >= 5:
        launch_mit, current_mit = _u64(raw, 0x1F8), _u64(raw, 0x200)
        _mbz(raw, 0x208, SIGNED_SIZE, "after the mitigation vectors")
    else:
        _mbz(raw, 0x1F8, SIGNED_SIZE, f"version {version} has no mitigation vectors")
    algo = _u32(raw, 0x34)
    if algo == SIG_ALGO_ECDSA_P384_SHA384:
        _mbz(raw, SIG_S_OFFSET + SIG_COMPONENT_SIZE, REPORT_SIZE, "after the ECDSA signature")
    return SnpReport(
        version=version, guest_svn=_u32(raw, 0x04), policy=policy,
        family_id=raw[0x10:0x20], image_id=raw[0x20:0x30], vmpl=_u32(raw, 0x30), signature_algo=algo,
        current_tcb=TcbVersion(_u64(raw, 0x38)), platform_info=_u64(raw, 0x40), signer=SignerInfo(signer_raw),
        report_data=raw[0x50:0x90], measurement=raw[0x90:0xC0], host_data=raw[0xC0:0xE0],
        id_key_digest=raw[0xE0:0x110], author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160], report_id_ma=raw[0x160:0x180], reported_tcb=TcbVersion(_u64(raw, 0x180)),
        cpuid_fms=cpuid, chip_id=raw[0x1A0:0x1E0], committed_tcb=TcbVersion(_u64(raw, 0x1E0)),
        current_version=(raw[0x1EA], raw[0x1E9], raw[0x1E8]),
        committed_version=(raw[0x1EE], raw[0x1ED], raw[0x1EC]),
        launch_tcb=TcbVersion(_u64(raw, 0x1F0)), launch_mit_vector=launch_mit, current_mit_vector=current_mit,
        signature_r=int.from_bytes(raw[SIG_R_OFFSET:SIG_R_OFFSET + SIG_COMPONENT_SIZE], "little"),
        signature_s=int.from_bytes(raw[SIG_S_OFFSET:SIG_S_OFFSET + SIG_COMPONENT_SIZE], "little"),
        raw=raw,
    )


__all__ = ["REPORT_SIZE", "SIGNED_SIZE", "SUPPORTED_VERSIONS", "PRODUCTS", "TCB_LAYOUTS", "Product",
           "TcbVersion", "SnpPolicy", "SignerInfo", "SnpReport", "check_policy", "parse_report", "report_bytes"]
