"""Pure parser for the host kernel log (``dmesg``): what kvm_amd and ccp said.

Real hosts print more forms than one regex per message can read (the corpus
in ``fixtures/host-logs/`` holds captured examples of each), so the parser
first cuts the text into kernel *records* and then reads each record:

* Record framing: ``[    4.30]`` timestamps, ``dmesg -T`` dates
  (``[Wed Oct 11 10:36:17 2023]``), journald prefixes
  (``Dec 20 01:16:46 host kernel: `` or ``host kernel: ``, where the host name
  may itself contain "sev"), ``<6>`` priorities, no timestamp at all, and
  several records collapsed onto one physical line by a web page. A
  ``Linux version`` record starts a new boot: only the last boot counts.
* kvm_amd ASID lines, each optionally prefixed ``kvm_amd: ``, ``SVM: `` or
  ``kvm: ``: up to ~6.4 ``SEV supported: 410 ASIDs`` (4.x: plain
  ``SEV supported``), ``SEV-ES supported: 99 ASIDs`` and, on SNP-capable
  kernels, one combined ``SEV-ES and SEV-SNP supported: 99 ASIDs``; from ~6.5
  ``SEV enabled (ASIDs 100 - 509)`` with ``disabled``/``unusable`` in place
  of ``enabled``. Old and new wordings can appear in the same boot.
* ccp (PSP) lines, per PSP device (``ccp 0000:47:00.1: ``): ``sev enabled``
  or ``psp does not support SEV`` (the second socket of a healthy dual-socket
  host says the latter), firmware version from whichever line the kernel
  printed (``SEV API:1.55 build:21``, ``SEV-SNP API:1.51 build:3`` or
  ``SEV firmware updated from 1.53.5 to 1.55.29``), INIT failures for SEV and
  for SEV-SNP with error and rc in either order, status errors
  (``SEV: failed to get status. Error: 0x8003``), firmware files the kernel
  could not load, and PSP command timeouts.

A failed INIT is never erased by a version line that follows it: ccp reads
the firmware version even when INIT failed, so ``SEV API:1.55 build:7``
after ``SEV: failed to INIT error 0x1, rc -5`` is a failed host, not a
healthy one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

HWERROR_PLATFORM = 0x13

# ASIDs are bounded by CPUID 0x8000001F ECX (hundreds to ~1006); a range end
# this large is an unsigned underflow of "min SEV ASID - 1", not real ASIDs.
_ASID_SANE_MAX = 1 << 20

# SEV API status codes (include/uapi/linux/psp-sev.h) that hosts report at INIT.
SEV_RET_NAMES: dict[int, str] = {
    0x0: "SUCCESS",
    0x1: "INVALID_PLATFORM_STATE",
    0x2: "INVALID_GUEST_STATE",
    0x3: "INVALID_CONFIG",
    0x4: "INVALID_LEN",
    0x5: "ALREADY_OWNED",
    0x8: "INACTIVE",
    0xE: "WBINVD_REQUIRED",
    0xF: "DFFLUSH_REQUIRED",
    0x11: "INVALID_COMMAND",
    0x13: "HWERROR_PLATFORM",
    0x14: "HWERROR_UNSAFE",
    0x15: "UNSUPPORTED",
    0x16: "INVALID_PARAM",
    0x17: "RESOURCE_LIMIT",
}

# --- record framing -------------------------------------------------------

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DMESG_TS = r"\[\s*\d+\.\d+\]"
_DMESG_T = rf"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MONTH}\s+\d+ \d\d:\d\d:\d\d \d{{4}}\]"
# Several records on one physical line (a flattened web page): cut before
# every timestamp that is not at the start of the line.
_SPLIT = re.compile(rf"\s+(?={_DMESG_TS}|{_DMESG_T})")
_PREFIXES = (
    re.compile(r"^<\d>"),                                                # printk level
    re.compile(rf"^(?:{_DMESG_TS}|{_DMESG_T})\s*"),                      # dmesg, dmesg -T
    # journald / syslog: "Dec 20 01:16:46 host kernel: ", "2024-01-02T03:04:05+0000 host kernel: "
    re.compile(rf"^(?:{_MONTH}\s+\d+ \d\d:\d\d:\d\d|\d{{4}}-\d\d-\d\dT[\d:.,+\-Z]+)\s+\S+\s+kernel:\s*"),
    re.compile(r"^\S+\s+kernel:\s+"),                                    # "host kernel: " (date dropped)
    re.compile(rf"^{_DMESG_TS}\s*"),                                     # journald -k keeps the dmesg stamp
)
_SUBSYSTEM = re.compile(r"^(?:kvm_amd|SVM|kvm|kvm-amd): (?:kvm: )?")
_DEVICE = re.compile(r"^ccp (?P<dev>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]): ")


def kernel_records(text: str) -> list[str]:
    """The kernel messages in ``text``, one per record, framing removed.

    Why a separate step: every message regex below can then be anchored to
    the start of a message, so a journald host name like ``sev-host`` or a
    ``systemd: Set hostname to <xlab-SEV-SNP-01>`` line can never be misread
    as a kvm_amd or ccp message."""
    records: list[str] = []
    for physical in text.splitlines():
        for part in _SPLIT.split(physical.strip()):
            rec = part.strip()
            for prefix in _PREFIXES:
                rec = prefix.sub("", rec, count=1)
            if rec:
                records.append(rec.strip())
    return records


# --- messages ---------------------------------------------------------------

_FEATURE = r"(?P<feature>SEV-SNP|SEV-ES|SEV)"
_OLD_COUNT = re.compile(rf"^{_FEATURE} supported:\s*(?P<count>\d+) ASIDs?\s*$")
_OLD_BARE = re.compile(rf"^{_FEATURE} supported\s*$")
_COMBINED = re.compile(r"^SEV-ES and SEV-SNP supported:\s*(?P<count>\d+) ASIDs?\s*$")
_NEW = re.compile(
    rf"^{_FEATURE} (?P<state>enabled|disabled|unusable) \(ASIDs (?P<first>\d+) - (?P<last>\d+)\)\s*$")

_API = re.compile(r"^(?P<which>SEV|SEV-SNP) API:(?P<major>\d+)\.(?P<minor>\d+) build:(?P<build>\d+)")
_UPDATED = re.compile(
    r"^SEV firmware updated from (?P<from>\d+\.\d+\.\d+) to (?P<major>\d+)\.(?P<minor>\d+)\.(?P<build>\d+)")
_INIT_FAIL = re.compile(r"^(?P<which>SEV|SEV-SNP): failed to INIT(?P<rest>.*)$")
_ERROR = re.compile(r"error\s+(?P<code>0x[0-9a-fA-F]+|-?\d+)")
_RC = re.compile(r"rc\s+(?P<rc>-?\d+)")
_STATUS = re.compile(r"^(?:SEV|SEV-SNP): failed to get (?:platform )?status\. Error: (?P<code>0x[0-9a-fA-F]+|\d+)")
_FW_MISSING = re.compile(r"(?:firmware: failed to load|Direct firmware load for) (?P<file>amd/\S+\.(?:sbin|fw))"
                         r"|^(?P<none>No SEV firmware file present)")
_TIMEOUT = re.compile(r"^sev command (?P<cmd>0x[0-9a-fA-F]+|\d+) timed out")
_SNP_FW_TOO_OLD = re.compile(r"^SEV-SNP support requires firmware version >= (?P<v>\S+)")


def _int(text: str) -> int:
    return int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text)


@dataclass(frozen=True)
class AsidLine:
    """One kvm_amd ASID announcement, normalised over every wording.

    ``count`` is the number of usable ASIDs (0 when the feature is not
    usable), or None when the kernel printed no count (4.x ``SEV supported``).
    ``first``/``last`` are the range as printed (new wording only)."""

    feature: str  # "SEV", "SEV-ES" or "SEV-SNP"
    state: str  # "enabled", "disabled" or "unusable"
    count: int | None
    first: int | None
    last: int | None
    line: str
    wording: str  # "count" (SEV supported: N), "bare" (SEV supported), "combined", "range"

    @property
    def usable(self) -> bool:
        return self.state == "enabled" and (self.count is None or self.count > 0)

    @property
    def underflow(self) -> bool:
        """The range end is an unsigned wrap-around (min SEV ASID - 1 with min 0)."""
        return self.last is not None and self.last >= _ASID_SANE_MAX

    def describe(self) -> str:
        said = repr(self.line)
        if self.wording == "bare":
            return f"enabled, ASID count not printed by this kernel ({said})"
        if self.first is None:
            return f"{self.count} ASIDs ({said})"
        note = " (range end is an unsigned underflow: no usable ASIDs)" if self.underflow else ""
        return f"{self.state}, {self.count} ASIDs {self.first}-{self.last}{note} ({said})"


@dataclass(frozen=True)
class InitFailure:
    """A PSP INIT that failed: for SEV (``SEV: failed to INIT``) or SNP."""

    which: str  # "SEV" or "SEV-SNP"
    error: int | None
    rc: int | None
    device: str
    line: str

    @property
    def error_name(self) -> str:
        if self.error is None:
            return "no error code"
        if self.error == 0xFFFFFFFF:
            return "no answer from the PSP"
        return SEV_RET_NAMES.get(self.error, "PSP mailbox status" if self.error >= 0x8000 else "unknown code")

    def describe(self) -> str:
        code = "no error code" if self.error is None else f"error 0x{self.error:x} ({self.error_name})"
        rc = "" if self.rc is None else f", rc {self.rc}"
        return f"{self.which} INIT failed: {code}{rc}"


@dataclass(frozen=True)
class FirmwareVersion:
    """The PSP firmware version, from whichever line the kernel printed."""

    major: int
    minor: int
    build: int
    source: str  # "SEV API", "SEV-SNP API" or "updated"
    line: str

    @property
    def api(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.build)

    def describe(self) -> str:
        via = {"SEV API": "", "SEV-SNP API": " (from the SEV-SNP API line)",
               "updated": " (from the firmware update line)"}[self.source]
        return f"SEV API:{self.major}.{self.minor} build:{self.build}{via}"


@dataclass
class Psp:
    """What ccp said about one PSP device (one per socket on EPYC)."""

    device: str
    sev: bool | None = None  # True: "sev enabled"; False: "psp does not support SEV"
    versions: list[FirmwareVersion] = field(default_factory=list)
    init_failures: list[InitFailure] = field(default_factory=list)
    status_errors: list[tuple[int, str]] = field(default_factory=list)  # (code, line)
    missing_firmware: list[str] = field(default_factory=list)
    timeouts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KernelLog:
    """Everything the host checks read from one boot's kernel log."""

    asids: dict[str, AsidLine]  # by feature; a range line wins over a count line, then the last line
    firmware: FirmwareVersion | None  # preferring the plain SEV API line
    sev_init: InitFailure | None  # first SEV INIT failure of the boot (never erased)
    snp_init: InitFailure | None  # first SEV-SNP INIT failure of the boot
    snp_initialized: bool  # "SEV-SNP firmware initialized" or a SEV-SNP API line
    status_errors: tuple[tuple[str, int, str], ...]  # (device, code, line)
    psps: dict[str, Psp]
    missing_firmware: tuple[str, ...]
    snp_firmware_too_old: str  # the ">= 1:51" line, or ""
    timeouts: tuple[str, ...]
    wording: str  # "old", "new", "both" or "" when no ASID line was seen
    snp_api: FirmwareVersion | None = None  # the first "SEV-SNP API:x.y build:z" line: SNP_INIT succeeded

    # Compatibility with the earlier single-line view.
    @property
    def api(self) -> tuple[int, int, int] | None:
        return self.firmware.api if self.firmware else None

    @property
    def init_error(self) -> int | None:
        return self.sev_init.error if self.sev_init else None

    @property
    def init_line(self) -> str:
        return self.sev_init.line if self.sev_init else ""

    @property
    def sev_psps(self) -> list[str]:
        return [p.device for p in self.psps.values() if p.sev]

    @property
    def psps_without_sev(self) -> list[str]:
        return [p.device for p in self.psps.values() if p.sev is False]


def _asid_line(msg: str, rec: str) -> list[AsidLine]:
    """The ASID lines ``msg`` announces (two for the combined SEV-ES and SEV-SNP line);
    ``rec`` is the whole record, kept as evidence."""
    if m := _NEW.match(msg):
        first, last, state = int(m["first"]), int(m["last"]), m["state"]
        plausible = last < _ASID_SANE_MAX and last >= first
        count = last - first + 1 if state == "enabled" and plausible else 0
        return [AsidLine(m["feature"], state, count, first, last, rec, "range")]
    if m := _COMBINED.match(msg):
        n = int(m["count"])
        state = "enabled" if n > 0 else "unusable"
        return [AsidLine(f, state, n, None, None, rec, "combined") for f in ("SEV-ES", "SEV-SNP")]
    if m := _OLD_COUNT.match(msg):
        n = int(m["count"])
        return [AsidLine(m["feature"], "enabled" if n > 0 else "unusable", n, None, None, rec, "count")]
    if m := _OLD_BARE.match(msg):
        return [AsidLine(m["feature"], "enabled", None, None, None, rec, "bare")]
    return []


class _Boot:
    """Mutable state while reading one boot; frozen into a KernelLog at the end."""

    def __init__(self) -> None:
        self.asids: dict[str, AsidLine] = {}
        self.psps: dict[str, Psp] = {}
        self.snp_initialized = False
        self.snp_too_old = ""
        self.old = self.new = False

    def psp(self, device: str) -> Psp:
        return self.psps.setdefault(device, Psp(device))

    def add_asid(self, line: AsidLine) -> None:
        prev = self.asids.get(line.feature)
        if prev is None or line.wording == "range" or prev.wording != "range":
            self.asids[line.feature] = line
        if line.wording == "range":
            self.new = True
        else:
            self.old = True

    def read(self, rec: str) -> None:
        for line in _asid_line(_SUBSYSTEM.sub("", rec, count=1), rec):
            self.add_asid(line)
        m = _DEVICE.match(rec)
        device = m["dev"] if m else ""
        msg = rec[m.end():] if m else rec
        psp = self.psp(device)
        if msg.strip() == "sev enabled":
            psp.sev = True
        elif msg.strip() == "psp does not support SEV":
            psp.sev = False if psp.sev is None else psp.sev
        if m2 := _API.match(msg):
            source = "SEV API" if m2["which"] == "SEV" else "SEV-SNP API"
            psp.versions.append(FirmwareVersion(int(m2["major"]), int(m2["minor"]), int(m2["build"]), source, rec))
            if source == "SEV-SNP API":
                self.snp_initialized = True
        elif m2 := _UPDATED.match(msg):
            psp.versions.append(FirmwareVersion(int(m2["major"]), int(m2["minor"]), int(m2["build"]), "updated", rec))
        elif m2 := _INIT_FAIL.match(msg):
            err = _ERROR.search(m2["rest"])
            rc = _RC.search(m2["rest"])
            psp.init_failures.append(InitFailure(
                m2["which"], _int(err["code"]) & 0xFFFFFFFF if err else None,
                int(rc["rc"]) if rc else None, device, rec))
        elif m2 := _STATUS.match(msg):
            psp.status_errors.append((_int(m2["code"]), rec))
        elif m2 := _TIMEOUT.match(msg):
            psp.timeouts.append(rec)
        elif m2 := _SNP_FW_TOO_OLD.match(msg):
            self.snp_too_old = rec
        elif msg.startswith("SEV-SNP firmware initialized"):
            self.snp_initialized = True
        if m2 := _FW_MISSING.search(msg):
            psp.missing_firmware.append(m2["file"] or "(no SEV firmware file)")

    def freeze(self) -> KernelLog:
        psps = {d: p for d, p in self.psps.items()
                if d and (p.sev is not None or p.versions or p.init_failures or p.status_errors
                          or p.missing_firmware or p.timeouts)}
        # Messages without a device prefix (some captures drop it) belong to no PSP
        # but still count for the host.
        loose = self.psps.get("")
        every = [*psps.values(), *([loose] if loose else [])]
        versions = [v for p in every for v in p.versions]
        firmware = next((v for v in versions if v.source == "SEV API"), None) or \
            next((v for v in reversed(versions)), None)
        fails = [f for p in every for f in p.init_failures]
        sev_init = next((f for f in fails if f.which == "SEV"), None)
        snp_init = next((f for f in fails if f.which == "SEV-SNP"), None)
        status = tuple((p.device, code, line) for p in every for code, line in p.status_errors)
        wording = "both" if self.old and self.new else "old" if self.old else "new" if self.new else ""
        return KernelLog(
            asids=dict(self.asids), firmware=firmware, sev_init=sev_init, snp_init=snp_init,
            snp_initialized=self.snp_initialized and snp_init is None,
            status_errors=status, psps=psps,
            missing_firmware=tuple(f for p in every for f in p.missing_firmware),
            snp_firmware_too_old=self.snp_too_old,
            timeouts=tuple(t for p in every for t in p.timeouts), wording=wording,
            snp_api=next((v for v in versions if v.source == "SEV-SNP API"), None))


class BootReader(Protocol):
    def read(self, rec: str) -> None: ...


B = TypeVar("B", bound=BootReader)


def read_last_boot(text: str, new_boot: Callable[[], B]) -> B:
    """Feed every record of the last boot in ``text`` to a fresh reader; earlier boots are dropped.

    Why one loop: every reader of the host's kernel log (SEV, SNP) must agree on
    where a boot starts, or one would judge a line the other has forgotten.
    """
    boot = new_boot()
    for rec in kernel_records(text):
        if rec.startswith("Linux version "):
            boot = new_boot()  # a new boot: what an earlier boot said no longer holds
            continue
        boot.read(rec)
    return boot


def parse_kernel_log(text: str) -> KernelLog:
    """Read the last boot in ``text`` (dmesg, dmesg -T or journalctl -k output)."""
    return read_last_boot(text, _Boot).freeze()
