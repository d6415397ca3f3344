"""fio as the guest load: the argument list, and the parser of its JSON (fio 3.x).

Why these parameters (each one is there to make SWIOTLB work hard but fairly):
- ``direct=1``: no page cache, every byte crosses the device's DMA mapping,
  i.e. the bounce pool.
- ``numjobs=4`` x ``iodepth=2`` (libaio): many mappings live at once, as the
  README's multiqueue virtio-blk FAQ describes. Worst case in flight is
  numjobs x iodepth x 4 MiB = 32 MiB: the same demand as the measured
  8 x 4 MiB ``dd`` readers, and half the 64 MiB default pool, so "pools >= 64M
  are clean" stays a fair rule (see :meth:`FioSpec.max_inflight_bytes`).
- ``bssplit`` 4k..4m: small mappings fragment the pool, large ones need many
  slots at once (a 4 MiB request needs 1280 KiB of contiguous-per-segment
  bounce space on virtio-blk).
- ``rw=randwrite`` with ``verify=crc32c``, ``do_verify=1``: the job writes
  its region, then a verify pass reads every written block back and checks
  it, so a bounce bug that corrupts data is caught as corruption, not as "it
  ran". Both directions cross the pool (writes bounce to the device, verify
  reads back from it). Why write-only and not ``randrw``: with a write-only
  workload every byte fio reads is a verify read, so its JSON proves the
  verify pass ran: read bytes must cover the bytes written
  (:meth:`FioResult.verify_problem`). With ``randrw`` the workload's own
  reads make ``read_bytes > 0`` whether or not anything was verified; and a
  job cut short by ``runtime`` skips its verify pass (measured, fio 3.33:
  39 MB written, 0 read), which only the comparison catches.
- each job owns ``size`` bytes at ``offset_increment`` so jobs never overwrite
  each other's verified blocks (fio still prints a "multiple writers" note).
- ``runtime`` caps a job even if I/O is slow (TCG); progress is observed from
  ``/sys/block/DEV/stat`` (see :mod:`.load`), not from fio's status output, so
  the same sampling works for the dd fallback and costs nothing in the guest.
- libaio when the guest's fio has it, otherwise psync (iodepth then is 1, the
  parallelism comes from numjobs).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field

EILSEQ = 84  # fio sets a job's error to EILSEQ on a verify failure (Linux errno)
MIB = 1 << 20
WRITE_WORKLOAD = "randwrite"
#: rw= values that read nothing but the verify pass
WRITE_ONLY = ("write", "randwrite", "trimwrite")


@dataclass(frozen=True)
class FioSpec:
    numjobs: int = 4
    iodepth: int = 2
    bssplit: str = "4k/25:64k/25:1m/25:4m/25"
    size_mib: int = 32  # per job region
    runtime_s: int = 300
    verify: str = "crc32c"
    status_interval_s: int | None = None  # fio's own periodic JSON, off by default

    def __post_init__(self) -> None:
        if self.numjobs < 4:
            raise ValueError(f"fio numjobs must be >= 4 (got {self.numjobs})")
        if self.iodepth < 2:
            raise ValueError(f"fio iodepth must be > 1 (got {self.iodepth})")
        if self.max_bs_bytes < 4 * MIB:
            raise ValueError(f"fio bssplit must reach 4m (got {self.bssplit})")
        if self.size_mib * MIB < self.max_bs_bytes:
            raise ValueError(f"fio size_mib {self.size_mib} is smaller than one block")

    @property
    def max_bs_bytes(self) -> int:
        return max(_parse_bs(part.split("/")[0]) for part in self.bssplit.split(":"))

    @property
    def max_inflight_bytes(self) -> int:
        """Upper bound of data mapped for DMA at once by this load."""
        return self.numjobs * self.iodepth * self.max_bs_bytes

    @property
    def disk_bytes(self) -> int:
        """The scratch disk must be at least this large."""
        return self.numjobs * self.size_mib * MIB


def _parse_bs(text: str) -> int:
    m = re.fullmatch(r"(\d+)([kmg]?)", text.strip().lower())
    if not m:
        raise ValueError(f"bad fio block size {text!r}")
    return int(m[1]) << {"": 0, "k": 10, "m": 20, "g": 30}[m[2]]


def fio_args(dev: str, output: str, *, engine: str = "libaio", spec: FioSpec = FioSpec()) -> list[str]:
    """argv of one fio run against ``dev`` writing JSON to ``output``."""
    args = [
        "fio",
        "--name=dma",
        f"--filename={dev}",
        "--direct=1",
        f"--ioengine={engine}",
        f"--iodepth={spec.iodepth}",
        f"--numjobs={spec.numjobs}",
        f"--rw={WRITE_WORKLOAD}",
        f"--bssplit={spec.bssplit}",
        f"--verify={spec.verify}",
        "--do_verify=1",
        f"--size={spec.size_mib}M",
        f"--offset_increment={spec.size_mib}M",
        f"--runtime={spec.runtime_s}",
        "--group_reporting",
        "--output-format=json",
        f"--output={output}",
    ]
    if spec.status_interval_s:
        args.append(f"--status-interval={spec.status_interval_s}")
    return args


def fio_command(dev: str, output: str, *, engine: str = "libaio", spec: FioSpec = FioSpec()) -> str:
    return shlex.join(fio_args(dev, output, engine=engine, spec=spec))


@dataclass
class FioResult:
    version: str | None = None
    jobs: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    bw_bytes: float = 0.0  # read + write, bytes/s
    iops: float = 0.0  # read + write
    runtime_ms: int = 0
    job_errors: list[int] = field(default_factory=list)  # nonzero "error" of jobs
    verify_failures: int = 0
    io_error_lines: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # other fio:/verify: lines
    options: dict[str, str] = field(default_factory=dict)  # the job options fio reported (rw, verify, ...)

    def verify_problem(self) -> str | None:
        """Why this report does not prove a verify pass read back everything written; None when it does.

        fio's JSON has no verify counter; the proof is a write-only workload
        (so every read is a verify read) with verify on, whose read bytes
        cover the bytes written.
        """
        rw = self.options.get("rw", "read")  # fio's default
        verify = self.options.get("verify", "none")
        if self.write_bytes <= 0:
            return "fio wrote no bytes"
        if rw not in WRITE_ONLY:
            return f"fio ran rw={rw}: its reads are the workload's, they prove no verify pass"
        if verify in ("none", "0", "") or self.options.get("do_verify", "1") == "0":
            return f"fio ran without a verify pass (verify={verify}, do_verify={self.options.get('do_verify', '1')})"
        if self.read_bytes < self.write_bytes:
            return (f"fio's verify pass read back {self.read_bytes} of the {self.write_bytes} bytes written "
                    "(cut short, e.g. by runtime=)")
        return None

    @property
    def mib_s(self) -> float:
        return self.bw_bytes / MIB

    @property
    def io_errors(self) -> int:
        """Job errors other than verify failures, or io_u error lines."""
        return max(len([e for e in self.job_errors if e != EILSEQ]), len(self.io_error_lines))


def _json_objects(text: str) -> list[dict]:
    """Every top-level JSON object in ``text``, skipping fio's plain-text notes.

    With ``--output`` fio writes its notes ("fio: multiple writers may ...")
    into the same file before the JSON, and ``--status-interval`` appends one
    object per interval; the final report is the last object.
    """
    dec = json.JSONDecoder()
    objs: list[dict] = []
    objs_end = 0
    for m in re.finditer(r"^\{", text, re.MULTILINE):
        if m.start() < objs_end:
            continue
        try:
            obj, end = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            objs.append(obj)
            objs_end = end
    return objs


_VERIFY_LINE = re.compile(r"^\s*(?:verify: bad|\w+: verify failed|fio: verify type mismatch)")
_IOU_ERR = re.compile(r"^\s*fio: io_u error on file")


def parse_fio(json_text: str, stderr_text: str = "") -> FioResult:
    """Parse fio's JSON output (plus its stderr) into totals.

    Raises ValueError when no fio report is in ``json_text`` (fio did not run
    or the text is garbled); the caller decides how to classify that.
    """
    objs = [o for o in _json_objects(json_text) if "jobs" in o]
    if not objs:
        raise ValueError("no fio JSON report found")
    rep = objs[-1]
    res = FioResult(version=rep.get("fio version"), jobs=len(rep["jobs"]))
    res.options = {str(k): str(v) for k, v in (rep.get("global options") or {}).items()}
    for job in rep["jobs"]:
        res.options.update({str(k): str(v) for k, v in (job.get("job options") or {}).items()})
        for d in ("read", "write", "trim"):
            st = job.get(d) or {}
            if d == "read":
                res.read_bytes += int(st.get("io_bytes", 0))
            elif d == "write":
                res.write_bytes += int(st.get("io_bytes", 0))
            res.bw_bytes += float(st.get("bw_bytes", 0))
            res.iops += float(st.get("iops", 0))
        res.runtime_ms = max(res.runtime_ms, int(job.get("job_runtime", 0)))
        if job.get("error"):
            res.job_errors.append(int(job["error"]))
    verify_lines = 0
    for line in (json_text + "\n" + stderr_text).splitlines():
        if _VERIFY_LINE.search(line):
            verify_lines += 1
            res.messages.append(line.strip())
        elif _IOU_ERR.search(line):
            res.io_error_lines.append(line.strip())
        elif line.startswith("fio: ") and "multiple writers" not in line:
            res.messages.append(line.strip())
    res.verify_failures = max(verify_lines, res.job_errors.count(EILSEQ))
    return res
