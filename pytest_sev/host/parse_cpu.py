"""Pure parsers for CPU identity: ``/proc/cpuinfo`` text and CPUID registers.

Kept apart from the device reads so they are tested on recorded text.
CPUID 0x8000001F is the hardware's answer (what the silicon can do); the
``/proc/cpuinfo`` flags are the kernel's (it clears ``sev``/``sev_es`` when the
BIOS left memory encryption off, and lists ``sme`` only while SME is active),
so the two sources mean different things and the report names which was used.
"""

from __future__ import annotations

from dataclasses import dataclass

SEV_LEAF = 0x8000001F
EXT_MAX_LEAF = 0x80000000


@dataclass(frozen=True)
class CpuidRegs:
    eax: int
    ebx: int
    ecx: int
    edx: int

    def as_hex(self) -> list[str]:
        return [f"0x{r:08x}" for r in (self.eax, self.ebx, self.ecx, self.edx)]

    @classmethod
    def from_hex(cls, regs: list[str]) -> CpuidRegs:
        eax, ebx, ecx, edx = (int(r, 16) for r in regs)
        return cls(eax, ebx, ecx, edx)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CpuidRegs:
        if len(raw) != 16:
            raise ValueError(f"a CPUID read is 16 bytes, got {len(raw)}")
        return cls(*(int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)))


@dataclass(frozen=True)
class SevCpuid:
    """CPUID 0x8000001F decoded (AMD APM vol. 3, see sev-reference.md 5)."""

    eax: int
    ebx: int
    ecx: int
    edx: int

    @property
    def sme(self) -> bool:
        return bool(self.eax & 1 << 0)

    @property
    def sev(self) -> bool:
        return bool(self.eax & 1 << 1)

    @property
    def sev_es(self) -> bool:
        return bool(self.eax & 1 << 3)

    @property
    def snp(self) -> bool:
        return bool(self.eax & 1 << 4)

    @property
    def cbitpos(self) -> int:
        return self.ebx & 0x3F

    @property
    def reduced_phys_bits(self) -> int:
        return (self.ebx >> 6) & 0x3F

    @property
    def encrypted_guests(self) -> int:
        return self.ecx

    @property
    def min_sev_asid(self) -> int:
        return self.edx

    @property
    def sev_es_asids(self) -> int:
        """SEV-ES guests get ASIDs 1..EDX-1; none when EDX is 0 or 1."""
        return max(self.edx - 1, 0)


def decode_sev_leaf(leaves: dict[int, CpuidRegs]) -> tuple[SevCpuid | None, str]:
    """Decode leaf 0x8000001F, refusing it when the CPU does not implement it.

    Intel CPUs answer an out-of-range leaf with the highest *basic* leaf's
    data, so reading 0x8000001F without checking 0x80000000 first would turn
    unrelated bits into "SEV supported". Returns (decoded or None, why not).
    """
    top = leaves.get(EXT_MAX_LEAF)
    if top is None:
        return None, "leaf 0x80000000 not read"
    if top.eax < SEV_LEAF:
        return None, f"leaf 0x8000001F not implemented, max extended leaf 0x{top.eax:08x}"
    regs = leaves.get(SEV_LEAF)
    if regs is None:
        return None, "leaf 0x8000001F not read"
    return SevCpuid(regs.eax, regs.ebx, regs.ecx, regs.edx), ""


@dataclass(frozen=True)
class CpuInfo:
    """The first processor block of /proc/cpuinfo (all cores of a host match)."""

    vendor: str
    model_name: str
    family: str
    model: str
    stepping: str
    microcode: str
    flags: frozenset[str]


def parse_cpuinfo(text: str) -> CpuInfo:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # end of the first processor block
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return CpuInfo(
        vendor=fields.get("vendor_id", ""),
        model_name=fields.get("model name", ""),
        family=fields.get("cpu family", ""),
        model=fields.get("model", ""),
        stepping=fields.get("stepping", ""),
        microcode=fields.get("microcode", ""),
        flags=frozenset(fields.get("flags", "").split()),
    )


def parse_syscfg_smee(value: int) -> bool:
    """SYSCFG (MSR 0xC0010010) bit 23: memory encryption enabled by the BIOS."""
    return bool(value & 1 << 23)


def parse_rdmsr_output(text: str) -> int | None:
    """``rdmsr`` prints the value in hex without a prefix (``840000``)."""
    words = text.split()
    if not words:
        return None
    try:
        return int(words[0], 16)
    except ValueError:
        return None
