"""Fallback guest load with busybox only: parallel direct ``dd`` + ``md5sum``.

Why: a minimal initramfs has busybox but rarely fio. This load still does
what matters for SWIOTLB: several writers and readers map large direct-I/O
buffers at once (``oflag=direct``/``iflag=direct``, 4 MiB writes, reads at
4M/1M/256K/64K in turn), and every byte read back is checked against what
was written, so a bounce bug shows up as a checksum mismatch.

Design:
- each worker owns a distinct region of the disk (worker i at i * region) and
  its own random pattern (from /dev/urandom, kept in tmpfs), so data landing
  in another worker's region, or another block of the same region, is caught;
- patterns are made before the timed part starts (``t0`` is written after),
  so slow random generation under TCG is not mistaken for a stall;
- a read's exit status is saved to a file from inside the ``dd | md5sum``
  pipeline (busybox ash may lack ``pipefail``): a failed read is reported as
  an I/O error, not as a checksum mismatch;
- 8 workers: the concurrency of the measured 8 x 4 MiB readers
  (measured-here.md). With 4 workers a 6.1 TCG guest never filled an 8 MiB
  pool: under TCG the guest CPU, not the device, is the bottleneck, so fewer
  requests overlap. Worst case in flight: 8 x 4 MiB = 32 MiB, half the 64 MiB
  default pool, so "64M is clean" stays a fair rule.

Per-pass output line, one per worker and pass, in ``dd<i>.log``::

    DDLOAD <worker> <pass> <write_rc> <read_rc> <expected_md5> <read_md5> <read_bs_k>

dd's own messages (``dd: error writing '/dev/vda': Input/output error``) go
to ``dd<i>.err``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MIB = 1 << 20
READ_BS_K = (4096, 1024, 256, 64)  # cycled per pass


@dataclass(frozen=True)
class DdSpec:
    workers: int = 8
    region_mib: int = 8  # per worker; tmpfs holds one pattern of this size per worker
    passes: int = 4

    def __post_init__(self) -> None:
        if self.workers < 2:
            raise ValueError(f"dd load needs >= 2 parallel workers (got {self.workers})")
        if self.region_mib <= 0 or self.region_mib % 4:
            raise ValueError(f"dd region_mib must be a positive multiple of 4 (got {self.region_mib})")
        if self.passes < 1:
            raise ValueError(f"dd passes must be >= 1 (got {self.passes})")

    @property
    def max_inflight_bytes(self) -> int:
        return self.workers * 4 * MIB

    @property
    def disk_bytes(self) -> int:
        return self.workers * self.region_mib * MIB

    @property
    def tmpfs_bytes(self) -> int:
        """Guest RAM the patterns take (tmpfs): keep well under free memory."""
        return self.workers * self.region_mib * MIB

    @property
    def bytes_moved(self) -> int:
        """Bytes written plus read back over the whole load."""
        return 2 * self.workers * self.passes * self.region_mib * MIB


def worker_function(dev: str, d: str, spec: DdSpec) -> str:
    """ash function ``w I`` running all passes of worker I (one line)."""
    m = spec.region_mib
    return (
        "w(){ o=$(($1*%(b)d));f=%(d)s/p/$1;e=$(md5sum <$f);e=${e%%%% *};p=0;"
        "while [ $p -lt %(P)d ];do "
        "dd if=$f of=%(dev)s bs=4M seek=$o oflag=direct conv=notrunc 2>>%(d)s/dd$1.err;a=$?;"
        "b=$((4096>>($p%%4*2)));"
        "g=$({ dd if=%(dev)s bs=${b}k skip=$(($o*4096/$b)) count=$((%(k)d/$b)) iflag=direct 2>>%(d)s/dd$1.err;"
        "echo $? >%(d)s/r$1; }|md5sum);"
        'echo "DDLOAD $1 $p $a $(cat %(d)s/r$1) $e ${g%%%% *} $b" >>%(d)s/dd$1.log;'
        "p=$(($p+1));done; }"
    ) % {"b": m // 4, "d": d, "P": spec.passes, "dev": dev, "k": m * 1024}


def body(dev: str, d: str, stat: str, spec: DdSpec) -> str:
    """The load itself (runs in a background subshell, see :mod:`.load`)."""
    n = spec.workers
    return (
        worker_function(dev, d, spec) + ";"
        f"i=0;while [ $i -lt {n} ];do head -c {spec.region_mib * MIB} /dev/urandom >{d}/p/$i;i=$(($i+1));done;"
        f"cat {stat} >{d}/s0;cat /proc/uptime >{d}/t0;"
        f"i=0;while [ $i -lt {n} ];do w $i & i=$(($i+1));done;wait;"
        f"cat /proc/uptime >{d}/t1;cat {stat} >{d}/s1;echo 0 >{d}/rc"
    )


@dataclass(frozen=True)
class DdPass:
    worker: int
    pass_no: int
    write_rc: int
    read_rc: int
    expected: str
    got: str
    read_bs_k: int

    @property
    def io_failed(self) -> bool:
        return self.write_rc != 0 or self.read_rc != 0

    @property
    def mismatch(self) -> bool:
        """Checksum differs although both transfers reported success."""
        return not self.io_failed and self.expected != self.got


@dataclass
class DdResult:
    passes: list[DdPass] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)  # dd's complaints

    @property
    def mismatches(self) -> list[DdPass]:
        return [p for p in self.passes if p.mismatch]

    @property
    def io_failures(self) -> list[DdPass]:
        return [p for p in self.passes if p.io_failed]


_PASS = re.compile(
    r"^DDLOAD (\d+) (\d+) (\d+) (\d+) ([0-9a-f]{32}) ([0-9a-f]{32}|\S*) (\d+)\s*$"
)
# busybox: "dd: error writing '/dev/vda': Input/output error", "dd: /dev/vda: ..."
_DD_ERR = re.compile(r"^dd: .*")


def parse_dd(logs: str, errs: str = "") -> DdResult:
    """Parse the concatenated ``dd<i>.log`` (and ``dd<i>.err``) texts."""
    res = DdResult()
    for line in logs.splitlines():
        m = _PASS.match(line.strip())
        if m:
            res.passes.append(
                DdPass(int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5], m[6], int(m[7]))
            )
    for line in errs.splitlines():
        if _DD_ERR.match(line.strip()):
            res.error_lines.append(line.strip())
    return res
