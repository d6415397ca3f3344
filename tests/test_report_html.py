"""End to end: a real run, scripts/report.sh, and the report in a browser.

A small session (pass, fail, skip, a real guest boot, a real host check)
writes Allure results through the plugin; ``scripts/report.sh`` turns them
into HTML with Allure 3; headless Chromium opens it over a loopback HTTP
server and the DOM must show the tests, their status and the attachments.
A second generation must carry history. A guest with a kernel that is not a
kernel must land in the "Guest boot timeout" category in the generated
report, by Allure's own matching.

Chromium: Debian's ``chromium`` package (scripts/setup.sh installs it); the
browser test skips, saying so, only where it is not installed.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.request import urlopen

import pytest

from pytest_sev.reporting.categories import categorize

ROOT = Path(__file__).resolve().parents[1]
REPORT_SH = ROOT / "scripts" / "report.sh"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.qemu

SMOKE = '''
import pytest

def test_passes():
    pass

def test_fails():
    assert 2 + 2 == 5, "arithmetic regressed"

def test_skipped():
    pytest.skip("skipped on purpose")

def test_boots_a_guest(guest_factory):
    guest = guest_factory()
    out, status = guest.run("uname -r")
    assert status == 0 and out.strip()
'''


def checkout(pytester: pytest.Pytester) -> Path:
    pytester.makefile(".ini", pytest="[pytest]\n")
    (pytester.path / "reports").mkdir()
    (pytester.path / "suites").mkdir()
    return pytester.path / "reports" / "allure-results"


def report_sh(results: Path, report: Path) -> Path:
    proc = subprocess.run(["bash", str(REPORT_SH), str(results), str(report)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = Path(proc.stdout.strip().splitlines()[-1])
    assert index == report / "index.html" and index.is_file()
    return index


def report_results(report: Path) -> dict[str, dict]:
    """The generated report's own per-test data, by test name."""
    out = {}
    for path in (report / "data" / "test-results").glob("*.json"):
        data = json.loads(path.read_text())
        out[data["name"]] = data
    return out


# -- loopback HTTP and Chromium ------------------------------------------------

def _pids_with(token: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if token.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def chromium(url: str, profile: Path, *mode: str, budget_ms: int = 15000) -> str:
    """Run headless Chromium on *url* (loopback only) and return its stdout.
    Its whole process group is ended afterwards, whatever happened."""
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000",
            f"--virtual-time-budget={budget_ms}", *mode, url]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        for pid in _pids_with(f"--user-data-dir={profile}"):  # anything that left the group
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return out


def tab_count(dom: str, tab: str) -> int:
    m = re.search(r'data-testid="tab-' + tab + r'".*?data-testid="counter"[^>]*>(\d+)<', dom, re.S)
    assert m, f"no {tab} tab in the report page"
    return int(m.group(1))


def text_of(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


# -- the tests ---------------------------------------------------------------------

@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium; scripts/setup.sh does)")
def test_html_report_in_chromium(pytester, report_env, serve, qemu_processes):
    results = checkout(pytester)
    (pytester.path / "suites" / "test_smoke.py").write_text(SMOKE)
    (pytester.path / "suites" / "test_host.py").write_text((ROOT / "suites" / "test_host.py").read_text())
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "suites/test_smoke.py",
                                        "suites/test_host.py::test_host_check[cpu_vendor]", timeout=300)
    outcomes = run.parseoutcomes()  # the host row passes on an EPYC runner, skips elsewhere
    assert outcomes.get("failed") == 1 and outcomes.get("passed", 0) >= 2, run.stdout.str()[-3000:]
    assert not qemu_processes(str(pytester.path))

    report = report_env / "allure-report"
    report_sh(results, report)
    index = report_sh(results, report)  # twice: the second one has history
    history = (report_env / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    data = report_results(report)
    assert {"test_passes", "test_fails", "test_skipped", "test_boots_a_guest",
            "test_host_check[cpu_vendor]"} <= set(data)
    assert data["test_passes"]["history"], "the second report shows no history of the first"

    base = serve(index.parent)
    profile = report_env / "chromium-profile"

    # the overview: the report, its counts, the failing test in the tree
    dom = chromium(base + "index.html", profile, "--dump-dom")
    assert 'data-testid="report-title"' in dom and "pytest-sev" in text_of(dom)
    assert tab_count(dom, "failed") == 1
    assert tab_count(dom, "passed") == sum(1 for d in data.values() if d["status"] == "passed")
    assert tab_count(dom, "skipped") == sum(1 for d in data.values() if d["status"] == "skipped")
    assert "selftest-runner" in text_of(dom)  # runner = parent suite, top of the tree
    leaves = dict((title, status) for status, title in re.findall(
        r'data-testid="tree-leaf-status-(\w+)".*?data-testid="tree-leaf-title"[^>]*>([^<]+)<', dom, re.S))
    assert {k: leaves.get(k) for k in ("test_passes", "test_fails", "test_skipped", "test_boots_a_guest")} == {
        "test_passes": "passed", "test_fails": "failed", "test_skipped": "skipped",
        "test_boots_a_guest": "passed"}, leaves
    chromium(base + "index.html", profile, f"--screenshot={report_env / 'overview.png'}")
    assert (report_env / "overview.png").stat().st_size > 10_000

    # the guest test: passed, with the guest's attachments listed
    booted = data["test_boots_a_guest"]
    dom = text_of(chromium(f"{base}index.html#/{booted['id']}", profile, "--dump-dom"))
    assert "test_boots_a_guest" in dom and "Passed" in dom
    for name in ("guest: console log", "guest: qemu command line", "guest: qemu stderr"):
        assert name in dom, f"attachment {name!r} not shown"
    chromium(f"{base}index.html#/{booted['id']}", profile, f"--screenshot={report_env / 'guest.png'}")
    # ... and the console log the report serves is the guest's real console
    console = _attachment(booted, "guest: console log")
    with urlopen(f"{base}data/attachments/{console['link']['id']}{console['link']['ext']}", timeout=30) as r:
        assert b"pytest-sev: guest ready" in r.read()

    # the failing test: its status and message
    dom = text_of(chromium(f"{base}index.html#/{data['test_fails']['id']}", profile, "--dump-dom"))
    assert "Failed" in dom and "arithmetic regressed" in dom

    # a host test: the readiness report is attached
    host = data["test_host_check[cpu_vendor]"]
    dom = text_of(chromium(f"{base}index.html#/{host['id']}", profile, "--dump-dom"))
    assert "host readiness report" in dom
    assert not _pids_with(str(profile))


def _attachment(result: dict, name: str) -> dict:
    """A named attachment of a generated report's test result (steps included)."""
    for att in result.get("attachments", []):
        if att.get("link", {}).get("name") == name:
            return att
    stack = [result]
    while stack:
        node = stack.pop()
        for step in node.get("steps", []) + node.get("setup", []) + node.get("teardown", []):
            if step.get("type") == "attachment" and step.get("link", {}).get("name") == name:
                return step
            stack.append(step)
    found = json.dumps(result)[:2000]
    raise AssertionError(f"no attachment {name!r} in {found}")


def test_kernel_that_is_not_a_kernel_is_a_boot_timeout(pytester, report_env, qemu_processes):
    """Random bytes as --guest-kernel: QEMU runs garbage, the boot times out,
    and the report files it under "Guest boot timeout"."""
    results = checkout(pytester)
    bogus = pytester.path / "not-a-kernel.bin"
    data = bytearray(random.Random(7).randbytes(1 << 20))
    # passes the start-up bzImage check ('HdrS'); a boot protocol 2.06 header QEMU accepts with the
    # default busybox initrd (protocol 0 makes QEMU exit: "linux kernel too old to load a ram disk"):
    # 4 setup sectors, loaded high, initrd below 0x37ffffff, 2 KiB command line; the rest is garbage
    data[0x1F1] = 4
    data[0x202:0x208] = b"HdrS" + (0x0206).to_bytes(2, "little")
    data[0x211] = 0x01
    data[0x22C:0x230] = (0x37FFFFFF).to_bytes(4, "little")
    data[0x238:0x23C] = (2048).to_bytes(4, "little")
    bogus.write_bytes(bytes(data))
    (pytester.path / "suites" / "test_boot.py").write_text(
        "def test_boot(guest_factory):\n    guest_factory()\n")
    run = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off",
                                        f"--guest-kernel={bogus}", "--guest-timeout=3", "suites", timeout=300)
    run.assert_outcomes(failed=1)
    assert not qemu_processes(str(pytester.path))

    (result,) = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    message = result["statusDetails"]["message"]
    assert result["status"] == "broken"
    assert re.match(r"pytest_sev.errors.GuestTimeout: timed out after [0-9.]+s waiting for the guest to boot", message)
    assert categorize(result["status"], message) == "Guest boot timeout"
    # the guest's evidence is attached by guest_factory's teardown (a fixture "after")
    afters = [a for c in results.glob("*-container.json")
              for after in json.loads(c.read_text()).get("afters", []) for a in after.get("attachments", [])]
    assert "guest: console log" in {a["name"] for a in afters}

    report = report_env / "allure-report"
    report_sh(results, report)
    generated = report_results(report)["test_boot"]
    assert [c["name"] for c in generated["categories"]] == ["Guest boot timeout"]
    tree = json.loads((report / "widgets" / "categories.json").read_text())
    names = {node["name"] for node in tree["nodes"].values() if node.get("type") == "category"}
    assert names == {"Guest boot timeout"}
