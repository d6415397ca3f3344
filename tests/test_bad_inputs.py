"""Bad inputs that used to get through, each refused where it enters.

CLI commands (``python -m pytest_sev ...``, run as a person would, in a
subprocess): a non-zero exit, one line on stderr naming the problem, no
traceback, and nothing created or copied.  pytest options (pytester
subprocesses): a UsageError (exit 4) with one ``ERROR:`` line before any test
runs, and nothing created.  No QEMU is booted here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KAT_OVMFX64 = ROOT / "fixtures" / "sev-kat" / "sev-crate" / "measurement" / "ovmf_OvmfX64_suffix.bin"
NEVER = "def test_never(): raise AssertionError('must not run')"


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_sev", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env or {**os.environ, "PYTHONPATH": str(ROOT)})


def one_line(proc: subprocess.CompletedProcess[str], rc: int, *fragments: str) -> str:
    """The refusal: exit *rc*, one stderr line naming the problem, no traceback, no stdout."""
    assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def tree(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


# -- merge ---------------------------------------------------------------------------------

def test_merge_refuses_a_directory_without_allure_results(tmp_path):
    out = tmp_path / "out"
    one_line(cli("merge", str(out), "/etc"), 2, "merge: /etc: no Allure results in it")
    assert not out.exists()  # nothing copied: /etc/shadow stays where it is


def test_merge_refuses_before_copying_the_good_runner(tmp_path):
    """A good runner first, then /etc: the refusal comes before OUT exists."""
    good = tmp_path / "rome"
    good.mkdir()
    (good / "1-result.json").write_text(json.dumps({"name": "t", "labels": []}))
    out = tmp_path / "out"
    one_line(cli("merge", str(out), str(good), "/etc"), 2, "/etc: no Allure results")
    assert not out.exists()


def test_merge_reads_only_allure_files(tmp_path):
    """A results directory with strays beside the results: only Allure's own files arrive,
    a symlink named like a result (to a secret) is not followed."""
    d = tmp_path / "rome"
    d.mkdir()
    (d / "1-result.json").write_text(json.dumps({"name": "t", "labels": []}))
    (d / "1-container.json").write_text("{}")
    (d / "2-attachment.txt").write_text("log")
    (d / "environment.properties").write_text("host.cpu=EPYC\n")
    (d / "shadow").write_text("root:$6$secret")
    (d / "notes.json").write_text("{}")
    (d / "sub").mkdir()
    secret = tmp_path / "secret"
    secret.write_text("root:$6$secret")
    (d / "3-result.json").symlink_to(secret)
    out = tmp_path / "out"
    proc = cli("merge", str(out), str(d))
    assert proc.returncode == 0, proc.stderr
    assert "rome: 1 results" in proc.stdout
    assert tree(out) == ["1-container.json", "1-result.json", "2-attachment.txt", "categories.json",
                         "environment.properties"]
    assert "rome.host.cpu=EPYC" in (out / "environment.properties").read_text()


def test_merge_refuses_a_junit_file_that_is_not_junit(tmp_path):
    d = tmp_path / "rome"
    d.mkdir()
    (d / "1-result.json").write_text(json.dumps({"name": "t", "labels": []}))
    out = tmp_path / "out"
    one_line(cli("merge", str(out), str(d), "--junit", str(out / "j.xml"), "--junit-in", "rome=/etc/passwd"),
             2, "merge: /etc/passwd: not JUnit XML")
    assert not out.exists()


def test_merge_refuses_junit_in_without_junit(tmp_path):
    d = tmp_path / "rome"
    d.mkdir()
    (d / "1-result.json").write_text(json.dumps({"name": "t", "labels": []}))
    junit = tmp_path / "rome.xml"
    junit.write_text('<testsuite name="s" tests="0"/>')
    out = tmp_path / "out"
    one_line(cli("merge", str(out), str(d), "--junit-in", f"rome={junit}"), 2, "--junit-in needs --junit")
    assert not out.exists()


# -- launch -hda -----------------------------------------------------------------------------

@pytest.fixture
def launch_cache(tmp_path) -> dict[str, str]:
    """The environment of a launch whose private directories go under tmp_path."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTEST_SEV_CACHE": str(tmp_path / "cache")}


def test_launch_refuses_etc_passwd_as_a_disk(tmp_path, launch_cache):
    before = tree(Path("/etc"))
    one_line(cli("launch", "-hda", "/etc/passwd", "--print-argv", env=launch_cache), 1,
             "launch: -hda /etc/passwd: raw file without a partition table")
    assert tree(Path("/etc")) == before  # no passwd.fd, passwd.qmp, passwd.log
    assert not (tmp_path / "cache").exists()


def test_launch_refuses_a_copy_of_passwd_in_a_real_launch(tmp_path, launch_cache):
    """Not --print-argv: the launch itself stops before writing anything."""
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy("/etc/passwd", d / "passwd")
    one_line(cli("launch", "-hda", str(d / "passwd"), "--accel", "tcg", env=launch_cache), 1,
             f"-hda {d / 'passwd'}: raw file without a partition table")
    assert tree(d) == ["passwd"]
    assert not (tmp_path / "cache").exists()


# -- measure --ovmf ------------------------------------------------------------------------------

def test_measure_refuses_passwd_as_ovmf():
    one_line(cli("measure", "--mode", "sev", "--ovmf", "/etc/passwd"), 1,
             "/etc/passwd is not an OVMF image")


def test_measure_refuses_whole_pages_without_the_footer_table(tmp_path):
    blank = tmp_path / "blank.fd"
    blank.write_bytes(bytes(8192))
    one_line(cli("measure", "--mode", "sev-es", "--ovmf", str(blank)), 1,
             f"{blank} is not an OVMF image: no OVMF footer table")


def test_measure_refuses_a_device_as_ovmf():
    one_line(cli("measure", "--mode", "sev", "--ovmf", "/dev/null"), 1,
             "/dev/null is not an OVMF image: not a regular file")


def test_measure_still_measures_an_ovmf():
    proc = cli("measure", "--mode", "sev", "--ovmf", str(KAT_OVMFX64))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()[-1]) == 64


# -- capture OUTDIR -----------------------------------------------------------------------------

@pytest.mark.parametrize("outdir, fragment", [
    ("/dev/full", "OUTDIR /dev/full: not a directory"),
    ("/proc/x", "OUTDIR /proc/x: cannot be created"),
    ("/etc/passwd/x", "(/etc/passwd is in the way)"),
])
def test_capture_refuses_an_outdir_that_cannot_be_one(outdir, fragment):
    one_line(cli("capture", outdir, "--no-guest"), 2, "capture: ", fragment)
    assert not Path(outdir).is_dir()  # /dev/full stays a device, /proc/x is not made


def test_capture_refuses_a_name_that_leaves_outdir(tmp_path):
    one_line(cli("capture", str(tmp_path / "out"), "--no-guest", "--name", "../../etc"), 2,
             "--name '../../etc': not a bundle name")
    assert not (tmp_path / "out").exists()


def test_capture_refuses_a_memory_size_no_guest_boots_with(tmp_path):
    one_line(cli("capture", str(tmp_path / "out"), "--memory-mib", "8"), 2, "--memory-mib 8: too small")
    assert not (tmp_path / "out").exists()


# -- pytest options ---------------------------------------------------------------------------

def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    """The one ERROR line of a run refused at start-up (exit 4, no test ran)."""
    pytester.makepyfile(NEVER)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o", "sev_allure=false", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:] + result.stderr.str()
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert "Traceback" not in result.stderr.str() and "INTERNALERROR" not in result.stdout.str()
    assert "must not run" not in result.stdout.str()
    return errors[0]


def test_dma_baseline_that_is_not_json_is_refused_at_start_up(pytester):
    line = usage_error(pytester, "--dma-baseline=/etc/passwd")
    assert "--dma-baseline /etc/passwd: dma baseline: not JSON" in line


@pytest.mark.parametrize("content, fragment", [
    ("[1, 2]", "a JSON list, not an object"),
    ('{"schema": 1, "rows": {"sev/virtio-blk/1M": "stall"}}', "sev/virtio-blk/1M: not an object"),
    ('{"schema": 1, "rows": []}', "rows is not an object"),
    ('{"schema": 2, "rows": {}}', "unsupported schema 2"),
])
def test_dma_baseline_that_is_not_a_baseline_is_refused_at_start_up(pytester, tmp_path, content, fragment):
    bad = tmp_path / "baseline.json"
    bad.write_text(content)
    assert fragment in usage_error(pytester, f"--dma-baseline={bad}")


def test_dma_record_baseline_in_proc_is_refused_at_start_up(pytester):
    line = usage_error(pytester, "--dma-record-baseline=/proc/x.json")
    assert "--dma-record-baseline: the directory /proc: nothing can be created in it" in line
    assert not Path("/proc/x.json").exists()


def test_dma_record_baseline_over_another_file_is_refused(pytester, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("not a baseline")
    line = usage_error(pytester, f"--dma-record-baseline={other}")
    assert f"--dma-record-baseline {other}: exists and is not a baseline to add to" in line
    assert other.read_text() == "not a baseline"


def test_dma_record_baseline_that_is_a_directory_is_refused(pytester, tmp_path):
    assert f"--dma-record-baseline {tmp_path}: not a regular file" in \
        usage_error(pytester, f"--dma-record-baseline={tmp_path}")


@pytest.mark.parametrize("value", ["", " , "])
def test_empty_dma_sizes_is_refused(pytester, value):
    line = usage_error(pytester, f"--dma-sizes={value}")
    assert f"--dma-sizes {value!r} names no pool size" in line


def test_ovmf_vars_that_is_a_device_says_so(pytester):
    line = usage_error(pytester, "--ovmf-vars=/dev/null")
    assert "--ovmf-vars /dev/null: not a regular file" in line and "no such file" not in line


def test_guest_log_dir_in_proc_names_the_real_reason(pytester):
    line = usage_error(pytester, "--guest-log-dir=/proc/nope")
    assert "--guest-log-dir /proc/nope: cannot be created: /proc does not take new entries" in line
    assert "no space left" not in line
    assert not Path("/proc/nope").exists()


def test_plain_ovmf_as_amdsev_is_refused_in_plain_english(pytester):
    line = usage_error(pytester, f"--ovmf-amdsev={KAT_OVMFX64}")
    assert "its footer table has no launch-secret area and no kernel-hashes table" in line
    assert "no a " not in line


# -- the checks themselves, without a pytest run ------------------------------------------------

def test_good_values_still_pass(tmp_path):
    from pytest_sev.config import build_config, check_writable_dir
    from pytest_sev.dma.baseline import add_entry
    baseline = tmp_path / "b.json"
    baseline.write_text(json.dumps(add_entry(None, "sev", "virtio-blk", "1M", "stall", runner="r")))
    values = {"dma_sizes": "1M 8M", "dma_baseline": str(baseline), "dma_record_baseline": str(tmp_path / "new.json")}
    cfg = build_config(lambda name: values.get(name))
    assert cfg.dma_sizes == ("1M", "8M") and cfg.dma_baseline == baseline.resolve()
    assert cfg.dma_record_baseline == (tmp_path / "new.json").resolve()
    assert build_config(lambda name: None).dma_sizes == ()  # not given: the default sizes
    check_writable_dir(tmp_path / "a" / "b", "--guest-log-dir")
    assert tree(tmp_path) == ["b.json"]  # the probe leaves nothing behind
