"""The host-state ledger's pure half (snapshot diff rules, unknowns, parsers)
and its reads on a private root or this process's own files. No QEMU boots."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from pytest_sev.guest.budget import SlotPool, is_slot_file
from pytest_sev.host import ledger
from pytest_sev.host.ledger import (
    ENTRIES,
    KERNEL_LOG,
    KVM_AMD,
    MISC,
    QEMU,
    SLOTS,
    Exempt,
    KmsgCursor,
    Reading,
    Snapshot,
    diff,
    format_ledger,
    host_errors,
    parse_kmsg_record,
    parse_misc_current,
    parse_proc_locks,
    read_budget_slots,
    read_kvm_amd,
    read_misc,
    read_qemu_descendants,
    split_kmsg,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures"
LEDGER = FIX / "ledger"
ME = 1000


def snap(pid: int = ME, **over: Reading) -> Snapshot:
    """A snapshot where every entry is known and empty, but for *over*
    (keys: misc, kvm_amd, slots, qemu, kernel_log)."""
    entries = {
        MISC: Reading.of({"sev": 0, "sev_es": 0}, "/sys/fs/cgroup/misc.current"),
        KVM_AMD: Reading.of({"sev": "Y", "sev_es": "Y"}, "/sys/module/kvm_amd/parameters"),
        SLOTS: Reading.of({}, "/proc/locks"),
        QEMU: Reading.of({}, f"descendants of pid {pid}"),
        KERNEL_LOG: Reading.of((), "/dev/kmsg"),
    }
    names = {"misc": MISC, "kvm_amd": KVM_AMD, "slots": SLOTS, "qemu": QEMU, "kernel_log": KERNEL_LOG}
    for key, reading in over.items():
        entries[names[key]] = reading
    return Snapshot(pid=pid, entries=entries)


def qemu(pids: dict[int, str]) -> Reading:
    return Reading.of(pids, f"descendants of pid {ME}")


def slots(held: dict[str, int]) -> Reading:
    return Reading.of(held, "/proc/locks")


# -- the fixtures say where they came from -------------------------------------

def test_every_ledger_fixture_is_labelled():
    labels = json.loads((LEDGER / "provenance.json").read_text())["files"]
    files = {p.name for p in LEDGER.iterdir() if p.name not in ("README.md", "provenance.json")}
    assert files == set(labels)
    for name, label in labels.items():
        assert label["provenance"] in ("captured", "reconstructed", "documentation"), name
        assert len(label["from"]) > 20, name


# -- diff rules ----------------------------------------------------------------------

def test_same_host_is_clean():
    result = diff(snap(), snap())
    assert result.leaks == () and result.could_not == () and result.clean


def test_a_new_qemu_of_ours_is_a_leak_naming_pid_and_argv():
    result = diff(snap(qemu=qemu({})), snap(qemu=qemu({4242: "qemu-system-x86_64 -machine none -S"})))
    assert result.leaks == ("left behind: QEMU pid 4242 (argv qemu-system-x86_64 -machine none -S)",)
    assert not result.clean


def test_a_qemu_that_was_there_before_is_not_the_tests_leak():
    both = qemu({4242: "qemu-system-x86_64"})
    assert diff(snap(qemu=both), snap(qemu=both)).leaks == ()


def test_a_qemu_held_by_a_wider_fixture_is_a_note_not_a_leak():
    exempt = Exempt(pids={4242: "fixture _sev_shared_guest (session scope)"})
    result = diff(snap(qemu=qemu({})), snap(qemu=qemu({4242: "qemu-system-x86_64"})), exempt)
    assert result.leaks == ()
    assert result.notes == ("QEMU pid 4242 started during the test is held by fixture _sev_shared_guest "
                            "(session scope)",)


def test_a_slot_this_process_took_and_kept_is_a_leak():
    result = diff(snap(slots=slots({})), snap(slots=slots({"/run/lock/pytest-sev/plain-1.lock": ME})))
    assert result.leaks == ("left behind: budget slot plain-1 held (by pid 1000: /run/lock/pytest-sev/plain-1.lock)",)


def test_a_slot_held_before_or_by_another_process_is_not_a_leak():
    held = {"/b/plain-0.lock": ME}
    assert diff(snap(slots=slots(held)), snap(slots=slots(held))).leaks == ()
    other = {"/b/plain-1.lock": ME + 1}
    assert diff(snap(slots=slots({})), snap(slots=slots(other))).leaks == ()


def test_a_slot_held_by_a_wider_fixture_is_a_note():
    exempt = Exempt(slots={"/b/plain-0.lock": "fixture _sev_shared_guest (session scope)"})
    result = diff(snap(slots=slots({})), snap(slots=slots({"/b/plain-0.lock": ME})), exempt)
    assert result.leaks == () and len(result.notes) == 1


def test_a_changed_kvm_amd_parameter_is_a_leak():
    before = Reading.of({"sev": "Y", "sev_es": "Y"}, "/p")
    after = Reading.of({"sev": "Y", "sev_es": "N", "debug_swap": "N"}, "/p")
    result = diff(snap(kvm_amd=before), snap(kvm_amd=after))
    assert result.leaks == ("left behind: kvm_amd parameter debug_swap changed (absent) -> N",
                            "left behind: kvm_amd parameter sev_es changed Y -> N")


def test_more_asids_in_use_after_is_a_leak_fewer_is_not():
    src = "/sys/fs/cgroup/misc.current"
    rise = diff(snap(misc=Reading.of({"sev": 0, "sev_es": 1}, src)), snap(misc=Reading.of({"sev": 0, "sev_es": 2}, src)))
    assert rise.leaks == (f"left behind: ASIDs still in use, misc.current sev_es 1 -> 2 ({src})",)
    fall = diff(snap(misc=Reading.of({"sev": 2}, src)), snap(misc=Reading.of({"sev": 1}, src)))
    assert fall.leaks == () and fall.could_not == ()
    appeared = diff(snap(misc=Reading.of({}, src)), snap(misc=Reading.of({"sev": 1}, src)))
    assert appeared.leaks == (f"left behind: ASIDs still in use, misc.current sev 0 -> 1 ({src})",)


def test_an_asid_rise_while_others_hold_the_budget_is_not_put_on_the_test():
    src = "/sys/fs/cgroup/misc.current"
    others = slots({"/b/sev-es-0.lock": 777})
    result = diff(snap(misc=Reading.of({"sev_es": 0}, src), slots=others),
                  snap(misc=Reading.of({"sev_es": 1}, src), slots=others))
    assert result.leaks == ()
    assert result.could_not == ("could not compare misc.current: ASIDs in use rose (sev_es 0 -> 1) while other "
                                "processes held guest budget slots (pids 777): the counts are host-wide",)


def test_an_asid_rise_with_a_new_fixture_guest_is_not_put_on_the_test():
    src = "/sys/fs/cgroup/misc.current"
    exempt = Exempt(pids={55: "fixture m (module scope)"})
    result = diff(snap(misc=Reading.of({"sev": 0}, src)),
                  snap(misc=Reading.of({"sev": 1}, src), qemu=qemu({55: "qemu-system-x86_64"})), exempt)
    assert result.leaks == () and "a guest that outlives the test started during it" in result.could_not[0]


def test_kernel_errors_since_the_test_began_are_leaks():
    lines = ("ccp 0000:01:00.5: SEV: failed to INIT error 0x1",)
    result = diff(snap(), snap(kernel_log=Reading.of(lines, "/dev/kmsg")))
    assert result.leaks == ("left behind: host kernel error since the test began: "
                            "ccp 0000:01:00.5: SEV: failed to INIT error 0x1",)


def test_kernel_errors_while_others_hold_the_budget_cannot_be_put_on_the_test():
    others = slots({"/b/plain-0.lock": 777})
    lines = ("kvm: SEV: something failed",)
    result = diff(snap(slots=others), snap(slots=others, kernel_log=Reading.of(lines, "/dev/kmsg")))
    assert result.leaks == ()
    assert result.could_not[0].startswith("could not compare host kernel log: 1 SEV/KVM/ccp error line(s)")
    assert "kvm: SEV: something failed" in result.could_not[0]


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("side", ["before", "after"])
def test_an_unknown_entry_is_could_not_compare_never_a_leak_nor_clean(entry, side):
    key = {MISC: "misc", KVM_AMD: "kvm_amd", SLOTS: "slots", QEMU: "qemu", KERNEL_LOG: "kernel_log"}[entry]
    unknown = {key: Reading.missing("denied by the test")}
    # the known side would be a leak if it were compared
    leaky = {MISC: Reading.of({"sev": 5}, "/sys/fs/cgroup/misc.current"),
             KVM_AMD: Reading.of({"sev": "N"}, "/sys/module/kvm_amd/parameters"),
             SLOTS: slots({"/b/plain-0.lock": ME}),
             QEMU: qemu({9: "qemu-system-x86_64"}),
             KERNEL_LOG: Reading.of(("kvm: SEV: failed",), "/dev/kmsg")}[entry]
    before, after = (snap(**unknown), snap(**{key: leaky})) if side == "before" else (snap(), snap(**unknown))
    result = diff(before, after)
    assert result.leaks == ()
    assert result.could_not == (f"could not compare {entry}: {side} the test: denied by the test",)
    assert not result.clean


def test_readings_from_two_places_are_not_compared():
    result = diff(snap(misc=Reading.of({"sev": 0}, "/a/misc.current")),
                  snap(misc=Reading.of({"sev": 3}, "/b/misc.current")))
    assert result.leaks == ()
    assert result.could_not == ("could not compare misc.current: read from /a/misc.current before and "
                                "/b/misc.current after",)


def test_a_reading_without_a_reason_still_says_unknown():
    assert Reading.missing("").unknown == "no reason given"
    assert not Snapshot(pid=1, entries={}).get(MISC).known


def test_the_ledger_text_has_before_after_diff_and_unknowns():
    before = snap(kvm_amd=Reading.missing("module kvm_amd is not loaded"))
    after = snap(kvm_amd=Reading.missing("module kvm_amd is not loaded"), qemu=qemu({7: "qemu-system-x86_64 -S"}))
    text = format_ledger(before, after, diff(before, after))
    for part in ("before the test:", "after its teardown:", "diff:", "unknowns:",
                 "left behind: QEMU pid 7", "before: kvm_amd parameters: module kvm_amd is not loaded",
                 "could not compare kvm_amd parameters"):
        assert part in text, part


# -- misc.current -------------------------------------------------------------------

def test_misc_current_documented_example():
    assert parse_misc_current((LEDGER / "misc-current-doc-example.txt").read_text()) == {"sev": 3, "sev_es": 0}


def test_misc_current_garbage_is_an_error_not_zero():
    with pytest.raises(ValueError):
        parse_misc_current("sev max\n")


def _cgroup_root(tmp_path: Path, cgroup: str) -> Path:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(f"0::{cgroup}\n")
    return tmp_path


def test_read_misc_prefers_the_own_cgroup(tmp_path):
    root = _cgroup_root(tmp_path, "/user.slice/run-1.scope")
    (root / "sys/fs/cgroup/user.slice/run-1.scope").mkdir(parents=True)
    (root / "sys/fs/cgroup/misc.current").write_text("sev 9\nsev_es 9\n")
    (root / "sys/fs/cgroup/user.slice/run-1.scope/misc.current").write_text("sev 1\nsev_es 0\n")
    reading = read_misc(root)
    assert reading.value == {"sev": 1, "sev_es": 0}
    assert reading.source == "/sys/fs/cgroup/user.slice/run-1.scope/misc.current"


def test_read_misc_root_and_hybrid_mounts(tmp_path):
    root = _cgroup_root(tmp_path, "/")
    (root / "sys/fs/cgroup/unified").mkdir(parents=True)
    (root / "sys/fs/cgroup/unified/misc.current").write_text("sev 2\n")
    assert read_misc(root).value == {"sev": 2}


def test_read_misc_missing_is_unknown_naming_why(tmp_path):
    reading = read_misc(_cgroup_root(tmp_path, "/"))
    assert not reading.known
    assert "no misc.current" in reading.unknown and "before 6.5" in reading.unknown


def test_read_misc_unreadable_or_garbled_is_unknown(tmp_path):
    root = _cgroup_root(tmp_path, "/")
    (root / "sys/fs/cgroup/misc.current").mkdir(parents=True)  # read fails: a directory
    assert "misc.current" in read_misc(root).unknown
    os.rmdir(root / "sys/fs/cgroup/misc.current")
    (root / "sys/fs/cgroup/misc.current").write_text("sev\n")
    assert "not a misc.current line" in read_misc(root).unknown


# -- kvm_amd ---------------------------------------------------------------------------

def test_kvm_amd_parameters_of_a_recorded_host():
    # fixtures/hosts/epyc-milan-6.8-ready is reconstructed (its meta.json says from what)
    reading = read_kvm_amd(FIX / "hosts/epyc-milan-6.8-ready/root")
    assert reading.value == {"sev": "Y", "sev_es": "Y", "sev_snp": "N"}


def test_kvm_amd_not_loaded_is_unknown(tmp_path):
    reading = read_kvm_amd(tmp_path)
    assert not reading.known and "not loaded" in reading.unknown


def test_kvm_amd_one_unreadable_parameter_makes_it_unknown(tmp_path):
    params = tmp_path / "sys/module/kvm_amd/parameters"
    params.mkdir(parents=True)
    (params / "sev").write_text("Y\n")
    (params / "sev_es").mkdir()  # reading it fails
    reading = read_kvm_amd(tmp_path)
    assert not reading.known and "sev_es" in reading.unknown


# -- /proc/locks and slots -----------------------------------------------------------------

def test_proc_locks_captured():
    held = parse_proc_locks((LEDGER / "proc-locks-devbox-2026-12-07.txt").read_text())
    assert held == {(0xFE, 0, 2146321): 31680, (0xFE, 0, 1531924): 29902, (0xFE, 0, 1531925): 29899}


def test_proc_locks_waiters_are_not_holders():
    text = ("1: FLOCK  ADVISORY  WRITE 10 fe:00:5 0 EOF\n"
            "1: -> FLOCK  ADVISORY  WRITE 11 fe:00:5 0 EOF\n")  # reconstructed from fs/locks.c's format
    assert parse_proc_locks(text) == {(0xFE, 0, 5): 10}


def test_slot_file_names():
    assert is_slot_file("plain-0.lock") and is_slot_file("sev-es-12.lock") and is_slot_file("sev-3.lock")
    assert not is_slot_file("plain-0.lock.tmp") and not is_slot_file("build.lock")


def test_own_slot_is_read_through_own_files(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    slot = SlotPool(elsewhere, "plain", 2).acquire(timeout=1)
    other = FileLock(str(tmp_path / "not-a-slot.lock"))
    other.acquire()
    try:
        reading = read_budget_slots(tmp_path / "budget-dir-not-used", is_slot_file)
        assert reading.value == {slot.path: os.getpid()}
    finally:
        slot.release()
        other.release()
    assert read_budget_slots(None, is_slot_file).value == {}


def test_another_process_slot_is_read_from_the_directory(tmp_path):
    code = ("import sys, time; from filelock import FileLock; l = FileLock(sys.argv[1]); l.acquire(); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "sev-es-0.lock")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        reading = read_budget_slots(tmp_path, is_slot_file)
        assert reading.value == {str(tmp_path / "sev-es-0.lock"): proc.pid}
    finally:
        proc.kill()
        proc.wait()


def test_unreadable_proc_locks_is_unknown(tmp_path):
    reading = read_budget_slots(None, is_slot_file, root=tmp_path)
    assert not reading.known and "/proc/locks" in reading.unknown


# -- QEMU descendants ------------------------------------------------------------------------

def test_qemu_descendants_children_and_grandchildren_only(tmp_path):
    fake = tmp_path / "qemu-system-fake"
    fake.symlink_to(Path("/bin/sleep"))
    child = subprocess.Popen([str(fake), "30"])
    grand = subprocess.Popen(["/bin/sh", "-c", f"{fake} 31 & wait"])
    plain = subprocess.Popen(["/bin/sleep", "32"])
    try:
        time.sleep(0.3)
        found = read_qemu_descendants().value
        assert found[child.pid] == f"{fake} 30"
        assert any(argv == f"{fake} 31" for argv in found.values())
        assert plain.pid not in found and grand.pid not in found
        # another process's tree is not ours: the child's own descendants do not include itself
        assert child.pid not in read_qemu_descendants(grand.pid).value
    finally:
        for p in (child, grand, plain):
            p.kill()
            p.wait()
    child_zombie = subprocess.Popen([str(fake), "0"])
    time.sleep(0.3)  # exited, not reaped: a zombie holds nothing
    assert child_zombie.pid not in read_qemu_descendants().value
    child_zombie.wait()


def test_unreadable_proc_is_unknown(tmp_path):
    assert not read_qemu_descendants(1, root=tmp_path / "nowhere").known


# -- the kernel log ----------------------------------------------------------------------------

def test_kmsg_filter_on_reconstructed_sev_errors():
    records = split_kmsg((LEDGER / "kmsg-reconstructed-sev-errors.txt").read_text())
    assert host_errors(records) == [
        "ccp 0000:01:00.5: sev command 0x85 timed out, disabling PSP",
        "ccp 0000:01:00.5: SEV-SNP: failed to INIT error 0x0",
        "ccp 0000:01:00.5: SEV: failed to INIT error 0xffffffff, rc -16",
        "WARNING: CPU: 5 PID: 4321 at arch/x86/kvm/svm/sev.c:2102 sev_vm_destroy+0x2a/0x4d0 [kvm_amd]",
    ]


def test_kmsg_filter_ignores_a_kvm_guests_own_messages():
    records = split_kmsg((LEDGER / "kmsg-devbox-2026-12-07.txt").read_text())
    assert len(records) == 14  # the continuation lines stay with their record
    assert host_errors(records) == []


def test_kmsg_record_fields():
    rec = parse_kmsg_record("3,1205,116117976,-;ccp 0000:01:00.5: x\n SUBSYSTEM=pci")
    assert (rec.facility, rec.level, rec.seq, rec.text) == (0, 3, 1205, "ccp 0000:01:00.5: x")
    assert parse_kmsg_record("12,9,1,-;kvm: failed").facility == 1
    assert parse_kmsg_record("no record here") is None
    assert parse_kmsg_record("x,1,2,-;text") is None


@pytest.mark.parametrize("raw,error", [
    ("3,1,1,-;kvm: SEV: guest exited", True),            # level err, subsystem
    ("4,1,1,-;SVM: something odd", True),                # warning, SVM prefix
    ("6,1,1,-;kvm_amd: SEV: failed to free ASID", True),  # info level but it failed
    ("6,1,1,-;kvm_amd: SEV enabled (ASIDs 100 - 1006)", False),
    ("4,1,1,-;kvm-clock: a warning of a KVM guest", False),
    ("3,1,1,-;nvme nvme0: I/O timeout", False),
    ("11,1,1,-;kvm: SEV: failed (written by userspace)", False),
])
def test_kmsg_filter_rules(raw, error):
    assert host_errors([raw]) == ([parse_kmsg_record(raw).text] if error else [])


def test_kmsg_cursor_reads_only_what_came_after_the_mark(tmp_path):
    log = tmp_path / "kmsg"
    log.write_text("3,1,1,-;ccp 0000:01:00.5: SEV: failed to INIT error 0x1\n")
    cursor = KmsgCursor(log)
    try:
        assert cursor.mark() == Reading.of((), str(log))
        with log.open("a") as f:
            f.write("6,2,2,-;SEV supported: 907 ASIDs\n3,3,3,-;kvm: SEV: failed to destroy\n SUBSYSTEM=x\n")
        assert cursor.since().value == ("kvm: SEV: failed to destroy",)
    finally:
        cursor.close()


def test_kmsg_cursor_unopenable_is_unknown(tmp_path):
    cursor = KmsgCursor(tmp_path / "no-kmsg")
    assert not cursor.mark().known and "no-kmsg" in cursor.mark().unknown
    assert not cursor.since().known


def test_kmsg_overwritten_records_make_a_quiet_log_unknown(tmp_path, monkeypatch):
    log = tmp_path / "kmsg"
    log.write_text("")
    cursor = KmsgCursor(log)
    answers: list[object] = [OSError(errno.EPIPE, "Broken pipe"), b"6,5,5,-;SEV supported: 1 ASIDs\n",
                             BlockingIOError()]

    def fake_read(fd, n):
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(ledger.os, "read", fake_read)
    reading = cursor.since()
    assert not reading.known and "overwrote" in reading.unknown
    answers[:] = [OSError(errno.EPIPE, "Broken pipe"), b"3,6,6,-;kvm: SEV: failed\n", BlockingIOError()]
    assert cursor.since().value == ("kvm: SEV: failed",)  # what was read still counts
    answers[:] = [OSError(errno.EACCES, "Permission denied")]
    assert "Permission denied" in cursor.since().unknown
    monkeypatch.undo()
    cursor.close()


def test_kmsg_of_this_host_can_be_marked_and_read():
    """The real /dev/kmsg: readable here (root), so the mark and the read are known."""
    if not os.access("/dev/kmsg", os.R_OK):
        pytest.skip("/dev/kmsg is not readable by this user")
    cursor = KmsgCursor()
    try:
        assert cursor.mark().known and cursor.fd is not None
        # opened non-blocking, or reading past the last record would wait for the next one
        assert fcntl.fcntl(cursor.fd, fcntl.F_GETFL) & os.O_NONBLOCK
        assert cursor.since().known
    finally:
        cursor.close()


def test_a_read_that_breaks_is_unknown_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(ledger, "read_qemu_descendants", broken)
    snap_now = ledger.snapshot(None, is_slot_file)
    assert snap_now.get(QEMU).unknown == "the read failed: RuntimeError: unforeseen"
    assert snap_now.get(KERNEL_LOG).unknown == "the kernel log was not marked"
