"""Two runs started at once in one checkout both keep complete Allure results;
the next run alone starts clean."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sev.reporting import resultsdir

TEST_FILE = """import time
import pytest

@pytest.mark.parametrize("i", range(3))
def test_{name}(i):
    time.sleep(1.5)
"""


def _names(out: Path) -> set[str]:
    return {json.loads(p.read_text())["name"] for p in out.glob("*-result.json")}


def _start(root: Path, sub: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--sev-mode=off", "-q", sub],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "SEV_RUNNER": "test-runner"})


@pytest.mark.timeout(300)
def test_two_runs_at_once_keep_all_results(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "reports").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"test_{name}.py").write_text(TEST_FILE.format(name=name))
    out = tmp_path / "reports" / "allure-results"
    out.mkdir()
    (out / "old-result.json").write_text(json.dumps({"name": "test_from_last_week"}))
    a, b = _start(tmp_path, "a"), _start(tmp_path, "b")
    outs = [p.communicate(timeout=240)[0] for p in (a, b)]
    assert a.returncode == 0 and b.returncode == 0, outs
    got = _names(out)
    assert {"test_a[0]", "test_a[1]", "test_a[2]", "test_b[0]", "test_b[1]", "test_b[2]"} <= got, got
    assert "test_from_last_week" not in got  # the first of the two still emptied it
    c = _start(tmp_path, "c")
    c.communicate(timeout=120)
    assert _names(out) == {"test_c[0]", "test_c[1]", "test_c[2]"}  # alone again: a clean directory


def test_claim_does_not_empty_while_another_run_holds_its_lock(tmp_path):
    out = tmp_path / "reports" / "allure-results"
    out.mkdir(parents=True)
    (out / "x-result.json").write_text("{}")
    runs = out.parent / resultsdir.RUNS_SUBDIR
    runs.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(runs / '99999.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = ("import sys; from pathlib import Path; from pytest_sev.reporting import resultsdir; "
                f"print(resultsdir.claim_results_dir(Path({str(out)!r})))")
        got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert got.stdout.strip() == "False" and (out / "x-result.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock file is stale, the next claim empties
    code = ("from pathlib import Path; from pytest_sev.reporting import resultsdir; "
            f"print(resultsdir.claim_results_dir(Path({str(out)!r})))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert got.stdout.strip() == "True" and not (out / "x-result.json").exists()
