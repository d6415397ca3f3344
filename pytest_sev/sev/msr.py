"""SEV_STATUS MSR (0xC0010131): bit table, the in-guest read command, parsers.

Why: the guest kernel's log line is printed once at boot and its wording
changed with every kernel era; the SEV_STATUS MSR is what the hardware says
*now*, on every vCPU. It is the witness of AMD's README FAQ 2b
(``rdmsr -a 0xc0010131``). A read that fails (no msr driver, no root, or a
fault that the msr driver returns as EIO under KVM without SEV) is "unknown",
never a pass, and all vCPUs must agree.

Two ways to read it inside the guest:

(a) ``rdmsr -a 0xc0010131`` (msr-tools): one hex value per CPU per line,
    no ``0x`` prefix (``0``, ``3``); errors like
    ``rdmsr: CPU 0 cannot read MSR 0xc0010131`` on stderr.
(b) :func:`guest_read_command`, for busybox guests without msr-tools. The
    msr driver wants one read of exactly 8 bytes at file offset = MSR number;
    0xC0010131 is not a multiple of 8, so ``dd bs=8 skip=N`` cannot reach it.
    ``iflag=skip_bytes`` makes busybox (and GNU) dd ``lseek`` to the byte
    offset and then issue a single ``read(fd, buf, 8)`` (checked with strace
    on busybox 1.35). Output lines (``SEVMSR`` framed, so kernel chatter on
    the console cannot be mistaken for a value)::

        SEVMSR cpu=0 val= 0000000000000003
        SEVMSR cpu=1 err=dd: /dev/cpu/1/msr: Input/output error
        SEVMSR cpu=2 err=no msr device /dev/cpu/2/msr
        SEVMSR end cpus=3
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SEV_STATUS_MSR = 0xC0010131

#: bit -> name (sev-reference.md section 6).
SEV_STATUS_BITS: dict[int, str] = {
    0: "SEV",
    1: "SEV-ES",
    2: "SNP",
    3: "vTOM",
    4: "ReflectVC",
    5: "RestrictedInjection",
    6: "AlternateInjection",
    7: "DebugSwap",
    8: "PreventHostIBS",
    9: "BTBIsolation",
    10: "VmplSSS",
    11: "SecureTSC",
    12: "VMGExitParam",
    14: "IBSVirt",
    16: "VmsaRegProt",
    17: "SMTProtection",
    18: "SecureAVIC",
}

#: The tokens Linux 6.9+ prints in ``SEV: Status: ...`` (``sev_status_feat_names``
#: in arch/x86/kernel/sev.c, later arch/x86/coco/sev/core.c) -> MSR bit.
KERNEL_STATUS_TOKENS: dict[str, int] = {
    "SEV": 0,
    "SEV-ES": 1,
    "SEV-SNP": 2,
    "vTom": 3,
    "ReflectVC": 4,
    "RI": 5,
    "AI": 6,
    "DebugSwap": 7,
    "NoHostIBS": 8,
    "BTBIsol": 9,
    "VmplSSS": 10,
    "SecureTSC": 11,
    "VMGExitParam": 12,
    "IBSVirt": 14,
    "VMSARegProt": 16,
    "SMTProt": 17,
    "SecureAVIC": 18,
}


@dataclass(frozen=True)
class SevStatus:
    """A decoded SEV_STATUS value."""

    value: int
    flags: tuple[str, ...]
    unknown_bits: tuple[int, ...]

    @property
    def sev(self) -> bool:
        return bool(self.value & 0x1)

    @property
    def sev_es(self) -> bool:
        return bool(self.value & 0x2)

    @property
    def snp(self) -> bool:
        return bool(self.value & 0x4)


def decode_sev_status(value: int) -> SevStatus:
    """Decode a 64-bit SEV_STATUS value into named flags (bit order)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"SEV_STATUS must be an integer, got {value!r}")
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"SEV_STATUS {value} is not a 64-bit unsigned value")
    flags = tuple(name for bit, name in sorted(SEV_STATUS_BITS.items()) if value >> bit & 1)
    unknown = tuple(b for b in range(64) if value >> b & 1 and b not in SEV_STATUS_BITS)
    return SevStatus(value=value, flags=flags, unknown_bits=unknown)


# --------------------------------------------------------------------------
# error classification shared by both read paths

#: (code, substrings, explanation) checked in order.
_ERROR_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("eio", ("Input/output error", "cannot read MSR", "doesn't support MSRs"),
     "the MSR read faulted (EIO): this vCPU does not implement SEV_STATUS (no SEV, or KVM without SEV)"),
    ("permission", ("Permission denied", "Operation not permitted"),
     "permission denied: reading /dev/cpu/N/msr needs root and CAP_SYS_RAWIO"),
    ("offline", ("No CPU", "No such device or address"),
     "the CPU is offline or absent (ENXIO)"),
    ("no-device", ("no msr device", "No such file or directory", "No such device",
                   "can't open", "no /dev/cpu"),
     "no msr device: load the msr module (CONFIG_X86_MSR) in the guest"),
    ("tool-missing", ("not found", "applet not found"),
     "the read tool is missing in the guest"),
)


def classify_msr_error(text: str) -> str:
    """``"code: explanation (raw text)"`` for an MSR read error message."""
    raw = " ".join(text.split())
    for code, needles, why in _ERROR_RULES:
        if any(n in raw for n in needles):
            return f"{code}: {why} ({raw})"
    return f"other: unrecognised MSR read error ({raw})"


# --------------------------------------------------------------------------
# the summary


@dataclass(frozen=True)
class MsrWitness:
    """SEV_STATUS read on every vCPU.

    ``per_cpu`` maps CPU number to the value read, or ``None`` when it could
    not be read (``reasons`` says why). ``sev``/``sev_es`` are ``None``
    (unknown) unless every expected CPU was read and all agree.
    """

    per_cpu: dict[int, int | None]
    reasons: dict[int, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    value: int | None = None
    status: SevStatus | None = None
    sev: bool | None = None
    sev_es: bool | None = None
    snp: bool | None = None

    @property
    def known(self) -> bool:
        return self.value is not None

    def describe(self) -> str:
        if self.status is not None:
            flags = " ".join(self.status.flags) or "none"
            return f"SEV_STATUS={self.value:#x} on {len(self.per_cpu)} CPU(s): {flags}"
        why = list(self.problems) + [f"cpu{c}: {r}" for c, r in sorted(self.reasons.items())]
        return "SEV_STATUS unknown: " + "; ".join(why)


def summarize(
    per_cpu: dict[int, int | None],
    reasons: dict[int, str] | None = None,
    problems: list[str] | tuple[str, ...] = (),
    expected_cpus: int | None = None,
) -> MsrWitness:
    """Combine per-CPU readings into one witness; unknown unless all agree."""
    reasons = dict(reasons or {})
    probs = list(problems)
    if not per_cpu:
        probs.append("no CPU reported a value")
    if expected_cpus is not None and len(per_cpu) != expected_cpus:
        probs.append(f"expected {expected_cpus} CPU(s), got {len(per_cpu)}")
    for cpu, val in per_cpu.items():
        if val is None and cpu not in reasons:
            reasons[cpu] = "other: no value"
    values = {v for v in per_cpu.values() if v is not None}
    if len(values) > 1:
        probs.append("CPUs disagree: " + ", ".join(
            f"cpu{c}={v:#x}" for c, v in sorted(per_cpu.items()) if v is not None))
    if probs or reasons or len(values) != 1:
        return MsrWitness(per_cpu=dict(per_cpu), reasons=reasons, problems=tuple(probs))
    value = values.pop()
    st = decode_sev_status(value)
    return MsrWitness(per_cpu=dict(per_cpu), reasons={}, problems=(), value=value,
                      status=st, sev=st.sev, sev_es=st.sev_es, snp=st.snp)


# --------------------------------------------------------------------------
# (a) rdmsr -a

_RDMSR_CPU_ERR = re.compile(r"rdmsr: (?:CPU (\d+) |No CPU (\d+))")
_RDMSR_ERR = re.compile(r"\brdmsr: ")
_HEX_LINE = re.compile(r"^(?:0x)?([0-9a-fA-F]{1,16})$")


def parse_rdmsr_output(text: str, expected_cpus: int | None = None) -> MsrWitness:
    """Parse ``rdmsr -a 0xc0010131`` output (stdout and stderr together).

    Values are one per line in CPU order; msr-tools stops at the first CPU
    it cannot read, so an error line marks that CPU unknown and CPUs after
    it absent. An ``rdmsr: ...`` line without a CPU number (``rdmsr: open:
    No such file or directory``, ``sh: rdmsr: not found``) makes the whole
    read unknown. Other lines (the echoed command, kernel chatter) are ignored.
    """
    per_cpu: dict[int, int | None] = {}
    reasons: dict[int, str] = {}
    problems: list[str] = []
    cpu = 0
    for raw in text.replace("\r", "").splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _HEX_LINE.match(line)
        if m:
            per_cpu[cpu] = int(m.group(1), 16)
            cpu += 1
            continue
        if _RDMSR_ERR.search(line):
            e = _RDMSR_CPU_ERR.search(line)
            if e:
                n = int(e.group(1) or e.group(2))
                per_cpu[n] = None
                reasons[n] = classify_msr_error(line)
            else:
                problems.append(classify_msr_error(line))
        # anything else is console chatter: ignored
    return summarize(per_cpu, reasons, problems, expected_cpus)


# --------------------------------------------------------------------------
# (b) busybox dd + od


def guest_read_command(load_module: bool = True, cpu_root: str = "/dev/cpu") -> str:
    """A one-line busybox-ash command that reads SEV_STATUS on every CPU.

    ``cpu_root`` exists for tests (a directory of fake ``N/msr`` files).
    Prints ``SEVMSR cpu=N val= <16 hex digits>`` or ``SEVMSR cpu=N err=<dd
    message>`` per CPU and ``SEVMSR end cpus=<count>`` last; see the module
    docstring. Exit status is always 0: the parser decides.
    """
    if any(c in cpu_root for c in " \t\n'\"$`\\;&|<>*?"):
        raise ValueError(f"unsafe cpu_root {cpu_root!r}")
    dd = f'dd if="$f" bs=8 count=1 iflag=skip_bytes skip={SEV_STATUS_MSR}'
    parts = []
    if load_module:
        parts.append("modprobe msr 2>/dev/null")
    parts.append(
        f"n=0; for d in {cpu_root}/[0-9]*; do [ -d \"$d\" ] || continue; c=${{d##*/}}; n=$((n+1)); "
        f"f=$d/msr; if [ ! -e \"$f\" ]; then echo \"SEVMSR cpu=$c err=no msr device $f\"; continue; fi; "
        f"v=$({dd} 2>/dev/null | od -An -tx8); "
        f"if [ -n \"$v\" ]; then echo \"SEVMSR cpu=$c val=$v\"; "
        f"else echo \"SEVMSR cpu=$c err=$({dd} of=/dev/null 2>&1 | tr '\\n' ' ')\"; fi; done; "
        f"echo \"SEVMSR end cpus=$n\""
    )
    return "; ".join(parts)


_CMD_LINE = re.compile(r"SEVMSR cpu=(\d+) (val|err)=(.*)$")
_CMD_END = re.compile(r"SEVMSR end cpus=(\d+)")
_VAL = re.compile(r"^\s*([0-9a-fA-F]{16})\s*$")


def parse_guest_read_output(text: str, expected_cpus: int | None = None) -> MsrWitness:
    """Parse the output of :func:`guest_read_command`.

    Requires the ``SEVMSR end`` line (else the output was cut short and the
    witness is unknown) and one line per counted CPU.
    """
    per_cpu: dict[int, int | None] = {}
    reasons: dict[int, str] = {}
    problems: list[str] = []
    end: int | None = None
    for raw in text.replace("\r", "").splitlines():
        m = _CMD_LINE.search(raw)
        if m:
            cpu, kind, rest = int(m.group(1)), m.group(2), m.group(3)
            if cpu in per_cpu:
                problems.append(f"cpu{cpu} reported twice")
            if kind == "val":
                v = _VAL.match(rest)
                if v:
                    per_cpu[cpu] = int(v.group(1), 16)
                else:
                    per_cpu[cpu] = None
                    reasons[cpu] = f"unparsed: value {rest.strip()!r} is not 16 hex digits"
            else:
                per_cpu[cpu] = None
                reasons[cpu] = classify_msr_error(rest)
            continue
        e = _CMD_END.search(raw)
        if e:
            end = int(e.group(1))
    if end is None:
        problems.append("output incomplete: no 'SEVMSR end' line")
    elif end == 0:
        problems.append(classify_msr_error("no /dev/cpu/N directories"))
    elif end != len(per_cpu):
        problems.append(f"{end} CPU directories but {len(per_cpu)} result line(s)")
    return summarize(per_cpu, reasons, problems, expected_cpus)
