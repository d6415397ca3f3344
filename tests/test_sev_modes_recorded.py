"""--sev and --sev-es on a recorded ready host: the SEV and SEV-ES guest specs,
witnesses and DMA rows are selected, evaluated and pass; nothing is silently
skipped.

The real suites run in an inner pytest (tests/replay_suites/replay_conftest.py, copied in as its conftest)
against the host report of fixtures/hosts/epyc-*-ready (RECONSTRUCTED hosts,
see their meta.json) with replay guests: plain witness replies captured, SEV
and SEV-ES replies reconstructed (fixtures/recorded/guest/provenance.json),
DMA kernel lines reconstructed in the recorded SEV logs' format. No QEMU runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _inner(tmp_path, host, mode, *extra):
    work = tmp_path / "suites"
    work.mkdir()
    for name in ("test_activation.py", "test_dma.py"):
        shutil.copy(REPO / "suites" / name, work / name)
    shutil.copy(REPO / "tests" / "replay_suites" / "replay_conftest.py", work / "conftest.py")
    seen = tmp_path / "seen.txt"
    env = dict(os.environ, REPLAY_HOST=str(REPO / "fixtures" / "hosts" / host),
               REPLAY_TESTS_DIR=str(REPO / "tests"), REPLAY_SEEN=str(seen))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(work), "-p", "no:cacheprovider", "-o", "sev_allure=false",
         f"--rootdir={tmp_path}", f"--guest-log-dir={tmp_path / 'logs'}", "-rs", "-q", f"--{mode}",
         "--dma-sizes=8M 64M auto", *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    return proc, seen.read_text() if seen.exists() else ""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("host", ["epyc-milan-6.8-ready", "epyc-rome-5.15-ready"])
def test_sev_es_mode_runs_every_kind(tmp_path, host):
    base = tmp_path / "baseline.json"
    proc, seen = _inner(tmp_path, host, "sev-es", f"--dma-record-baseline={base}")
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    # activation: 3 kinds x 7 tests + the sev_guest fixture test; DMA: 3 kinds x 3 sizes;
    # the SEV-SNP rows (7 + its fixture test) skip, saying which flag asks for them
    assert re.search(r"\b31 passed, 8 skipped\b", out), out[-2000:]
    assert re.findall(r"^SKIPPED \[(\d+)\] .*: (.*)$", out, re.M) == [
        ("8", "--sev-es does not ask for SEV-SNP (use --sev-snp)")], out[-2000:]
    for kind, policy in (("sev", "1"), ("sev-es", "5")):
        assert f"{kind}:{kind}:policy={policy}" in seen, seen  # the activation guest
        assert re.search(rf"^{kind}:dma-{kind}-virtio-blk-64M:policy={policy}$", seen, re.M), seen
    rows = json.loads(base.read_text())["rows"]  # the runner's baseline, for later --dma-baseline runs
    assert {k: v["outcome"] for k, v in rows.items()} == {
        f"{kind}/virtio-blk/{size}": outcome for kind in ("sev", "sev-es")
        for size, outcome in (("8M", "pressure"), ("64M", "clean"), ("auto", "clean"))}


@pytest.mark.timeout(600)
def test_a_recorded_baseline_is_enforced(tmp_path):
    """A baseline that says sev-es 64M stalls: the (clean) run now fails with both values."""
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"schema": 1, "rows": {"sev-es/virtio-blk/64M": {
        "outcome": "stall", "runner": "epyc-test", "recorded": "2026-12-01T00:00:00Z"}}}))
    proc, _ = _inner(tmp_path, "epyc-milan-6.8-ready", "sev-es", f"--dma-baseline={base}")
    assert proc.returncode == 1
    assert "1 failed, 30 passed" in proc.stdout, proc.stdout[-3000:]
    assert "pool 64M on virtio-blk (sev-es): expected stall, got clean (baseline recorded" in proc.stdout


@pytest.mark.timeout(600)
def test_sev_mode_runs_sev_and_says_why_not_sev_es(tmp_path):
    proc, seen = _inner(tmp_path, "epyc-milan-6.8-ready", "sev")
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"\b21 passed, 18 skipped\b", out), out[-2000:]
    assert out.count("--sev does not ask for SEV-ES (use --sev-es)") >= 1  # every skip names why
    assert out.count("--sev does not ask for SEV-SNP (use --sev-snp)") >= 1
    assert "sev:sev:policy=1" in seen and "sev-es:" not in seen


@pytest.mark.timeout(600)
def test_sev_es_mode_on_an_undetermined_host_fails_every_sev_test_naming_the_checks(tmp_path):
    """Issue 21, item 8: the ready Milan host after its kernel log rotated
    (firmware and kvm_amd ASID lines gone). Nothing failed, but --sev-es
    cannot know the host is ready: every SEV and SEV-ES test fails naming the
    checks it could not answer, and no SEV guest is made; plain rows still run."""
    from test_host_undetermined import rotated_log_host
    host = rotated_log_host(tmp_path / "host")
    proc, seen = _inner(tmp_path, str(host), "sev-es")
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:]
    # each failure: its heading, then the reason (pytrace=False) on the next line
    failures = dict(re.findall(r"^_{3,} (test_\S+) _{3,}\n(.*)$", out, re.M))
    sev_rows = {name: why for name, why in failures.items()
                if re.search(r"\[sev(-es)?[\]-](?!snp)", name) or name == "test_sev_guest_fixture"}
    assert len(sev_rows) == 8 + 7 + 3 + 3, sorted(failures)  # activation SEV (+ its fixture test), SEV-ES; DMA rows
    for name, why in sev_rows.items():
        kind = "sev-es" if "[sev-es" in name else "sev"
        assert why.startswith(f"--sev-es but host readiness for {kind} undetermined: sev_firmware (unknown ("), why
        assert "kernel_log_sev (unknown (" in why
    # the plain control (7) and the plain-forced DMA rows (3) still ran
    assert re.search(r"\b21 failed, 10 passed\b", out), out[-2000:]
    assert not [line for line in seen.splitlines() if line.startswith("sev")], seen  # no SEV guest was asked for
