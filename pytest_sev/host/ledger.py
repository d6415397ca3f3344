"""The host-state ledger: what a guest-booting test can leave behind on the host.

Why: a test that leaks (a QEMU it never stopped, a guest-budget slot it never
gave back, an SEV ASID still charged, a ``kvm_amd`` parameter it changed, an
SEV/KVM/ccp error the host kernel printed) passes itself and breaks the next
test, or the next run, far from the cause.  The plugin
(:mod:`pytest_sev.plugin.ledger`) takes a :class:`Snapshot` before each
guest-booting test and another after its fixtures are torn down, and fails
the teardown naming every leak :func:`diff` finds.

Two halves, as everywhere in pytest-sev:

* pure: :class:`Reading` (a value, or unknown with the reason), the parsers
  (``misc.current``, ``/proc/locks``, ``/dev/kmsg`` records) and
  :func:`diff`.  An entry unknown on either side is reported as
  ``could not compare <entry>: <reason>``: never a leak, never a clean bill.
* reading: :func:`read_misc`, :func:`read_kvm_amd`, :func:`read_budget_slots`,
  :func:`read_qemu_descendants` and :class:`KmsgCursor`, each turning a failed,
  empty or denied read into an unknown with the reason.

Sources (docs/sev-reference.md for the SEV ones):

* the misc cgroup (Documentation/admin-guide/cgroup-v2.rst, "Misc"): flat-keyed
  ``misc.current`` lines ``sev N`` / ``sev_es N`` (the resource names of
  kernel/cgroup/misc.c, charged by arch/x86/kvm/svm/sev.c per SEV / SEV-ES
  guest; SEV-SNP guests are charged as ``sev_es``).  ``misc.current`` exists in
  non-root cgroups since 5.13 and in the root cgroup only since 6.5
  ("cgroup/misc: Expose misc.current on cgroup v2 root");
* ``/sys/module/kvm_amd/parameters/*``: the module's effective parameters;
* ``/dev/kmsg`` (Documentation/ABI/testing/dev-kmsg): one record per read,
  ``PRI,SEQ,USEC,FLAGS;message`` plus continuation lines starting with a
  space; opened non-blocking and moved to the end, it yields exactly the
  records printed since (EAGAIN when there is none; EPIPE once when the
  ring buffer overwrote records not yet read);
* ``/proc/locks``: ``N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`` lines,
  which say who holds a guest-budget slot (filelock takes ``flock`` locks)
  without touching the lock;
* ``/proc/PID/stat`` and ``cmdline``: this process's descendants that are QEMU.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: the snapshot's entries, in report order
MISC = "misc.current"
KVM_AMD = "kvm_amd parameters"
SLOTS = "guest budget slots"
QEMU = "QEMU processes"
KERNEL_LOG = "host kernel log"
ENTRIES = (MISC, KVM_AMD, SLOTS, QEMU, KERNEL_LOG)
#: where the readers look: the host's own filesystem (tests give a made-up one)
HOST_ROOT = Path("/")
KMSG = Path("/dev/kmsg")


# -- pure: values ------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    """One thing read off the host: ``value``, or ``unknown`` with the reason.

    ``source`` says where it was read (a path), so two readings from
    different places are not compared as if they were one."""

    value: Any = None
    unknown: str | None = None
    source: str = ""

    @classmethod
    def of(cls, value: Any, source: str = "") -> Reading:
        return cls(value=value, source=source)

    @classmethod
    def missing(cls, reason: str, source: str = "") -> Reading:
        return cls(unknown=reason or "no reason given", source=source)

    @property
    def known(self) -> bool:
        return self.unknown is None

    def describe(self) -> str:
        if not self.known:
            return f"unknown: {self.unknown}"
        text = _show(self.value)
        return f"{text} (from {self.source})" if self.source else text


def _show(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) or "none"
    if isinstance(value, (tuple, list)):
        return "; ".join(str(v) for v in value) or "none"
    return str(value)


@dataclass(frozen=True)
class Snapshot:
    """What a test could leak, read at one moment, with the reading process's pid.

    ``entries`` maps each of :data:`ENTRIES` to a :class:`Reading`:

    * ``misc.current``: {resource: ASIDs in use};
    * ``kvm_amd parameters``: {parameter: value};
    * ``guest budget slots``: {slot lock file: pid holding it} (ours, and other holders seen);
    * ``QEMU processes``: {pid: argv} of this process's QEMU descendants;
    * ``host kernel log``: SEV/KVM/ccp error lines since the test began
      (before the test: none, by definition of the mark).
    """

    pid: int
    entries: Mapping[str, Reading]

    def get(self, name: str) -> Reading:
        return self.entries.get(name) or Reading.missing(f"{name} was not read")

    def format_text(self) -> str:
        return "\n".join(f"  {name}: {self.get(name).describe()}" for name in ENTRIES)


@dataclass(frozen=True)
class Exempt:
    """What the test may leave because a fixture that outlives it holds it
    (the session's shared guest started on first use, a module's guest):
    QEMU pids and slot names, each with who holds it."""

    pids: Mapping[int, str] = field(default_factory=dict)
    slots: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerDiff:
    """The verdict: ``leaks`` (each names what was left behind), ``could_not``
    (entries that could not be compared, each with why), ``notes`` (held by a
    fixture that outlives the test, so not the test's leak)."""

    leaks: tuple[str, ...]
    could_not: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """True only when nothing leaked *and* every entry was compared."""
        return not self.leaks and not self.could_not

    def format_text(self) -> str:
        lines = [f"  {leak}" for leak in self.leaks] or ["  no leak found"]
        lines += [f"  {c}" for c in self.could_not]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def format_ledger(before: Snapshot, after: Snapshot, result: LedgerDiff) -> str:
    """The ledger as the report shows it: before, after, diff, unknowns."""
    unknowns = [f"  before: {n}: {before.get(n).unknown}" for n in ENTRIES if not before.get(n).known]
    unknowns += [f"  after: {n}: {after.get(n).unknown}" for n in ENTRIES if not after.get(n).known]
    return "\n".join([
        f"host ledger of pid {before.pid}",
        "before the test:", before.format_text(),
        "after its teardown:", after.format_text(),
        "diff:", result.format_text(),
        "unknowns:", "\n".join(unknowns) or "  none",
    ]) + "\n"


# -- pure: the diff ------------------------------------------------------------

def _comparable(name: str, before: Snapshot, after: Snapshot, could_not: list[str]) -> tuple[Reading, Reading] | None:
    """The readings of entry *name* before and after, or None (with why added to *could_not*) when
    they cannot be compared: unknown on either side, or read from two different places."""
    b, a = before.get(name), after.get(name)
    if not b.known:
        could_not.append(f"could not compare {name}: before the test: {b.unknown}")
    elif not a.known:
        could_not.append(f"could not compare {name}: after the test: {a.unknown}")
    elif b.source != a.source:
        could_not.append(f"could not compare {name}: read from {b.source} before and {a.source} after")
    else:
        return b, a
    return None


def _others_holding(before: Snapshot, after: Snapshot) -> list[int]:
    """Pids other than ours that held budget slots (other workers, other runs):
    their guests share the host-wide counters with this test."""
    pids: set[int] = set()
    for snap in (before, after):
        slots = snap.get(SLOTS)
        if slots.known:
            pids |= {int(p) for p in slots.value.values() if int(p) != snap.pid}
    return sorted(pids)


def diff(before: Snapshot, after: Snapshot, exempt: Exempt = Exempt()) -> LedgerDiff:
    """What the test left behind between *before* and *after*.

    Rules (each has a test that fails when it is flipped):

    * an entry unknown on either side, or read from two different places,
      is ``could not compare``: neither a leak nor clean;
    * QEMU: a pid of ours alive after and not before is a leak, unless a
      fixture that outlives the test holds it (*exempt*: a note);
    * budget slots: a slot *this process* holds after and did not before is a
      leak, unless exempt; slots of other pids are other workers' or runs';
    * ``kvm_amd`` parameters: any change, appearance or disappearance is a leak;
    * ``misc.current``: more ASIDs of a kind in use after than before is a
      leak; fewer is not (a guest elsewhere ended).  Counts are host-wide, so
      when other pids held budget slots, or an exempt QEMU started during the
      test, a rise cannot be put on this test: could not compare, naming them;
    * kernel log: every SEV/KVM/ccp error line since the test began is a
      leak, with the same caveat for other holders of the budget.
    """
    leaks: list[str] = []
    could_not: list[str] = []
    notes: list[str] = []
    others = _others_holding(before, after)

    new_exempt: list[str] = []
    pair = _comparable(QEMU, before, after, could_not)
    if pair is not None:
        b, a = pair
        for pid in sorted(set(a.value) - set(b.value)):
            if pid in exempt.pids:
                notes.append(f"QEMU pid {pid} started during the test is held by {exempt.pids[pid]}")
                new_exempt.append(f"QEMU pid {pid} ({exempt.pids[pid]})")
            else:
                leaks.append(f"left behind: QEMU pid {pid} (argv {a.value[pid]})")

    pair = _comparable(SLOTS, before, after, could_not)
    if pair is not None:
        b, a = pair
        ours_before = {s for s, p in b.value.items() if int(p) == before.pid}
        for slot in sorted(s for s, p in a.value.items() if int(p) == after.pid and s not in ours_before):
            if slot in exempt.slots:
                notes.append(f"budget slot {slot} taken during the test is held by {exempt.slots[slot]}")
            else:
                leaks.append(f"left behind: budget slot {Path(slot).stem} held (by pid {after.pid}: {slot})")

    pair = _comparable(KVM_AMD, before, after, could_not)
    if pair is not None:
        b, a = pair
        for name in sorted(set(b.value) | set(a.value)):
            old, new = b.value.get(name), a.value.get(name)
            if old != new:
                leaks.append(f"left behind: kvm_amd parameter {name} changed "
                             f"{'(absent)' if old is None else old} -> {'(absent)' if new is None else new}")

    shared = []
    if others:
        shared.append(f"other processes held guest budget slots (pids {', '.join(map(str, others))})")
    if new_exempt:
        shared.append(f"a guest that outlives the test started during it ({', '.join(new_exempt)})")

    pair = _comparable(MISC, before, after, could_not)
    if pair is not None:
        b, a = pair
        rises = [f"{res} {b.value.get(res, 0)} -> {n}" for res, n in sorted(a.value.items())
                 if n > b.value.get(res, 0)]
        if rises and shared:
            could_not.append(f"could not compare {MISC}: ASIDs in use rose ({'; '.join(rises)}) while "
                             f"{' and '.join(shared)}: the counts are host-wide")
        elif rises:
            leaks += [f"left behind: ASIDs still in use, misc.current {r} ({a.source})" for r in rises]

    pair = _comparable(KERNEL_LOG, before, after, could_not)
    if pair is not None:
        _, a = pair
        if a.value and others:
            could_not.append(f"could not compare {KERNEL_LOG}: {len(a.value)} SEV/KVM/ccp error line(s) while "
                             f"{shared[0]}: {'; '.join(a.value)}")
        else:
            leaks += [f"left behind: host kernel error since the test began: {line}" for line in a.value]
    return LedgerDiff(tuple(leaks), tuple(could_not), tuple(notes))


# -- pure: parsers ---------------------------------------------------------------

def parse_misc_current(text: str) -> dict[str, int]:
    """``misc.current`` (flat-keyed: ``sev 3``) -> {resource: count}.

    Raises ValueError on a line that is not ``NAME COUNT``: a file we cannot
    read is unknown, not zero."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"not a misc.current line: {line!r}")
        out[parts[0]] = int(parts[1])
    return out


#: a granted lock (a waiter's line has ``->`` before FLOCK, and does not match)
_LOCK_LINE = re.compile(r"^\d+:\s+FLOCK\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s")


def parse_proc_locks(text: str) -> dict[tuple[int, int, int], int]:
    """``/proc/locks`` -> {(major, minor, inode): pid} of granted ``flock`` locks
    (``->`` lines are waiters, not holders, and are left out)."""
    out: dict[tuple[int, int, int], int] = {}
    for line in text.splitlines():
        m = _LOCK_LINE.match(line)
        if m:
            out[(int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))] = int(m.group(1))
    return out


@dataclass(frozen=True)
class KmsgRecord:
    """One ``/dev/kmsg`` record: syslog facility and level, sequence, text."""

    facility: int
    level: int
    seq: int
    text: str


def parse_kmsg_record(raw: str) -> KmsgRecord | None:
    """``PRI,SEQ,USEC,FLAGS[,...];message`` (continuation lines dropped) -> a record,
    or None for text that is not one."""
    head, sep, rest = raw.partition(";")
    fields = head.split(",")
    if not sep or len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
        return None
    pri = int(fields[0])
    return KmsgRecord(facility=pri >> 3, level=pri & 7, seq=int(fields[1]), text=rest.split("\n")[0])


def split_kmsg(text: str) -> list[str]:
    """A saved stream of records (one per line, continuations indented) -> raw records."""
    records: list[str] = []
    for line in text.splitlines():
        if line.startswith(" ") and records:
            records[-1] += "\n" + line
        elif line.strip():
            records.append(line)
    return records


#: messages of the SEV/KVM/PSP stack: a ccp/psp/kvm/kvm_amd/SVM/SEV prefix (``kvm: ``, not
#: a guest kernel's ``kvm-clock:``), SEV/PSP named anywhere, or a kernel WARN/BUG whose
#: location is in those sources
_SUBSYSTEM = re.compile(
    r"^(?:ccp|psp|kvm|kvm_amd|kvm-amd|SVM|svm|SEV|SEV-ES|SEV-SNP|SNP)[:\s]"
    r"|\b(?:SEV|SEV-ES|SEV-SNP|PSP|kvm_amd)\b"
    r"|arch/x86/kvm/|drivers/crypto/ccp/")
_FAILURE = re.compile(r"(?i)\b(?:fail(?:ed|ure|s)?|errors?|timed out|timeout|unable|refused|denied|"
                      r"WARNING|BUG|Oops|disabling)\b")
#: syslog levels 0-4: emerg, alert, crit, err, warning
_WARNING = 4


def is_host_error(record: KmsgRecord) -> bool:
    """A kernel (facility 0) message of the SEV/KVM/ccp stack that is a
    warning or worse, or says it failed. Userspace writes to /dev/kmsg carry
    another facility (the kernel refuses facility 0 from userspace) and are
    not the kernel's."""
    if record.facility != 0 or not _SUBSYSTEM.search(record.text):
        return False
    return record.level <= _WARNING or bool(_FAILURE.search(record.text))


def host_errors(raw_records: Iterable[str]) -> list[str]:
    """The error lines among raw ``/dev/kmsg`` records, in order."""
    out = []
    for raw in raw_records:
        rec = parse_kmsg_record(raw)
        if rec is not None and is_host_error(rec):
            out.append(rec.text)
    return out


# -- reading -------------------------------------------------------------------

def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def own_cgroup(root: Path = HOST_ROOT) -> str | None:
    """This process's cgroup v2 path (``0::/path`` in /proc/self/cgroup), or None."""
    try:
        text = (root / "proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def read_misc(root: Path = HOST_ROOT) -> Reading:
    """ASIDs in use per the misc cgroup: this process's own cgroup when it is
    not the root (its QEMU children are charged there, other tenants are not),
    else the root's (host-wide; kernels >= 6.5). Missing everywhere: unknown."""
    cgroup = own_cgroup(root)
    mounts = ["sys/fs/cgroup", "sys/fs/cgroup/unified"]  # unified: a hybrid v1/v2 host
    own = [f"{m}{cgroup}/misc.current" for m in mounts] if cgroup and cgroup != "/" else []
    candidates = own + [f"{m}/misc.current" for m in mounts]
    tried = []
    for rel in candidates:
        path = root / rel
        try:
            text = path.read_text()
        except FileNotFoundError:
            tried.append(f"/{rel}")
            continue
        except OSError as exc:
            return Reading.missing(f"/{rel}: {_why(exc)}", source=f"/{rel}")
        try:
            return Reading.of(parse_misc_current(text), source=f"/{rel}")
        except ValueError as exc:
            return Reading.missing(f"/{rel}: {exc}", source=f"/{rel}")
    return Reading.missing(
        f"no misc.current ({', '.join(tried)}): no cgroup v2 misc controller here, or a root cgroup "
        "on a kernel before 6.5 (which shows misc.current only in non-root cgroups)")


def read_kvm_amd(root: Path = HOST_ROOT) -> Reading:
    """Every ``/sys/module/kvm_amd/parameters/*``; the module absent, or any
    parameter unreadable, is unknown (a partial view would compare as a change)."""
    params = root / "sys/module/kvm_amd/parameters"
    if not (root / "sys/module/kvm_amd").is_dir():
        return Reading.missing("module kvm_amd is not loaded (no /sys/module/kvm_amd)")
    values: dict[str, str] = {}
    try:
        names = sorted(p.name for p in params.iterdir())
    except OSError as exc:
        return Reading.missing(f"/sys/module/kvm_amd/parameters: {_why(exc)}")
    for name in names:
        try:
            values[name] = (params / name).read_text().strip()
        except OSError as exc:
            return Reading.missing(f"/sys/module/kvm_amd/parameters/{name}: {_why(exc)}")
    return Reading.of(values, source="/sys/module/kvm_amd/parameters")


def read_budget_slots(directory: Path | None, is_slot: Callable[[str], bool], *, pid: int | None = None,
                      root: Path = HOST_ROOT) -> Reading:
    """{lock file path: pid holding it} for guest-budget slots, per ``/proc/locks``.

    This process's own slots are found through its open files (filelock keeps
    the locked file open), so a slot taken in any budget directory counts;
    other holders (other xdist workers, other runs) through *directory*'s
    ``*.lock`` files.  *is_slot* tells a slot file's name (``plain-0.lock``)."""
    me = os.getpid() if pid is None else pid
    try:
        held = parse_proc_locks((root / "proc/locks").read_text())
    except OSError as exc:
        return Reading.missing(f"/proc/locks: {_why(exc)}")
    out: dict[str, int] = {}
    fd_dir = root / "proc" / str(me) / "fd"
    try:
        fds = list(fd_dir.iterdir())
    except OSError as exc:
        return Reading.missing(f"{fd_dir}: {_why(exc)}")
    for target, st in filter(None, map(_fd_target, fds)):
        if is_slot(os.path.basename(target)) and held.get(_lock_key(st)) == me:
            out[target] = me
    if directory is not None:
        try:
            files = {str(p): p.stat() for p in directory.glob("*.lock") if is_slot(p.name)}
        except OSError as exc:
            return Reading.missing(f"{directory}: {_why(exc)}")
        for path, st in files.items():
            holder = held.get(_lock_key(st))
            if holder is not None and path not in out:
                out[path] = holder
    return Reading.of(out, source="/proc/locks")


def _fd_target(fd: Path) -> tuple[str, os.stat_result] | None:
    """The file an open file descriptor (a ``/proc/PID/fd`` link) names, and its stat; None once closed."""
    try:
        return os.readlink(fd), os.stat(fd)
    except OSError:
        return None


def _lock_key(st: os.stat_result) -> tuple[int, int, int]:
    """The (major, minor, inode) that names the file in ``/proc/locks``."""
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _parent(proc: Path) -> int | None:
    """The ppid in /proc/PID/stat, or None when it went away."""
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 else None


def looks_like_qemu(argv: list[str]) -> bool:
    """argv[0]'s name is a QEMU binary (``qemu-system-x86_64``, ``qemu-kvm``)."""
    return bool(argv) and os.path.basename(argv[0]).startswith("qemu")


def read_qemu_descendants(pid: int | None = None, root: Path = HOST_ROOT) -> Reading:
    """{pid: argv} of the QEMU processes below *pid* (default: this process).

    Only descendants: QEMU of other xdist workers and other runs are theirs,
    never this test's leak (and QEMU started by libvirtd is not seen here).
    Zombies are left out (they hold nothing but their pid): the kernel
    gives an exited process an empty ``cmdline``."""
    me = os.getpid() if pid is None else pid
    parents: dict[int, int] = {}
    try:
        procs = [p for p in (root / "proc").iterdir() if p.name.isdigit()]
    except OSError as exc:
        return Reading.missing(f"/proc: {_why(exc)}")
    for proc in procs:
        parent = _parent(proc)
        if parent is not None:
            parents[int(proc.name)] = parent
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: dict[int, str] = {}
    todo = list(children.get(me, []))
    while todo:
        cur = todo.pop()
        todo += children.get(cur, [])
        try:
            argv = [a.decode(errors="replace") for a in
                    (root / "proc" / str(cur) / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue  # it ended between the two reads
        if looks_like_qemu(argv):
            out[cur] = shlex.join(argv)
    return Reading.of(out, source=f"descendants of pid {me}")


class KmsgCursor:
    """A mark in the host kernel log: :meth:`since` reads every record printed
    after the mark was taken (``/dev/kmsg`` opened non-blocking, moved to the end).

    A log we cannot open or read is unknown, as is one whose ring buffer
    overwrote records before we read them (EPIPE): those records are gone, so
    "no error" cannot be said.
    """

    def __init__(self, path: Path = KMSG) -> None:
        self.path = path
        self.fd: int | None = None
        self.problem: str | None = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            self.problem = f"{path}: {_why(exc)}"
            self.close()

    def mark(self) -> Reading:
        """The before-side reading: no line yet, or unknown when there is no mark."""
        if self.problem is not None:
            return Reading.missing(self.problem, source=str(self.path))
        return Reading.of((), source=str(self.path))

    def since(self, limit: int = 100_000) -> Reading:
        """SEV/KVM/ccp error lines printed since the mark."""
        if self.fd is None:
            return Reading.missing(self.problem or f"{self.path}: not open", source=str(self.path))
        raw: list[str] = []
        lost = False  # pragma: no mutate, None (the mutant) is as false as False
        while len(raw) < limit:
            try:
                data = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EPIPE:
                    lost = True
                    continue
                return Reading.missing(f"{self.path}: {_why(exc)}", source=str(self.path))
            if not data:
                break
            raw += split_kmsg(data.decode(errors="replace"))  # /dev/kmsg: one record per read
        errors = host_errors(raw)
        if lost and not errors:
            return Reading.missing(f"{self.path}: the kernel's ring buffer overwrote records before they "
                                   "were read, so an error may have been lost", source=str(self.path))
        return Reading.of(tuple(errors), source=str(self.path))

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def snapshot(slot_directory: Path | None, is_slot: Callable[[str], bool], *, cursor: KmsgCursor | None = None,
             before: bool = True, root: Path = HOST_ROOT, pid: int | None = None) -> Snapshot:
    """Read every entry now. *before*: the kernel log entry is the cursor's mark;
    after: the lines since it."""
    entries: dict[str, Reading] = {
        MISC: _safely(lambda: read_misc(root)),
        KVM_AMD: _safely(lambda: read_kvm_amd(root)),
        SLOTS: _safely(lambda: read_budget_slots(slot_directory, is_slot, pid=pid, root=root)),
        QEMU: _safely(lambda: read_qemu_descendants(pid, root)),
    }
    if cursor is None:
        entries[KERNEL_LOG] = Reading.missing("the kernel log was not marked")
    else:
        log_cursor = cursor
        entries[KERNEL_LOG] = _safely(log_cursor.mark if before else log_cursor.since)
    return Snapshot(pid=os.getpid() if pid is None else pid, entries=entries)


def _safely(read: Callable[[], Reading]) -> Reading:
    """A read that broke in an unforeseen way is unknown naming the error: the
    ledger never stops a test for its own fault, and never calls it clean."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - any failure of a read is that entry's unknown
        log.warning("host ledger: a read failed: %s: %s", type(exc).__name__, exc)  # pragma: no mutate, log text only
        return Reading.missing(f"the read failed: {type(exc).__name__}: {exc}")
