"""The DMA matrix's run order (collection only, no guest): the large pools first
and no two rows of one kind side by side, because an xdist worker holds the
next test queued while it runs one (see suites/test_dma.py)."""

import itertools
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _collected(tmp_path, sizes: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_dma.py"), "--collect-only", "-q",
         "-p", "no:cacheprovider", "-o", "sev_allure=false", f"--dma-sizes={sizes}", f"--rootdir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return re.findall(r"test_dma_under_load\[([\w-]+)\]", proc.stdout)


def test_large_pools_first_and_no_kind_twice_in_a_row(tmp_path):
    ids = _collected(tmp_path, "1M 64M auto 8M")
    sizes = [i.rsplit("-", 1)[1] for i in ids]
    assert list(dict.fromkeys(sizes)) == ["auto", "64M", "8M", "1M"]
    kinds = [i.rsplit("-virtio-", 1)[0] for i in ids]
    assert all(a != b for a, b in itertools.pairwise(kinds)), ids
    # virtio-scsi only where virtio-blk is expected to stall, after every kind's virtio-blk row
    one_m = [i for i in ids if i.endswith("-1M")]
    assert one_m[:4] == [f"{k}-virtio-blk-1M" for k in ("plain-forced", "sev", "sev-es", "sev-snp")]
    assert all("virtio-scsi" in i for i in one_m[4:]) and "plain-forced-virtio-scsi-1M" in one_m[4:]
    assert not any("virtio-scsi" in i for i in ids if not i.endswith("-1M"))
