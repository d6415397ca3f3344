"""Pure parsers for the SEV-SNP host facts: the kernel's SNP lines, SYSCFG.SNPEn, the RMP MSRs.

Why a module apart from ``parse_log``: these lines come from other parts of
the kernel than kvm_amd and ccp (the x86 SNP setup code, ``pr_fmt``
``SEV-SNP: ``, and the AMD IOMMU driver, ``AMD-Vi: ``), and they say whether
the *kernel* brought SNP up, which the ASID and firmware lines alone do not.
The same record framing (``parse_log.kernel_records``) and the same "only the
last boot counts" rule apply.

Wordings read (captured in public threads unless marked; ``fixtures/host-logs``
holds the captures):

* RMP table: ``SEV-SNP: RMP table physical range [0x... - 0x...]`` (upstream,
  amd/sev-utils#19, coconut-svsm/svsm#409), ``SEV-SNP: RMP table physical
  address 0x... - 0x...`` (AMDESE 5.14 snp-host, AMDESE/AMDSEV#84) and
  ``SEV-SNP: RMP table physical address [0x... - 0x...]`` (AMDESE 6.5 snp-host,
  AMDESE/AMDSEV#181, #189); none: ``SEV-SNP: Memory for the RMP table has not
  been reserved by BIOS`` (format string of arch/x86/virt/svm/sev.c).
* IOMMU refusals (drivers/iommu/amd/init.c ``iommu_snp_enable``): ``AMD-Vi: SNP:
  IOMMU disabled or configured in passthrough mode, SNP cannot be supported.``
  (upstream), ``... IOMMU is disabled or configured in passthrough mode, SNP cannot
  be supported`` (AMDESE 5.19, AMDESE/AMDSEV#113), ``AMD-Vi: SEV-SNP: IOMMU is
  either disabled or configured in passthrough mode.`` (AMDESE 5.14,
  AMDESE/AMDSEV#88); and, from the format strings, ``SNP: IOMMU is configured with
  V2 page table mode``, ``SNP: IOMMU SNP feature not enabled`` and ``SNP: RMP
  initialization failed``, each ``..., SNP cannot be supported.``
* IOMMU accepted: ``AMD-Vi: IOMMU SNP support enabled.`` (upstream format
  string) or ``AMD-Vi: SNP enabled`` (AMDESE 6.5, AMDESE/AMDSEV#181).
* ``kvm_amd: SEV-SNP requires private memory support via guest_memfd.``: a VMM
  asked for an SNP VM without guest_memfd (amd/sev-utils#19), i.e. a QEMU older
  than the host kernel's SNP interface.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_sev.host.parse_log import read_last_boot

SYSCFG_SNPEN_BIT = 24
RMP_BASE_MSR = 0xC0010132
RMP_END_MSR = 0xC0010133
# The kernel's own validity test of the RMP MSRs (arch/x86/virt/svm/sev.c, RMP_ADDR_MASK = GENMASK_ULL(51, 13)).
RMP_ADDR_MASK = ((1 << 52) - 1) & ~((1 << 13) - 1)

_RMP = re.compile(r"^SEV-SNP: RMP table physical (?:range|address) \[?(?P<base>0x[0-9a-fA-F]+)\s*-\s*"
                  r"(?P<end>0x[0-9a-fA-F]+)\]?")
_RMP_NONE = re.compile(r"^SEV-SNP: Memory for the RMP table has not been reserved by BIOS")
_AMD_VI = re.compile(r"^AMD-Vi: ")
# (kind, pattern) of the IOMMU driver's refusals, tried in order
_IOMMU_REFUSALS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("passthrough", re.compile(r"^(?:SEV-)?SNP: IOMMU (?:is )?(?:either )?disabled or configured in passthrough mode")),
    ("v2-page-table", re.compile(r"^SNP: IOMMU is configured with V2 page table mode")),
    ("no-snp-feature", re.compile(r"^SNP: IOMMU SNP feature (?:is )?not enabled")),
    ("rmp-init", re.compile(r"^SNP: RMP initialization failed")),
)
_IOMMU_OK = re.compile(r"^(?:IOMMU SNP support (?:is )?enabled|SNP enabled)\b")
_GUEST_MEMFD = re.compile(r"^(?:kvm_amd: )?SEV-SNP requires private memory support via guest_memfd")


@dataclass(frozen=True)
class RmpRange:
    """The RMP table's physical range, as the kernel printed it or the MSRs hold it."""

    base: int
    end: int
    said: str  # the kernel line, or "MSR 0xC0010132/0xC0010133"

    @property
    def size(self) -> int:
        return self.end - self.base + 1

    def describe(self) -> str:
        return f"0x{self.base:x}-0x{self.end:x} ({self.size >> 20} MiB)"


@dataclass(frozen=True)
class IommuRefusal:
    """The AMD IOMMU driver turned SNP down, and why (``kind``)."""

    kind: str  # "passthrough", "v2-page-table", "no-snp-feature" or "rmp-init"
    line: str


@dataclass(frozen=True)
class SnpLog:
    """What one boot's kernel log says about the host side of SEV-SNP."""

    rmp: RmpRange | None
    rmp_not_reserved: str  # the "not been reserved by BIOS" line, or ""
    iommu_refusal: IommuRefusal | None
    iommu_enabled: str  # the IOMMU driver's "SNP enabled" line, or ""
    guest_memfd_refusals: tuple[str, ...]  # kvm_amd refused an SNP VM without guest_memfd


class _SnpBoot:
    def __init__(self) -> None:
        self.rmp: RmpRange | None = None
        self.rmp_none = ""
        self.refusal: IommuRefusal | None = None
        self.iommu_ok = ""
        self.memfd: list[str] = []

    def read(self, rec: str) -> None:
        if m := _RMP.match(rec):
            self.rmp = RmpRange(int(m["base"], 16), int(m["end"], 16), rec)
        elif _RMP_NONE.match(rec):
            self.rmp_none = rec
        elif _GUEST_MEMFD.match(rec):
            self.memfd.append(rec)
        elif m := _AMD_VI.match(rec):
            self._iommu(rec[m.end():], rec)

    def _iommu(self, msg: str, rec: str) -> None:
        for kind, pattern in _IOMMU_REFUSALS:
            if pattern.match(msg):
                self.refusal = self.refusal or IommuRefusal(kind, rec)
                return
        if _IOMMU_OK.match(msg):
            self.iommu_ok = rec

    def freeze(self) -> SnpLog:
        return SnpLog(self.rmp, self.rmp_none, self.refusal, self.iommu_ok, tuple(self.memfd))


def parse_snp_log(text: str) -> SnpLog:
    """Read the SNP lines of the last boot in ``text`` (dmesg or journalctl -k output)."""
    return read_last_boot(text, _SnpBoot).freeze()


def parse_syscfg_snpen(value: int) -> bool:
    """SYSCFG (MSR 0xC0010010) bit 24, SNPEn: SEV-SNP enabled on this core."""
    return bool(value & 1 << SYSCFG_SNPEN_BIT)


def rmp_from_msrs(base: int, end: int) -> tuple[RmpRange | None, str]:
    """The RMP range from RMP_BASE/RMP_END, judged as the kernel judges them:
    no address bits set in either means the BIOS reserved no table; base past end is invalid."""
    if not (base & RMP_ADDR_MASK) or not (end & RMP_ADDR_MASK):
        return None, (f"not reserved by the BIOS (MSR 0xC0010132 = 0x{base:x}, 0xC0010133 = 0x{end:x}: "
                      "no address bits set)")
    if base > end:
        return None, f"invalid (MSR 0xC0010132 = 0x{base:x} is past 0xC0010133 = 0x{end:x})"
    return RmpRange(base, end, "MSR 0xC0010132/0xC0010133"), ""
