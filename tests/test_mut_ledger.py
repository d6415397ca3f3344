"""Each decision of the host-state ledger (:mod:`pytest_sev.host.ledger`), on made-up hosts.

Why a second file: ``test_host_ledger`` proves the ledger on recorded and
live host state; here every branch is taken on a host made in ``tmp_path``
(a ``/proc`` tree, cgroup files, ``/sys/module``) or on readings given
directly, asserting the leak, the could-not-compare and the unknown each
gives with its reason, so that flipping any one decision fails a test. No
test here starts a process.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_sev.host import ledger
from pytest_sev.host.ledger import (
    KERNEL_LOG,
    KVM_AMD,
    MISC,
    QEMU,
    SLOTS,
    Exempt,
    KmsgCursor,
    KmsgRecord,
    LedgerDiff,
    Reading,
    Snapshot,
    diff,
    format_ledger,
    host_errors,
    is_host_error,
    looks_like_qemu,
    own_cgroup,
    parse_kmsg_record,
    parse_misc_current,
    parse_proc_locks,
    read_budget_slots,
    read_kvm_amd,
    read_misc,
    read_qemu_descendants,
    split_kmsg,
)

ME = 1000


def snap(pid: int = ME, **over: Reading) -> Snapshot:
    entries = {
        MISC: Reading.of({"sev": 0, "sev_es": 0}, "/m"),
        KVM_AMD: Reading.of({"sev": "Y"}, "/k"),
        SLOTS: Reading.of({}, "/proc/locks"),
        QEMU: Reading.of({}, "/q"),
        KERNEL_LOG: Reading.of((), "/dev/kmsg"),
    }
    names = {"misc": MISC, "kvm_amd": KVM_AMD, "slots": SLOTS, "qemu": QEMU, "kernel_log": KERNEL_LOG}
    for key, reading in over.items():
        entries[names[key]] = reading
    return Snapshot(pid=pid, entries=entries)


# -- readings and their text ---------------------------------------------------------

def test_reading_describe() -> None:
    assert Reading.of(3).describe() == "3"
    assert Reading.of(3, "/x").describe() == "3 (from /x)"
    assert Reading.of({"b": 1, "a": 2}).describe() == "a=2, b=1"
    assert Reading.of({2: "x", 10: "y"}).describe() == "10=y, 2=x"  # sorted as text
    assert Reading.of({}).describe() == "none"
    assert Reading.of(("l1", "l2")).describe() == "l1; l2"
    assert Reading.of(["l1"]).describe() == "l1"
    assert Reading.of(()).describe() == "none"
    missing = Reading.missing("denied", "/x")
    assert (missing.known, missing.value, missing.unknown, missing.source) == (False, None, "denied", "/x")
    assert missing.describe() == "unknown: denied"
    assert Reading.of(None).known and Reading.of(0).describe() == "0"
    assert Reading.of(1).source == "" and Reading.missing("x").source == "" and Reading().source == ""
    assert Reading.missing("").unknown == "no reason given"


def test_snapshot_text_and_a_missing_entry() -> None:
    s = Snapshot(pid=5, entries={MISC: Reading.of({"sev": 1}, "/m")})
    assert s.get(QEMU) == Reading.missing("QEMU processes was not read")
    assert s.format_text() == (
        "  misc.current: sev=1 (from /m)\n"
        "  kvm_amd parameters: unknown: kvm_amd parameters was not read\n"
        "  guest budget slots: unknown: guest budget slots was not read\n"
        "  QEMU processes: unknown: QEMU processes was not read\n"
        "  host kernel log: unknown: host kernel log was not read")


def test_ledger_diff_clean_and_text() -> None:
    assert LedgerDiff((), ()).clean and LedgerDiff((), ()).notes == ()
    assert not LedgerDiff(("l",), ()).clean and not LedgerDiff((), ("c",)).clean
    assert LedgerDiff((), ()).format_text() == "  no leak found"
    assert LedgerDiff(("l1", "l2"), ("c",), ("n",)).format_text() == "  l1\n  l2\n  c\n  note: n"
    assert LedgerDiff((), ("c",)).format_text() == "  no leak found\n  c"


def test_format_ledger_whole_text() -> None:
    before = snap(pid=7, kvm_amd=Reading.missing("not loaded"))
    after = snap(pid=7, qemu=Reading.missing("no /proc"))
    result = LedgerDiff(("l",), ("c",))
    lines = [
        "host ledger of pid 7", "before the test:", before.format_text(), "after its teardown:",
        after.format_text(), "diff:", "  l\n  c", "unknowns:",
        "  before: kvm_amd parameters: not loaded\n  after: QEMU processes: no /proc"]
    assert format_ledger(before, after, result) == "\n".join(lines) + "\n"
    assert format_ledger(snap(), snap(), LedgerDiff((), ()))[-len("unknowns:\n  none\n"):] == "unknowns:\n  none\n"


# -- the diff ------------------------------------------------------------------------

def test_each_entry_compared_only_when_known_on_both_sides_from_one_place() -> None:
    for key, name in (("misc", MISC), ("kvm_amd", KVM_AMD), ("slots", SLOTS), ("qemu", QEMU),
                      ("kernel_log", KERNEL_LOG)):
        elsewhere = Reading.of({}, "/elsewhere") if key != "kernel_log" else Reading.of((), "/elsewhere")
        result = diff(snap(), snap(**{key: elsewhere}))
        source = snap().get(name).source
        assert result == LedgerDiff((), (f"could not compare {name}: read from {source} before and /elsewhere after",))
        assert diff(snap(**{key: Reading.missing("b")}), snap()).could_not == \
            (f"could not compare {name}: before the test: b",)
        assert diff(snap(), snap(**{key: Reading.missing("a")})).could_not == \
            (f"could not compare {name}: after the test: a",)
    # every entry unknown: each named once, in order
    everything = {k: Reading.missing("x") for k in ("misc", "kvm_amd", "slots", "qemu", "kernel_log")}
    assert [c.split(":")[0] for c in diff(snap(**everything), snap()).could_not] == [
        f"could not compare {n}" for n in (QEMU, SLOTS, KVM_AMD, MISC, KERNEL_LOG)]


def test_same_host_is_clean() -> None:
    assert diff(snap(), snap()) == LedgerDiff((), (), ())
    assert diff(snap(), snap(), Exempt()).clean


def test_qemu_leaks_and_exempt_notes() -> None:
    before = snap(qemu=Reading.of({1: "qemu old"}, "/q"))
    after = snap(qemu=Reading.of({1: "qemu old", 3: "qemu three", 2: "qemu two"}, "/q"))
    assert diff(before, after) == LedgerDiff(
        ("left behind: QEMU pid 2 (argv qemu two)", "left behind: QEMU pid 3 (argv qemu three)"), ())
    held = diff(before, after, Exempt(pids={3: "fixture f (session scope)", 1: "fixture g"}))
    assert held == LedgerDiff(("left behind: QEMU pid 2 (argv qemu two)",), (),
                              ("QEMU pid 3 started during the test is held by fixture f (session scope)",))


def test_slot_leaks_and_exempt_notes() -> None:
    before = snap(slots=Reading.of({"/b/sev-0.lock": ME, "/b/sev-1.lock": "2000"}, "/proc/locks"))
    after = snap(slots=Reading.of({"/b/sev-0.lock": ME, "/b/sev-1.lock": "2000", "/b/plain-1.lock": str(ME),
                                   "/b/plain-0.lock": ME, "/b/plain-2.lock": 2000}, "/proc/locks"))
    # slot names compare as text, pids as numbers: "2000" and 2000 are one pid, not ours
    result = diff(before, after, Exempt(slots={"/b/plain-1.lock": "fixture f"}))
    assert result.leaks == ("left behind: budget slot plain-0 held (by pid 1000: /b/plain-0.lock)",)
    assert result.notes == ("budget slot /b/plain-1.lock taken during the test is held by fixture f",)
    # a slot ours after and another's before is taken during the test; the after pid is the one that counts
    moved = diff(snap(slots=Reading.of({"/b/x.lock": 5}, "/proc/locks")),
                 snap(pid=5, slots=Reading.of({"/b/x.lock": 5}, "/proc/locks")))
    assert moved.leaks == ("left behind: budget slot x held (by pid 5: /b/x.lock)",)


def test_kvm_amd_changes_appearances_and_disappearances() -> None:
    before = snap(kvm_amd=Reading.of({"sev": "Y", "gone": "1", "same": "0"}, "/k"))
    after = snap(kvm_amd=Reading.of({"sev": "N", "new": "2", "same": "0"}, "/k"))
    assert diff(before, after).leaks == (
        "left behind: kvm_amd parameter gone changed 1 -> (absent)",
        "left behind: kvm_amd parameter new changed (absent) -> 2",
        "left behind: kvm_amd parameter sev changed Y -> N")


def test_asid_rises_are_leaks_unless_shared() -> None:
    before = snap(misc=Reading.of({"sev": 2, "sev_es": 4}, "/m"))
    after = snap(misc=Reading.of({"sev": 2, "sev_es": 5, "snp": 1}, "/m"))
    assert diff(before, after) == LedgerDiff(
        ("left behind: ASIDs still in use, misc.current sev_es 4 -> 5 (/m)",
         "left behind: ASIDs still in use, misc.current snp 0 -> 1 (/m)"), ())
    assert diff(after, before).clean  # fewer is a guest elsewhere ending
    with_qemu = diff(before, snap(misc=after.get(MISC), qemu=Reading.of({4: "qemu"}, "/q")))
    assert with_qemu.leaks == ("left behind: QEMU pid 4 (argv qemu)",
                               "left behind: ASIDs still in use, misc.current sev_es 4 -> 5 (/m)",
                               "left behind: ASIDs still in use, misc.current snp 0 -> 1 (/m)")
    others = {"slots": Reading.of({"/b/a.lock": 7, "/b/b.lock": 12, "/b/c.lock": 7}, "/proc/locks")}
    shared = diff(snap(**{**others, "misc": before.get(MISC)}), snap(**{**others, "misc": after.get(MISC)}))
    assert shared == LedgerDiff((), (
        "could not compare misc.current: ASIDs in use rose (sev_es 4 -> 5; snp 0 -> 1) while other processes held "
        "guest budget slots (pids 7, 12): the counts are host-wide",))
    guests = Reading.of({9: "qemu a", 8: "qemu b"}, "/q")
    fixture = diff(snap(misc=before.get(MISC)), snap(misc=after.get(MISC), qemu=guests),
                   Exempt(pids={9: "fixture f", 8: "fixture g"}))
    assert fixture.leaks == () and fixture.could_not == (
        "could not compare misc.current: ASIDs in use rose (sev_es 4 -> 5; snp 0 -> 1) while a guest that outlives "
        "the test started during it (QEMU pid 8 (fixture g), QEMU pid 9 (fixture f)): the counts are host-wide",)
    both = diff(snap(**{**others, "misc": before.get(MISC)}), snap(**{**others, "misc": after.get(MISC)}, qemu=guests),
                Exempt(pids={9: "f", 8: "g"}))
    assert "while other processes held guest budget slots (pids 7, 12) and a guest that outlives" in both.could_not[0]
    # shared, but nothing rose: nothing to say
    assert diff(snap(**others), snap(**others)).clean


def test_other_holders_are_read_from_both_sides() -> None:
    mine = Reading.of({"/b/a.lock": ME}, "/proc/locks")
    theirs = Reading.of({"/b/a.lock": ME, "/b/b.lock": 7}, "/proc/locks")
    rise = ({"misc": Reading.of({"sev": 0}, "/m")}, {"misc": Reading.of({"sev": 1}, "/m")})
    before_only = diff(snap(slots=theirs, **rise[0]), snap(slots=mine, **rise[1]))
    after_only = diff(snap(slots=mine, **rise[0]), snap(slots=theirs, **rise[1]))
    for result in (before_only, after_only):
        assert result.leaks == () and "(pids 7)" in result.could_not[0]
    unknown_side = diff(snap(slots=Reading.missing("x"), **rise[0]), snap(slots=theirs, **rise[1]))
    assert "(pids 7)" in unknown_side.could_not[1]


def test_kernel_errors_are_leaks_unless_others_held_the_budget() -> None:
    lines = Reading.of(("kvm: SEV: failed", "ccp: timed out"), "/dev/kmsg")
    assert diff(snap(), snap(kernel_log=lines)).leaks == (
        "left behind: host kernel error since the test began: kvm: SEV: failed",
        "left behind: host kernel error since the test began: ccp: timed out")
    others = Reading.of({"/b/b.lock": 7}, "/proc/locks")
    assert diff(snap(slots=others), snap(slots=others, kernel_log=lines)) == LedgerDiff((), (
        "could not compare host kernel log: 2 SEV/KVM/ccp error line(s) while other processes held guest budget "
        "slots (pids 7): kvm: SEV: failed; ccp: timed out",))
    # a fixture's guest alone does not excuse a kernel error
    guests = Reading.of({9: "qemu"}, "/q")
    assert diff(snap(), snap(qemu=guests, kernel_log=lines), Exempt(pids={9: "f"})).leaks == \
        diff(snap(), snap(kernel_log=lines)).leaks


# -- parsers ----------------------------------------------------------------------------

def test_parse_misc_current() -> None:
    assert parse_misc_current("sev 3\n\n  \nsev_es 10\n") == {"sev": 3, "sev_es": 10}
    assert parse_misc_current("") == {}
    for bad in ("sev 3 4", "sev", "sev -1", "sev x"):
        with pytest.raises(ValueError) as err:
            parse_misc_current(f"sev_es 1\n{bad}\n")
        assert str(err.value) == f"not a misc.current line: {bad!r}"


def test_parse_proc_locks() -> None:
    text = ("1: FLOCK  ADVISORY  WRITE 10 fe:01:5 0 EOF\n"
            "2: -> FLOCK  ADVISORY  WRITE 11 fe:01:6 0 EOF\n"
            "3: POSIX  ADVISORY  WRITE 12 fe:01:7 0 EOF\n"
            "4: FLOCK  ADVISORY  READ 13 a:1b:8 0 EOF\n"
            "junk\n")
    assert parse_proc_locks(text) == {(0xFE, 1, 5): 10, (0xA, 0x1B, 8): 13}


def test_parse_kmsg_record() -> None:
    assert parse_kmsg_record("14,7,99,-,caller=T1;kvm: x\n more") == KmsgRecord(1, 6, 7, "kvm: x")
    assert parse_kmsg_record("0,1,2;a;b") == KmsgRecord(0, 0, 1, "a;b")
    for bad in ("3,1;x", "3,x,2,-;y", "x,1,2,-;y", "3,1,2,-"):
        assert parse_kmsg_record(bad) is None, bad


def test_split_kmsg() -> None:
    text = " orphan continuation\n3,1,1,-;a\n key=v\n\n4,2,2,-;b\n\t\n5,3,3,-;c\n k=1\n k=2\n"
    assert split_kmsg(text) == [" orphan continuation", "3,1,1,-;a\n key=v", "4,2,2,-;b", "5,3,3,-;c\n k=1\n k=2"]


@pytest.mark.parametrize("facility, level, text, error", [
    (0, 4, "kvm: note", True),
    (0, 5, "kvm: note", False),
    (0, 0, "kvm: note", True),
    (0, 5, "kvm: it failed", True),
    (0, 6, "kvm: ASIDs ready", False),
    (0, 3, "nvme: failed", False),
    (1, 3, "kvm: failed", False),
    (0, 6, "ccp: SEV init error", True),
    (0, 6, "the PSP timed out", True),
    (0, 3, "at arch/x86/kvm/svm/sev.c:1", True),
])
def test_is_host_error(facility: int, level: int, text: str, error: bool) -> None:
    assert is_host_error(KmsgRecord(facility, level, 1, text)) is error


def test_host_errors_in_order() -> None:
    assert host_errors(["junk", "6,1,1,-;kvm: ok", "3,2,2,-;kvm: bad", "3,3,3,-;SEV: worse"]) == \
        ["kvm: bad", "SEV: worse"]


# -- reading: cgroups and kvm_amd ----------------------------------------------------------

def _root(tmp_path: Path, cgroup_line: str | None = None) -> Path:
    if cgroup_line is not None:
        (tmp_path / "proc/self").mkdir(parents=True)
        (tmp_path / "proc/self/cgroup").write_text(f"1:name=systemd:/x\n{cgroup_line}\n")
    return tmp_path


def test_own_cgroup(tmp_path: Path) -> None:
    assert own_cgroup(tmp_path) is None
    assert own_cgroup(_root(tmp_path / "a", "0::/a/b ")) == "/a/b"
    assert own_cgroup(_root(tmp_path / "b", "0::")) == "/"
    assert own_cgroup(_root(tmp_path / "c", "2:cpu:/x")) is None


def test_read_misc_order(tmp_path: Path) -> None:
    root = _root(tmp_path, "0::/run.scope")
    for rel, count in (("sys/fs/cgroup/misc.current", 1), ("sys/fs/cgroup/unified/run.scope/misc.current", 2)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"sev {count}\n")
    assert read_misc(root) == Reading.of({"sev": 2}, "/sys/fs/cgroup/unified/run.scope/misc.current")
    (root / "sys/fs/cgroup/unified/run.scope/misc.current").unlink()
    assert read_misc(root) == Reading.of({"sev": 1}, "/sys/fs/cgroup/misc.current")
    (root / "sys/fs/cgroup/misc.current").unlink()
    assert read_misc(root) == Reading.missing(
        "no misc.current (/sys/fs/cgroup/run.scope/misc.current, /sys/fs/cgroup/unified/run.scope/misc.current, "
        "/sys/fs/cgroup/misc.current, /sys/fs/cgroup/unified/misc.current): no cgroup v2 misc controller here, or a "
        "root cgroup on a kernel before 6.5 (which shows misc.current only in non-root cgroups)")
    # no cgroup known: the root's only
    assert read_misc(tmp_path / "none").unknown.startswith(
        "no misc.current (/sys/fs/cgroup/misc.current, /sys/fs/cgroup/unified/misc.current):")


def test_read_misc_unreadable_or_garbled(tmp_path: Path) -> None:
    root = _root(tmp_path, "0::/")
    (root / "sys/fs/cgroup/misc.current").mkdir(parents=True)
    assert read_misc(root) == Reading.missing("/sys/fs/cgroup/misc.current: Is a directory",
                                              source="/sys/fs/cgroup/misc.current")
    (root / "sys/fs/cgroup/misc.current").rmdir()
    (root / "sys/fs/cgroup/misc.current").write_text("sev\n")
    assert read_misc(root) == Reading.missing("/sys/fs/cgroup/misc.current: not a misc.current line: 'sev'",
                                              source="/sys/fs/cgroup/misc.current")


def test_read_kvm_amd(tmp_path: Path) -> None:
    assert read_kvm_amd(tmp_path) == Reading.missing("module kvm_amd is not loaded (no /sys/module/kvm_amd)")
    (tmp_path / "sys/module/kvm_amd").mkdir(parents=True)
    assert read_kvm_amd(tmp_path) == Reading.missing("/sys/module/kvm_amd/parameters: No such file or directory")
    params = tmp_path / "sys/module/kvm_amd/parameters"
    params.mkdir()
    (params / "sev").write_text(" Y\n")
    (params / "avic").write_text("N\n")
    assert read_kvm_amd(tmp_path) == Reading.of({"avic": "N", "sev": "Y"}, source="/sys/module/kvm_amd/parameters")
    (params / "dir").mkdir()
    assert read_kvm_amd(tmp_path) == Reading.missing("/sys/module/kvm_amd/parameters/dir: Is a directory")


def test_why_names_the_error() -> None:
    assert ledger._why(OSError(errno.EACCES, "Permission denied")) == "Permission denied"
    assert ledger._why(PermissionError()) == "PermissionError"


# -- reading: budget slots -------------------------------------------------------------------

def _locks_line(n: int, pid: int, path: Path) -> str:
    st = path.stat()
    return f"{n}: FLOCK  ADVISORY  WRITE {pid} {os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} 0 EOF\n"


def _is_slot(name: str) -> bool:
    return name.startswith("slot-") and name.endswith(".lock")


def test_read_budget_slots_on_a_made_host(tmp_path: Path) -> None:
    budget = tmp_path / "budget"
    budget.mkdir()
    files = {name: budget / name for name in ("slot-0.lock", "slot-1.lock", "slot-2.lock", "slot-3.lock",
                                              "other.lock", "slot-4.txt")}
    for f in files.values():
        f.write_text("")
    elsewhere = tmp_path / "elsewhere-slot-9.lock"
    root = tmp_path / "root"
    fd = root / "proc/42/fd"
    fd.mkdir(parents=True)
    os.symlink(files["slot-0.lock"], fd / "3")        # ours, held by us
    os.symlink(files["slot-1.lock"], fd / "4")        # open by us, held by another
    os.symlink(files["other.lock"], fd / "5")         # not a slot
    os.symlink(tmp_path / "gone.lock", fd / "6")      # closed meanwhile
    (tmp_path / "away").mkdir()
    slot9 = tmp_path / "away" / "slot-9.lock"
    slot9.write_text("")
    os.symlink(slot9, fd / "7")                       # ours, in another directory
    del elsewhere
    (root / "proc/locks").write_text(
        _locks_line(1, 42, files["slot-0.lock"]) + _locks_line(2, 77, files["slot-1.lock"])
        + _locks_line(3, 42, files["other.lock"]) + _locks_line(4, 78, files["slot-3.lock"])
        + _locks_line(5, 42, slot9) + _locks_line(6, 79, files["slot-4.txt"]))
    reading = read_budget_slots(budget, _is_slot, pid=42, root=root)
    assert reading == Reading.of({str(files["slot-0.lock"]): 42, str(slot9): 42, str(files["slot-1.lock"]): 77,
                                  str(files["slot-3.lock"]): 78}, source="/proc/locks")
    assert read_budget_slots(None, _is_slot, pid=42, root=root).value == \
        {str(files["slot-0.lock"]): 42, str(slot9): 42}
    # the directory's view never replaces what our own files said
    (root / "proc/locks").write_text(_locks_line(1, 42, files["slot-0.lock"]))
    assert read_budget_slots(budget, _is_slot, pid=42, root=root).value == {str(files["slot-0.lock"]): 42}


def test_read_budget_slots_unknowns(tmp_path: Path) -> None:
    assert read_budget_slots(None, _is_slot, pid=1, root=tmp_path) == \
        Reading.missing("/proc/locks: No such file or directory")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/locks").write_text("")
    assert read_budget_slots(None, _is_slot, pid=1, root=tmp_path) == \
        Reading.missing(f"{tmp_path}/proc/1/fd: No such file or directory")
    (tmp_path / "proc/1/fd").mkdir(parents=True)
    budget = tmp_path / "budget"
    budget.mkdir()
    os.symlink(tmp_path / "nowhere", budget / "slot-0.lock")  # stat fails
    assert read_budget_slots(budget, _is_slot, pid=1, root=tmp_path) == \
        Reading.missing(f"{budget}: No such file or directory")
    assert read_budget_slots(None, _is_slot, pid=1, root=tmp_path) == Reading.of({}, source="/proc/locks")


def test_read_budget_slots_defaults_to_this_process(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/locks").write_text("")
    assert read_budget_slots(None, _is_slot, root=tmp_path).unknown == \
        f"{tmp_path}/proc/{os.getpid()}/fd: No such file or directory"


# -- reading: QEMU descendants ------------------------------------------------------------------

def _proc(root: Path, pid: int, ppid: int, argv: list[str] | bytes | None, comm: str = "x") -> None:
    d = root / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1\n")
    if isinstance(argv, bytes):
        (d / "cmdline").write_bytes(argv)
    elif argv is not None:
        (d / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))


def test_qemu_descendants_of_a_made_proc(tmp_path: Path) -> None:
    root = tmp_path
    _proc(root, 10, 1, ["/usr/bin/qemu-system-x86_64", "-S", "a b"])     # child
    _proc(root, 11, 10, ["/bin/sh", "-c", "x"])                           # child's child, not QEMU
    _proc(root, 12, 11, ["qemu-kvm"], comm="odd) S 1 (name")              # grandchild; ')' in its name
    _proc(root, 13, 1, [])                                                # zombie
    _proc(root, 14, 2, ["qemu-system-x86_64"])                            # not ours
    _proc(root, 15, 1, None)                                              # ended between the reads
    _proc(root, 18, 15, b"qemu-system-x86_64\0-name\0bad\xff\0")          # its parent's cmdline was gone
    _proc(root, 17, 1, ["qemu-system-x86_64", "", "-S"])                  # an empty argument is no argument
    (root / "proc/16").mkdir()                                            # ended before its stat was read
    (root / "proc/self").mkdir()
    (root / "proc/locks").write_text("")
    reading = read_qemu_descendants(1, root)
    assert reading == Reading.of({10: "/usr/bin/qemu-system-x86_64 -S 'a b'", 12: "qemu-kvm",
                                  17: "qemu-system-x86_64 -S", 18: "qemu-system-x86_64 -name 'bad\ufffd'"},
                                 source="descendants of pid 1")
    assert read_qemu_descendants(10, root).value == {12: "qemu-kvm"}
    assert read_qemu_descendants(99, root).value == {}


def test_qemu_descendants_default_pid_and_unknown(tmp_path: Path) -> None:
    _proc(tmp_path, 10, os.getpid(), ["qemu-system-x86_64"])
    assert read_qemu_descendants(root=tmp_path) == Reading.of({10: "qemu-system-x86_64"},
                                                              source=f"descendants of pid {os.getpid()}")
    assert read_qemu_descendants(1, tmp_path / "nowhere") == Reading.missing("/proc: No such file or directory")


def test_parent_of_a_short_stat(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("5 (x) S\n")
    assert ledger._parent(tmp_path) is None
    (tmp_path / "stat").write_text("5 (x) S 4\n")
    assert ledger._parent(tmp_path) == 4


def test_looks_like_qemu() -> None:
    assert looks_like_qemu(["/opt/qemu/bin/qemu-system-x86_64"]) and looks_like_qemu(["qemu-kvm", "-S"])
    assert not looks_like_qemu([]) and not looks_like_qemu(["/usr/bin/qemu/sh"]) and not looks_like_qemu(["sleep"])


# -- reading: the kernel log -----------------------------------------------------------------

def test_kmsg_cursor_on_a_file(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text("3,1,1,-;kvm: SEV: failed before the mark\n")
    cursor = KmsgCursor(log)
    assert cursor.problem is None and cursor.mark() == Reading.of((), str(log))
    assert cursor.since() == Reading.of((), str(log))
    with log.open("a") as f:
        f.write("3,2,2,-;kvm: one failed\n3,3,3,-;kvm: two failed\n")
    assert cursor.since() == Reading.of(("kvm: one failed", "kvm: two failed"), str(log))
    cursor.close()
    assert cursor.fd is None
    cursor.close()  # twice is fine
    assert cursor.since() == Reading.missing(f"{log}: not open", source=str(log))


def test_kmsg_cursor_that_could_not_open(tmp_path: Path) -> None:
    cursor = KmsgCursor(tmp_path / "none")
    problem = f"{tmp_path}/none: No such file or directory"
    assert (cursor.fd, cursor.problem) == (None, problem)
    assert cursor.mark() == Reading.missing(problem, source=f"{tmp_path}/none")
    assert cursor.since() == Reading.missing(problem, source=f"{tmp_path}/none")


def test_kmsg_cursor_read_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "kmsg"
    log.write_text("")
    cursor = KmsgCursor(log)
    fd = cursor.fd
    answers: list[Any] = []

    def fake_read(f: int, n: int) -> bytes:
        assert (f, n) == (fd, 8192)
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer
    monkeypatch.setattr(ledger.os, "read", fake_read)
    lost = f"{log}: the kernel's ring buffer overwrote records before they were read, so an error may have been lost"
    answers[:] = [OSError(errno.EPIPE, "Broken pipe"), b""]
    assert cursor.since() == Reading.missing(lost, source=str(log))
    answers[:] = [OSError(errno.EPIPE, "Broken pipe"), b"3,1,1,-;kvm: failed \xff\n", BlockingIOError()]
    assert cursor.since() == Reading.of(("kvm: failed \ufffd",), str(log))  # what was read after the gap counts
    answers[:] = [OSError(errno.EIO, "Input/output error")]
    assert cursor.since() == Reading.missing(f"{log}: Input/output error", source=str(log))
    # at most *limit* records are read in one go
    answers[:] = [b"3,1,1,-;kvm: a failed\n", b"3,2,2,-;kvm: b failed\n", b"3,3,3,-;kvm: c failed\n"]
    assert cursor.since(limit=2).value == ("kvm: a failed", "kvm: b failed")
    assert answers == [b"3,3,3,-;kvm: c failed\n"]
    answers[:] = [b"3,1,1,-;kvm: failed\n"] * 100_001
    assert len(cursor.since().value) == 100_000 and len(answers) == 1
    monkeypatch.undo()
    cursor.close()


def test_kmsg_cursor_opens_non_blocking_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "kmsg"
    log.write_text("x" * 10)
    opened: list[Any] = []
    real_open = os.open

    def spy(path: Any, flags: int) -> int:
        opened.append((path, flags))
        return real_open(path, flags)
    monkeypatch.setattr(ledger.os, "open", spy)
    cursor = KmsgCursor(log)
    monkeypatch.undo()
    assert opened == [(log, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)]
    assert cursor.fd is not None and os.lseek(cursor.fd, 0, os.SEEK_CUR) == 10
    cursor.close()


def test_kmsg_cursor_close_ignores_an_error(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text("")
    cursor = KmsgCursor(log)
    assert cursor.fd is not None
    os.close(cursor.fd)  # closed behind its back: close() says nothing
    cursor.close()
    assert cursor.fd is None


def test_kmsg_cursor_that_cannot_seek_closes_its_fd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "kmsg"
    log.write_text("")
    closed: list[int] = []
    real_close = os.close

    def no_seek(fd: int, pos: int, how: int) -> int:
        raise OSError(errno.ESPIPE, "Illegal seek")

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)
    monkeypatch.setattr(ledger.os, "lseek", no_seek)
    monkeypatch.setattr(ledger.os, "close", close)
    cursor = KmsgCursor(log)
    monkeypatch.undo()
    assert (cursor.fd, cursor.problem) == (None, f"{log}: Illegal seek") and len(closed) == 1


# -- the snapshot --------------------------------------------------------------------------

def test_snapshot_reads_every_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setattr(ledger, "read_misc", lambda root: calls.setdefault("misc", root) and Reading.of(1, "m"))
    monkeypatch.setattr(ledger, "read_kvm_amd", lambda root: calls.setdefault("kvm", root) and Reading.of(2, "k"))

    def slots(directory: Any, is_slot: Any, *, pid: Any, root: Any) -> Reading:
        calls["slots"] = (directory, is_slot, pid, root)
        return Reading.of(3, "s")

    def qemu(pid: Any, root: Any) -> Reading:
        calls["qemu"] = (pid, root)
        return Reading.of(4, "q")
    monkeypatch.setattr(ledger, "read_budget_slots", slots)
    monkeypatch.setattr(ledger, "read_qemu_descendants", qemu)
    log = tmp_path / "kmsg"
    log.write_text("")
    cursor = KmsgCursor(log)
    with log.open("a") as f:
        f.write("3,1,1,-;kvm: failed\n")  # printed after the mark: the before side still has no line
    before = ledger.snapshot(tmp_path, _is_slot, cursor=cursor, root=tmp_path, pid=42)
    assert before == Snapshot(pid=42, entries={MISC: Reading.of(1, "m"), KVM_AMD: Reading.of(2, "k"),
                                               SLOTS: Reading.of(3, "s"), QEMU: Reading.of(4, "q"),
                                               KERNEL_LOG: Reading.of((), str(log))})
    assert calls == {"misc": tmp_path, "kvm": tmp_path, "slots": (tmp_path, _is_slot, 42, tmp_path),
                     "qemu": (42, tmp_path)}
    after = ledger.snapshot(tmp_path, _is_slot, cursor=cursor, before=False, root=tmp_path, pid=42)
    assert after.get(KERNEL_LOG) == Reading.of(("kvm: failed",), str(log))
    cursor.close()
    unmarked = ledger.snapshot(None, _is_slot)
    assert unmarked.pid == os.getpid() and calls["qemu"] == (None, Path("/")) and calls["slots"][2] is None
    assert unmarked.get(KERNEL_LOG) == Reading.missing("the kernel log was not marked")


def test_a_broken_read_is_unknown_naming_the_error() -> None:
    def broken() -> Reading:
        raise KeyError("k")
    assert ledger._safely(broken) == Reading.missing("the read failed: KeyError: 'k'")
    assert ledger._safely(lambda: Reading.of(1)) == Reading.of(1)
