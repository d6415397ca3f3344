"""The guest-side load, as shell command strings, and the parsers of what they print.

How the suite uses it (each command is one line for busybox ash, well under
the 1024 characters busybox line editing accepts):

0. ``probe_command()`` / ``parse_probe(text)``: ``fio`` if the guest has it,
   else ``dd``; put it in ``LoadSpec(tool=...)``.
1. ``start_command(dev, spec)``: starts the load in the background and prints
   nothing. Output goes to files under ``spec.workdir`` (/tmp/dmaload):
   ``kind`` (fio|dd), ``t0``/``t1`` (/proc/uptime at start/end of the timed
   part), ``s0``/``s1`` (/sys/block/DEV/stat then), ``rc`` (written last: its
   presence means the load finished), ``fio.json``/``fio.err`` or
   ``dd<i>.log``/``dd<i>.err``.
2. every few seconds ``progress_command(dev)``, parsed by ``parse_progress``,
   fed to :class:`.stall.StallDetector` with the host's monotonic time.
3. when finished (or stalled), ``result_command()``, parsed by ``parse_result``.

Progress is observed by sampling ``/sys/block/DEV/stat`` rather than fio's
status output: it works unchanged for fio and dd, needs nothing running in the
guest, and is the kernel's own count of completed sectors. Note that requests
requeued because the pool is full are not "in flight" there (blk-mq marks
them idle), so a stall can show ``in_flight`` 0: the detector therefore only
looks at completed work.

``quiet_console`` (default on) runs ``dmesg -n 1`` first so a storm of
"swiotlb buffer is full" lines does not interleave with command output on the
serial console; the lines stay in the ring buffer for ``dmesg``. Panics still
reach the console (panic raises the console log level).

The disk under test must be a scratch disk (raw writes to the whole device)
and the guest's root must not live on it, or the shell itself stalls with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pytest_sev.dma import ddload
from pytest_sev.dma.ddload import DdResult, DdSpec
from pytest_sev.dma.fio import FioResult, FioSpec, fio_args, parse_fio
from pytest_sev.dma.kmsg import POOL_FULL_TEXT
from pytest_sev.dma.stall import Sample

WORKDIR = "/tmp/dmaload"
SECTOR = 512
MIB = 1 << 20
MAX_COMMAND_CHARS = 1000  # busybox CONFIG_FEATURE_EDITING_MAX_LEN is 1024

_DEV_RE = re.compile(r"^/dev/[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class LoadSpec:
    tool: Literal["fio", "dd"] = "dd"  # pick with probe_command()/parse_probe()
    fio: FioSpec = FioSpec()
    dd: DdSpec = DdSpec()
    workdir: str = WORKDIR
    quiet_console: bool = True  # dmesg -n 1 (see module docstring)
    mount_debugfs: bool = True  # for io_tlb_used in the progress line

    @property
    def disk_bytes(self) -> int:
        """Smallest scratch disk that fits whichever tool runs."""
        return max(self.fio.disk_bytes, self.dd.disk_bytes)


def _dev_name(dev: str) -> str:
    if not _DEV_RE.match(dev):
        raise ValueError(f"not a whole-disk device path: {dev!r} (e.g. /dev/vda)")
    return dev.rsplit("/", 1)[1]


def _stat_path(dev: str) -> str:
    return f"/sys/block/{_dev_name(dev)}/stat"


def _checked_workdir(workdir: str) -> str:
    if not re.fullmatch(r"/[\w/.-]+", workdir):
        raise ValueError(f"unsafe work directory {workdir!r}")
    return workdir


def _fio_body(dev: str, stat: str, spec: FioSpec) -> str:
    argv = fio_args(dev, "$D/fio.json", engine="$E", spec=spec)
    return (
        "E=psync;fio --enghelp=libaio >/dev/null 2>&1&&E=libaio;"
        f"cat {stat} >$D/s0;cat /proc/uptime >$D/t0;"
        + " ".join(argv)
        + f" 2>$D/fio.err;r=$?;cat /proc/uptime >$D/t1;cat {stat} >$D/s1;echo $r >$D/rc"
    )


def probe_command() -> str:
    """One line printing ``DMATOOL fio`` when the guest has fio, else ``DMATOOL dd``."""
    return 'command -v fio >/dev/null 2>&1&&echo DMATOOL fio||echo DMATOOL dd'


def parse_probe(text: str) -> str:
    """``fio`` or ``dd`` from the output of :func:`probe_command`."""
    m = re.findall(r"^DMATOOL (fio|dd)\s*$", text, re.MULTILINE)
    if not m:
        raise ValueError("no DMATOOL line in guest output")
    return m[-1]


def start_command(dev: str, spec: LoadSpec = LoadSpec()) -> str:
    """One line that (re)starts the load on ``dev`` in the background, printing nothing.

    The work directory is emptied in the foreground first, so a progress
    sample taken right after cannot see a previous run's ``rc``. The load
    runs in a doubly nested subshell ``( (...) & )`` so an interactive ash
    prints no job number and no later "Done". Sets ``D`` (the work directory)
    in the calling shell. Pick ``spec.tool`` with :func:`probe_command` first.
    """
    stat = _stat_path(dev)
    _checked_workdir(spec.workdir)
    prep = (
        ("dmesg -n 1;" if spec.quiet_console else "")
        + f"D={spec.workdir};rm -rf $D;mkdir -p $D/p;echo {spec.tool} >$D/kind;"
        + f"dmesg|grep -c '{POOL_FULL_TEXT}' >$D/full0;"
        + (
            "grep -q ' /sys/kernel/debug ' /proc/mounts||mount -t debugfs none /sys/kernel/debug 2>/dev/null;"
            if spec.mount_debugfs
            else ""
        )
    )
    if spec.tool == "fio":
        inner = _fio_body(dev, stat, spec.fio)
    elif spec.tool == "dd":
        inner = ddload.body(dev, "$D", stat, spec.dd)
    else:
        raise ValueError(f"unknown load tool {spec.tool!r} (fio or dd; see probe_command)")
    cmd = prep + f"( ( {inner} ) </dev/null >/dev/null 2>&1 & )"
    if len(cmd) > MAX_COMMAND_CHARS:
        raise ValueError(f"start command is {len(cmd)} characters, over {MAX_COMMAND_CHARS}")
    return cmd


#: the progress line's files, in the order of its fields (the stat file is the device's)
_PROGRESS_FILES = ("/proc/uptime", "{stat}", "/sys/kernel/debug/swiotlb/io_tlb_used", "{d}/t0", "{d}/rc")


def progress_command(dev: str, workdir: str = WORKDIR, count_pool_full: bool = True) -> str:
    """One line printing one ``DMAPROG|...|END`` line (see :func:`parse_progress`).

    Fields: /proc/uptime | /sys/block/DEV/stat | io_tlb_used (empty without
    debugfs) | t0 (empty until the timed part started) | rc (empty until done)
    | with ``count_pool_full``, how many "swiotlb buffer is full" lines the
    kernel printed since the load started (the start command saved the count
    before; dmesg that cannot be read counts 0, which only keeps the full
    stall limit), which lets the stall detector decide early (:mod:`.stall`,
    ``conclusive_seconds``); without it the field is left out, as an older
    guest's line.

    Why one busybox awk reads every file: each process a TCG guest starts
    costs some 20 ms of host CPU, and the line was six command substitutions
    plus a dmesg pipeline (measured: 102 ms of QEMU CPU a sample, at two
    samples a second). The runner asks for the count only when the previous
    sample saw no I/O complete, the only time the detector reads it.
    """
    files = " ".join(f.format(stat=_stat_path(dev), d=_checked_workdir(workdir)) for f in _PROGRESS_FILES)
    full = f'z=0;getline z<"{workdir}/full0";s=s"|"(n-z)' if count_pool_full else ""
    # the literal marker is never followed by "|" here, so the echoed command cannot parse as a line
    script = (
        f"index($0,\"{POOL_FULL_TEXT}\"){{n++}}"
        f'END{{s="DMAPROG";k=split("{files}",f," ");'
        'for(i=1;i<=k;i++){v="";getline v<f[i];s=s"|"v}'
        f'{full};print s"|END"}}'
    )
    source = "dmesg 2>/dev/null|" if count_pool_full else ""
    tail = "" if count_pool_full else "</dev/null"
    return f"{source}awk '{script}'{tail}"


@dataclass(frozen=True)
class BlockStat:
    """/sys/block/DEV/stat (Documentation/block/stat.rst); 11, 15 or 17 fields."""

    reads: int
    read_sectors: int
    writes: int
    write_sectors: int
    in_flight: int
    io_ticks_ms: int

    @property
    def ios(self) -> int:
        return self.reads + self.writes

    @property
    def sectors(self) -> int:
        return self.read_sectors + self.write_sectors


def parse_block_stat(text: str) -> BlockStat:
    f = [int(x) for x in text.split()]
    if len(f) < 11:
        raise ValueError(f"block stat needs >= 11 fields, got {len(f)}: {text.strip()!r}")
    return BlockStat(reads=f[0], read_sectors=f[2], writes=f[4], write_sectors=f[6], in_flight=f[8], io_ticks_ms=f[9])


@dataclass(frozen=True)
class Progress:
    uptime_s: float
    stat: BlockStat
    swiotlb_used: int | None  # io_tlb_used slots, None without debugfs
    started: bool  # the timed part (t0) has begun
    finished: bool
    rc: int | None
    pool_full_lines: int | None = None  # "swiotlb buffer is full" lines since the load started; None: an older guest

    @property
    def sectors(self) -> int:
        return self.stat.sectors

    @property
    def in_flight(self) -> int:
        return self.stat.in_flight

    def sample(self, t: float) -> Sample:
        """A stall-detector sample at host time ``t`` (use time.monotonic())."""
        return Sample(t=t, sectors=self.sectors, in_flight=self.in_flight, finished=self.finished,
                      started=self.started, pool_full=(self.pool_full_lines or 0) > 0)


# Strict on purpose: the echoed command line itself contains 's="DMAPROG"' and
# 's"|END"', and must not parse.
_PROG = re.compile(
    r"DMAPROG\|(?P<up>\d+(?:\.\d+)?)(?: \d+(?:\.\d+)?)?\|(?P<stat>[\d \t]+)\|(?P<used>\d*)\|"
    r"(?P<t0>[\d. ]*)\|(?P<rc>-?\d*)(?:\|(?P<full>-?\d*))?\|END"
)


def parse_progress(text: str) -> Progress:
    """The last ``DMAPROG`` line in ``text``; ValueError if there is none."""
    matches = list(_PROG.finditer(text))
    if not matches:
        raise ValueError("no DMAPROG progress line in guest output")
    m = matches[-1]
    rc = m["rc"]
    return Progress(
        uptime_s=float(m["up"]),
        stat=parse_block_stat(m["stat"]),
        swiotlb_used=int(m["used"]) if m["used"] else None,
        started=bool(m["t0"].strip()),
        finished=rc != "",
        rc=int(rc) if rc else None,
        pool_full_lines=int(m["full"]) if m["full"] else None,
    )


def result_command(workdir: str = WORKDIR) -> str:
    """One line printing every result file framed as ``@@DMA <name>`` ... ``@@DMA-END``."""
    return (
        f'(cd {workdir} 2>/dev/null&&for f in *;do [ -f "$f" ]&&{{ echo "@@DMA $f";cat "$f";echo;}};done;'
        'echo "@@DMA-END")'
    )


_SECTION = re.compile(r"^@@DMA (?P<name>[\w.-]+)\s*$")


def split_sections(text: str) -> dict[str, str]:
    """``@@DMA name`` framed output -> {name: content}; stops at ``@@DMA-END``."""
    out: dict[str, str] = {}
    name: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = _SECTION.match(line)
        if m or line.startswith("@@DMA-END"):
            if name is not None:
                out[name] = "\n".join(buf).strip("\n") + "\n"
            name, buf = (m["name"], []) if m else (None, [])
            if not m:
                break
            continue
        if name is not None:
            buf.append(line)
    if name is not None:
        out[name] = "\n".join(buf).strip("\n") + "\n"
    return out


@dataclass
class LoadResult:
    tool: str | None  # "fio" | "dd" | None (nothing ran)
    finished: bool
    rc: int | None
    mib_s: float | None
    iops: float | None
    duration_s: float | None
    io_errors: int
    verify_failures: int  # fio verify failures, or dd checksum mismatches
    error_lines: list[str] = field(default_factory=list)
    parse_error: str | None = None
    fio: FioResult | None = None
    dd: DdResult | None = None
    expected_dd_passes: int | None = None  # workers x passes, set by the runner that started dd

    def unverified(self) -> str | None:
        """Why this finished load does not count as verified, or None when it does.

        fio: its JSON must show a write-only job with verify on whose reads
        (all of them verify reads) cover every byte written
        (:meth:`.fio.FioResult.verify_problem`); dd: every pass of every
        worker must have been reported (a missing one never compared its
        checksum).
        """
        if self.fio is not None:
            return self.fio.verify_problem()
        if self.dd is not None:
            if not self.dd.passes:
                return "dd reported no pass"
            if self.expected_dd_passes is not None and len(self.dd.passes) < self.expected_dd_passes:
                return f"only {len(self.dd.passes)} of {self.expected_dd_passes} dd passes reported"
            return None
        return self.parse_error or "no result files"


def _uptime(text: str | None) -> float | None:
    if not text or not text.split():
        return None
    try:
        return float(text.split()[0])
    except ValueError:
        return None


def _stat(text: str | None) -> BlockStat | None:
    try:
        return parse_block_stat(text) if text else None
    except ValueError:
        return None


def parse_result(text: str) -> LoadResult:
    """Parse the output of :func:`result_command` into a :class:`LoadResult`.

    Throughput and IOPS come from fio when it reported them, else from the
    /sys/block stat counters between ``t0`` and ``t1`` (dd, or a fio whose
    JSON was lost). A garbled fio report is kept as ``parse_error``, not
    raised: the classifier must still see the other evidence.
    """
    sec = split_sections(text)
    kind = (sec.get("kind") or "").strip() or None
    rc_text = (sec.get("rc") or "").strip()
    rc = int(rc_text) if re.fullmatch(r"-?\d+", rc_text) else None
    t0, t1 = _uptime(sec.get("t0")), _uptime(sec.get("t1"))
    s0, s1 = _stat(sec.get("s0")), _stat(sec.get("s1"))
    duration = (t1 - t0) if (t0 is not None and t1 is not None) else None
    res = LoadResult(
        tool=kind, finished=rc is not None, rc=rc, mib_s=None, iops=None,
        duration_s=duration, io_errors=0, verify_failures=0,
    )
    if duration and duration > 0 and s0 and s1:
        res.mib_s = (s1.sectors - s0.sectors) * SECTOR / MIB / duration
        res.iops = (s1.ios - s0.ios) / duration
    if kind == "fio":
        try:
            fr = parse_fio(sec.get("fio.json", ""), sec.get("fio.err", ""))
        except ValueError as e:
            res.parse_error = f"fio.json: {e}"
            if res.finished and rc:
                res.io_errors += 1
            res.error_lines = [ln for ln in sec.get("fio.err", "").splitlines() if ln.strip()]
        else:
            res.fio = fr
            res.mib_s, res.iops = fr.mib_s, fr.iops
            res.io_errors = fr.io_errors
            res.verify_failures = fr.verify_failures
            res.error_lines = fr.io_error_lines + fr.messages
    elif kind == "dd":
        logs = "\n".join(v for k, v in sorted(sec.items()) if re.fullmatch(r"dd\d+\.log", k))
        errs = "\n".join(v for k, v in sorted(sec.items()) if re.fullmatch(r"dd\d+\.err", k))
        dr = ddload.parse_dd(logs, errs)
        res.dd = dr
        res.io_errors = len(dr.io_failures)
        res.verify_failures = len(dr.mismatches)
        res.error_lines = dr.error_lines
    return res
