"""The DMA suite end to end, two pool sizes in parallel under pytest-xdist:
separate guests and disks, one merged summary, no QEMU left behind; and its
SEV-SNP rows decided by the mode table on a host that cannot run them."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.qemu


def test_two_sizes_in_parallel_merge_into_one_summary(tmp_path, qemu_processes):
    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_dma.py"), "-n", "2", "-p", "no:cacheprovider",
         "--dma-sizes=1M 64M", "--sev-mode=off", f"--rootdir={tmp_path}", "-q",
         f"--guest-log-dir={tmp_path / 'logs'}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    data = json.loads((tmp_path / "reports" / "dma" / "dma-summary.json").read_text())
    outcomes = {(r["bus"], r["size"]): r["outcome"] for r in data["results"]}
    assert outcomes == {("virtio-blk", "1M"): "stall", ("virtio-scsi", "1M"): "stall",
                        ("virtio-blk", "64M"): "clean"}
    clean = next(r for r in data["results"] if r["size"] == "64M")
    assert clean["full_messages"] == 0 and clean["reported_pool_bytes"] == 64 << 20
    for r in data["results"]:  # every row carries its bounce evidence; clean ones must be proven
        assert r["bounce"]["access_platform"] is True, r
    assert clean["bounce"]["proven"] and clean["peak_used_slots"] > 0, clean["bounce"]
    assert (tmp_path / "reports" / "dma" / "dma-summary.png").stat().st_size > 10_000
    assert qemu_processes("dma-") == []
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("sev-")]
    assert leftovers == []  # scratch disks and guest dirs are gone


def _dma_snp_rows(tmp_path, *mode):
    """Only the suite's SEV-SNP rows (one size), in an inner pytest: decided by the mode
    table before any guest, so no QEMU starts on a host that cannot run SNP."""
    root = tmp_path / ("root" + "".join(mode).replace("-", "_"))
    root.mkdir()
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_dma.py"), "-p", "no:cacheprovider",
         "-o", "sev_allure=false", "-k", "sev-snp", "--dma-sizes=8M", "-rsf", "-q", f"--rootdir={root}",
         f"--guest-log-dir={tmp_path / 'logs'}", *mode],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_sev_snp_rows_skip_under_auto_and_fail_under_sev_snp_naming_the_host_check(tmp_path, qemu_processes):
    """The DMA matrix has SEV-SNP rows marked sev_snp: on a host that cannot run SNP
    guests they skip under auto and fail under --sev-snp, both naming the same failing
    host check as `python -m pytest_sev host --mode sev-snp` does."""
    host = subprocess.run([sys.executable, "-m", "pytest_sev", "host", "--mode", "sev-snp"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if host.returncode == 0:
        pytest.skip("this host is ready for SEV-SNP: its SNP DMA rows would boot guests (see suites/test_dma.py)")
    verdict = re.search(r"NOT ready for sev-snp: host check (\w+) failed", host.stdout)
    assert verdict, host.stdout[-2000:] + host.stderr[-1000:]
    check = verdict.group(1)
    auto = _dma_snp_rows(tmp_path)
    assert auto.returncode == 0 and "1 skipped, 3 deselected" in auto.stdout, auto.stdout[-3000:]
    assert re.search(rf"^SKIPPED \[1\] .*: host not ready for sev-snp: host check {check} failed", auto.stdout,
                     re.M), auto.stdout[-3000:]
    demanded = _dma_snp_rows(tmp_path, "--sev-snp")
    assert demanded.returncode == 1 and "1 failed, 3 deselected" in demanded.stdout, demanded.stdout[-3000:]
    assert re.search(rf"^--sev-snp but host not ready for sev-snp: host check {check} failed", demanded.stdout,
                     re.M), demanded.stdout[-3000:]
    assert "test_dma_under_load[sev-snp-virtio-blk-8M]" in demanded.stdout
    assert qemu_processes("dma-sev-snp") == []
