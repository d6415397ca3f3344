"""The DMA suite end to end, two pool sizes in parallel under pytest-xdist:
separate guests and disks, one merged summary, no QEMU left behind."""

import json
import os
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
