"""Failure categories against the messages the harness really produces.

Every message here comes from the real code path (a console that times out
on a socketpair, a real QEMU refusing a QMP command, decide() on a recorded
host, classify() on recorded DMA evidence), turned into the Allure status
and message exactly as allure-pytest does (``excinfo.exconly()`` and its
``get_status``). Each must land in its category under the three regex
semantics that read ``categories.json``: Allure 3 (search, first match
wins), the classic report (search, dot-all) and Allure 2 (Java ``matches``).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from allure_pytest.utils import get_status

from pytest_sev.console.serial import Console
from pytest_sev.dma.classify import Observed, classify
from pytest_sev.dma.kmsg import parse_kmsg
from pytest_sev.dma.load import parse_result
from pytest_sev.dma.stall import STALLED, Sample, StallDetector
from pytest_sev.errors import GuestError
from pytest_sev.guest.guest import FRESH_SHELL_PROMPT, PANIC, Guest
from pytest_sev.host import check_outcome, decide
from pytest_sev.host.recorded import load_recorded
from pytest_sev.images.provision import _run
from pytest_sev.qemu.qmp import QMP
from pytest_sev.reporting import categories as cats
from pytest_sev.reporting.categories import CATEGORIES, categorize

ROOT = Path(__file__).resolve().parents[1]
HOSTS = ROOT / "fixtures" / "hosts"
DMA = ROOT / "fixtures" / "recorded" / "dma"
READY = "pytest-sev: guest ready"
BOOT_WHAT = f"the guest to boot (/{READY}/ on the console)"


def allure_view(excinfo: pytest.ExceptionInfo) -> tuple[str, str]:
    """(status, message) as allure-pytest writes them for this exception."""
    return str(get_status(excinfo.value)), excinfo.exconly()


def raised(fn, *args, **kwargs) -> tuple[str, str]:
    with pytest.raises(BaseException) as ei:
        fn(*args, **kwargs)
    return allure_view(ei)


def failed_with(text: str) -> tuple[str, str]:
    """What a suite's ``pytest.fail(text, pytrace=False)`` reports."""
    return raised(pytest.fail, text, pytrace=False)


def asserted(outcome: str, expected: str, text: str) -> tuple[str, str]:
    """What a suite's ``assert outcome == expected, text`` reports."""
    def check():
        assert outcome == expected, text
    return raised(check)


# -- real console over a socketpair ----------------------------------------

@pytest.fixture
def console(tmp_path):
    ours, theirs = socket.socketpair()
    con = Console(ours, tmp_path / "console.log",
                  lambda exited=False: {"argv": ["qemu-system-x86_64", "-append", "swiotlb=force"],
                                        "logs": {"console log": tmp_path / "console.log",
                                                 "qmp transcript": tmp_path / "qmp.jsonl"},
                                        **({"exit": "QEMU exit status 1"} if exited else {})})
    yield con, theirs
    con.close()
    theirs.close()


# chatter a SWIOTLB-forced guest prints, which must not decide the category
NOISE = (b"[    0.000000] Kernel command line: console=ttyS0 swiotlb=force,4096 stall\r\n"
         b"[    0.310000] software IO TLB: mapped [mem 0x...] (64MB)\r\n")


def boot_timeout(console) -> tuple[str, str]:
    con, peer = console
    peer.sendall(NOISE)
    return raised(con.expect, [READY.encode(), PANIC], 0.3, BOOT_WHAT)


def qemu_died(console) -> tuple[str, str]:
    con, peer = console
    peer.sendall(NOISE)
    peer.close()
    return raised(con.expect, [READY.encode(), PANIC], 5, BOOT_WHAT)


def panicked(console) -> tuple[str, str]:
    con, peer = console
    peer.sendall(NOISE + b"[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    assert con.expect([READY.encode(), PANIC], 5, BOOT_WHAT) == 1
    stub = SimpleNamespace(console=con, _con=con, argv=["qemu-system-x86_64"], logs={},
                           mark_unusable=lambda why: None)
    return raised(Guest._panicked, stub, "boot")


def command_panicked(console) -> tuple[str, str]:
    con, peer = console
    peer.sendall(b"[    3.0] sysrq: Trigger a crash\r\n"
                 b"[    3.1] Kernel panic - not syncing: sysrq triggered crash\r\n"
                 b"[    3.1] Call Trace:\r\n[    3.1]  <TASK>\r\n[    3.1]  dump_stack_lvl+0x44/0x5c\r\n"
                 b"[    3.2] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\r\n")
    return raised(con.run, "echo c > /proc/sysrq-trigger", 5)


def shell_died(console) -> tuple[str, str]:
    con, peer = console
    con.dead_shell = [FRESH_SHELL_PROMPT]
    peer.sendall(b"\r\n\r\nsev-guest# ")
    return raised(con.run, "kill -9 $$; sleep 30", 5)


def unusable() -> tuple[str, str]:
    stub = SimpleNamespace(unusable="GuestTimeout during command 'sleep 100': timed out after 2s waiting "
                                    "for command 'sleep 100' to finish", spec=SimpleNamespace(name="guest"),
                           argv=["qemu-system-x86_64"], logs={}, process=None)
    return raised(Guest.run, stub, "echo hi")


def command_hung(console) -> tuple[str, str]:
    con, _peer = console
    return raised(con.run, "ls /boot && cat /sys/kernel/debug/swiotlb/io_tlb_used", 0.3)


# -- host readiness --------------------------------------------------------

def host_not_ready_decide(tmp_path) -> tuple[str, str]:
    report = load_recorded(HOSTS / "epyc-milan-sev-only", tmp_path).probe()
    decision = decide("sev-es", report, "sev-es")
    assert decision.action == "fail"
    return failed_with(decision.reason)


def host_not_ready_check(tmp_path) -> tuple[str, str]:
    report = load_recorded(HOSTS / "epyc-rome-smee-off", tmp_path).probe()
    failing = report.failures("sev-es")[0]
    outcome = check_outcome(failing, "sev-es")
    assert outcome.action == "fail"
    return failed_with(outcome.reason)


# -- DMA outcomes (the DMA suite asserts the outcome it expected) -----------

def dma(outcome_kmsg: str = "", result_file: str | None = None, **kw) -> tuple[str, str]:
    result = parse_result((DMA / result_file).read_text()) if result_file else None
    got = classify(parse_kmsg(outcome_kmsg), result, **kw)
    return asserted(got.outcome, "clean", f"64M: {got}")


def dma_stall() -> tuple[str, str]:
    det = StallDetector(stall_seconds=30)
    for t in (0, 10, 20, 40):
        det.observe(Sample(t=t, sectors=100, in_flight=4))
    assert det.reason
    # a stall is a live guest whose pool is shown exhausted (dma/classify.py): the kernel said so
    full = ("[   30.1] virtio-pci 0000:00:03.0: swiotlb buffer is full (sz: 262144 bytes), "
            "total 512 (slots), used 384 (slots)\n")
    return dma(full, None, observed=Observed(detector=STALLED, ended=det.reason))


# -- QMP: a real QEMU refusing a command -----------------------------------

@contextmanager
def qmp_on_machine_none(tmp_path):
    """A real QEMU (``-machine none``) with QMP on a socketpair: (qemu path, process, QMP)."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([qemu, "-machine", "none", "-nodefaults", "-display", "none",
                             "-chardev", f"socket,id=m,fd={theirs.fileno()}", "-mon", "chardev=m,mode=control"],
                            pass_fds=(theirs.fileno(),), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs.close()
    qmp = QMP(ours, tmp_path / "qmp.jsonl",
              context=lambda: {"argv": [qemu, "-machine", "none"], "logs": {"console log": tmp_path / "c.log"}})
    try:
        qmp.connect(timeout=30)
        yield qemu, proc, qmp
    finally:
        qmp.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def qmp_error(tmp_path) -> tuple[str, str]:
    with qmp_on_machine_none(tmp_path) as (_qemu, _proc, qmp):
        return raised(qmp.execute, "no-such-command")


def qmp_lost(tmp_path) -> tuple[str, str]:
    with qmp_on_machine_none(tmp_path) as (_qemu, proc, qmp):
        proc.kill()
        proc.wait()
        status, message = raised(qmp.execute, "query-status", timeout=3)
        assert "last QMP command: query-status" in message and "qemu command line: " in message
        return status, message


def qemu_frozen(tmp_path) -> tuple[str, str]:
    """A real QEMU stopped with SIGSTOP: its monitor's wait ends as GuestFrozen, named."""
    from pytest_sev.qemu.process import frozen_state
    with qmp_on_machine_none(tmp_path) as (_qemu, proc, qmp):
        qmp.frozen = lambda: frozen_state(proc.pid)
        proc.send_signal(signal.SIGSTOP)
        try:
            return raised(qmp.execute, "query-status", timeout=30)
        finally:
            proc.send_signal(signal.SIGCONT)


def build_failure() -> tuple[str, str]:
    return raised(_run, ["sh", "-c", "echo 'make: *** [vmlinux] Error 2' >&2; exit 2"])


def not_provisioned() -> tuple[str, str]:
    from pytest_sev.images.default_kernel import default_kernel
    return raised(default_kernel, "linux-image-pytest-sev-not-there")


def guest_command_exited() -> tuple[str, str]:
    return raised(lambda: (_ for _ in ()).throw(
        GuestError("guest command 'fio --name=boot' exited 1", detail="fio: no such device")))


def harness_bug() -> tuple[str, str]:
    return raised(lambda: None + 1)


CASES = {
    "host-decide": ("Host not ready for the mode", lambda c, t: host_not_ready_decide(t)),
    "host-check": ("Host not ready for the mode", lambda c, t: host_not_ready_check(t)),
    "boot-timeout": ("Guest boot timeout", lambda c, t: boot_timeout(c)),
    "qemu-died": ("QEMU exited or did not start", lambda c, t: qemu_died(c)),
    "guest-panic": ("Guest kernel panic", lambda c, t: panicked(c)),
    "dma-panic": ("Guest kernel panic",
                  lambda c, t: dma("[   12.1] Kernel panic - not syncing: Fatal exception in interrupt\n")),
    "dma-corruption": ("Data corruption", lambda c, t: dma("", "loop-dd-tamper.result.txt")),
    "dma-fio-verify": ("Data corruption", lambda c, t: dma("", "loop-fio-tamper.result.txt")),
    "dma-stall": ("SWIOTLB stall, exhaustion or I/O error", lambda c, t: dma_stall()),
    # no progress and nothing shows the pool ran dry: hung, not the expected stall
    "dma-hung": ("DMA load hung", lambda c, t: dma("", None, observed=Observed(detector=STALLED,
                                                                             ended="no I/O completed for 30s"))),
    "dma-io-error": ("SWIOTLB stall, exhaustion or I/O error",
                     lambda c, t: dma("[   3.2] I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x8800 "
                                      "phys_seg 1 prio class 2\n", "loop-dd-clean.result.txt", dev="/dev/vda")),
    "dma-pressure": ("SWIOTLB stall, exhaustion or I/O error",
                     lambda c, t: dma("[   5.0] virtio-pci 0000:00:03.0: swiotlb buffer is full (sz: 262144 bytes), "
                                      "total 4096 (slots), used 3606 (slots)\n", "loop-dd-clean.result.txt")),
    "qmp": ("QMP error", lambda c, t: qmp_error(t)),
    "build": ("Build or provisioning failure", lambda c, t: build_failure()),
    "not-provisioned": ("Build or provisioning failure", lambda c, t: not_provisioned()),
    "command-hung": ("Guest command failed or hung", lambda c, t: command_hung(c)),
    "command-panic": ("Guest kernel panic", lambda c, t: command_panicked(c)),
    "shell-died": ("Guest shell died", lambda c, t: shell_died(c)),
    "qmp-lost": ("QMP connection lost", lambda c, t: qmp_lost(t)),
    "qemu-frozen": ("QEMU frozen (stopped)", lambda c, t: qemu_frozen(t)),
    "unusable": ("Guest left unusable by an earlier failure", lambda c, t: unusable()),
    "command-exited": ("Guest command failed or hung", lambda c, t: guest_command_exited()),
    "harness": ("Harness error", lambda c, t: harness_bug()),
}


def semantics_agree(category_name: str, status: str, message: str) -> None:
    """The expected category matches under Allure 2's and the classic rules too."""
    category = next(c for c in CATEGORIES if c.name == category_name)
    if category.message_regex is None:
        return
    assert re.fullmatch(category.message_regex, message), "Allure 2 (Java matches) disagrees"
    assert re.search(category.message_regex, message, re.S), "classic report (dot-all search) disagrees"
    assert status in category.statuses


@pytest.mark.parametrize("case", CASES)
def test_real_message_lands_in_its_category(case, console, tmp_path):
    expected, make = CASES[case]
    status, message = make(console, tmp_path)
    assert categorize(status, message) == expected, f"{status}: {message[:400]}"
    semantics_agree(expected, status, message)


def test_boot_timeout_tail_with_swiotlb_is_still_a_boot_timeout(console):
    """The console tail (kernel command line ``swiotlb=force``, "stall") is in
    the message, but only the first line decides."""
    status, message = boot_timeout(console)
    assert "swiotlb=force" in message and "stall" in message
    assert categorize(status, message) == "Guest boot timeout"


def test_passed_and_skipped_are_never_categorized():
    assert categorize("passed", None) is None
    assert categorize("skipped", "Skipped: host not ready for sev-es: host check x failed") is None


def test_unmatched_failure_is_left_to_allure_product_errors():
    status, message = asserted(1, 2, "uname -r differs")
    assert (status, categorize(status, message)) == ("failed", None)


def test_categories_json_is_allure2_shaped(tmp_path):
    path = cats.write_categories(tmp_path)
    data = json.loads(path.read_text())
    assert [d["name"] for d in data] == [c.name for c in CATEGORIES]
    for entry in data:
        assert set(entry) <= {"name", "description", "matchedStatuses", "messageRegex", "traceRegex", "flaky"}
        assert entry["matchedStatuses"] and set(entry["matchedStatuses"]) <= {"failed", "broken"}
        if "messageRegex" in entry:
            re.compile(entry["messageRegex"])


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (scripts/report.sh installs it)")
def test_javascript_regexes_agree(console, tmp_path):
    """Allure 3 compiles the regexes with JavaScript's RegExp: same answers."""
    samples = {"boot": boot_timeout(console), "build": build_failure(), "harness": harness_bug(),
               "dma": dma_stall()}
    script = """
const cats = JSON.parse(process.argv[1]), samples = JSON.parse(process.argv[2]);
const out = {};
for (const [k, [status, msg]] of Object.entries(samples)) {
  const c = cats.find(c => c.matchedStatuses.includes(status) &&
                           (!c.messageRegex || new RegExp(c.messageRegex).test(msg)));
  out[k] = c ? c.name : null;
}
console.log(JSON.stringify(out));
"""
    proc = subprocess.run(["node", "-e", script, cats.categories_json(), json.dumps(samples)],
                          capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(proc.stdout)
    assert got == {k: categorize(*v) for k, v in samples.items()}
    assert got["boot"] == "Guest boot timeout" and got["harness"] == "Harness error"
