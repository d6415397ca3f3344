"""--sev, --sev-es and --sev-snp on recorded hosts: the guest specs, witnesses,
DMA rows (and, for --sev-snp, the host checks) are selected, evaluated and pass
on a ready host; nothing is silently skipped. Under --sev-snp a host whose
IOMMU refuses SNP fails every SNP row naming snp_iommu, before any guest.

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


def _inner(tmp_path, host, mode, *extra, suites=("test_activation.py", "test_dma.py")):
    work = tmp_path / "suites"
    work.mkdir()
    for name in suites:
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
    # the SEV-SNP rows (activation 7 + its fixture test, DMA 3) skip, saying which flag asks for them
    assert re.search(r"\b31 passed, 11 skipped\b", out), out[-2000:]
    assert re.findall(r"^SKIPPED \[(\d+)\] .*: (.*)$", out, re.M) == [
        ("11", "--sev-es does not ask for SEV-SNP (use --sev-snp)")], out[-2000:]
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
    assert re.search(r"\b21 passed, 21 skipped\b", out), out[-2000:]  # 10 SEV-ES, 11 SEV-SNP
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


SNP_SUITES = ("test_host.py", "test_activation.py", "test_dma.py")


def _snp_inner(tmp_path, host):
    """The three suites under --sev-snp.  The SNP guest's one-image firmware: the last
    4 KiB of a real edk2-stable202405 AmdSevX64 build (fixtures/snp-kat, from
    virtee/sev-snp-measure's tests), whose footer table --ovmf-amdsev checks; the
    replay guests boot nothing, but the spec needs an image to name."""
    firmware = REPO / "fixtures" / "snp-kat" / "ovmf_AmdSev_suffix.bin"
    return _inner(tmp_path, str(REPO / "fixtures" / "hosts" / host), "sev-snp", f"--ovmf-amdsev={firmware}",
                  "-rsf", suites=SNP_SUITES)


def _host_rows(out: str) -> dict[str, str]:
    """test_host_check[name] -> PASSED / FAILED / SKIPPED, from -rA-less -q output's summary lines."""
    rows = {}
    for outcome, name in re.findall(r"^(PASSED|FAILED|SKIPPED|ERROR)\S* .*?test_host_check\[(\w+)\]", out, re.M):
        rows[name] = outcome
    return rows


@pytest.mark.timeout(600)
def test_sev_snp_mode_on_the_ready_host_runs_every_kind(tmp_path):
    """epyc-milan-snp-ready (sev, sev-es and sev-snp ready): --sev-snp demands the SNP
    rows and runs SEV-ES and SEV where the host can; every host check it needs passes."""
    from pytest_sev.host import CHECK_NAMES
    proc, seen = _snp_inner(tmp_path, "epyc-milan-snp-ready")
    out = proc.stdout
    assert proc.returncode == 0, out[-5000:]
    # two skips, each naming why: virsh (not installed; no mode needs it) and the SNP guest's
    # launch measurement, unknown by design (QEMU keeps none for SNP: the report carries it)
    skips = re.findall(r"^SKIPPED \[(\d+)\] (\S+?):\d+: (.*)$", out, re.M)
    assert [(n, where) for n, where, _ in skips] == [("1", "suites/test_activation.py"),
                                                      ("1", "suites/test_host.py")], skips
    assert skips[0][2].startswith("launch measurement could not answer"), skips
    assert "attestation report" in skips[0][2] and skips[1][2] == "virsh_sev not determined: virsh not installed"
    # host: every check but virsh_sev; activation: 4 kinds x 7, less the SNP measurement,
    # + the sev_guest and sev_snp_guest fixture tests; DMA: 4 kinds x 3 sizes
    want_passed = len(CHECK_NAMES) - 1 + 4 * 7 - 1 + 2 + 4 * 3
    assert re.search(rf"\b{want_passed} passed, 2 skipped\b", out), out[-3000:]
    assert "sev-snp:sev-snp:policy=196608" in seen, seen  # the activation guest, default SNP policy 0x30000
    assert re.search(r"^sev-snp:dma-sev-snp-virtio-blk-64M:policy=196608$", seen, re.M), seen
    for kind in ("sev", "sev-es"):  # the host can: they run too
        assert re.search(rf"^{kind}:dma-{kind}-virtio-blk-8M:policy=", seen, re.M), seen


@pytest.mark.timeout(600)
def test_sev_snp_mode_on_the_iommu_passthrough_host_fails_naming_snp_iommu(tmp_path):
    """epyc-milan-snp-iommu-pt: SEV and SEV-ES ready, SNP refused by the IOMMU driver.
    --sev-snp: the snp_iommu host check fails with its remedy, every SNP activation and
    DMA row fails naming snp_iommu (the first failure) and no SNP guest is asked for;
    the SEV and SEV-ES rows still run (the host can)."""
    proc, seen = _snp_inner(tmp_path, "epyc-milan-snp-iommu-pt")
    out = proc.stdout
    assert proc.returncode == 1, out[-5000:]
    failures = dict(re.findall(r"^_{3,} (test_\S+) _{3,}\n(.*)$", out, re.M))
    assert failures["test_host_check[snp_iommu]"].startswith(
        "--sev-snp needs it: host check snp_iommu failed: the IOMMU driver refused SNP "
        "('AMD-Vi: SEV-SNP: IOMMU is either disabled or configured in passthrough mode.')")
    snp_rows = {name: why for name, why in failures.items()
                if "sev-snp" in name or name == "test_sev_snp_guest_fixture"}
    assert len(snp_rows) == 7 + 1 + 3, sorted(failures)  # activation (+ its fixture test), DMA rows
    for name, why in snp_rows.items():  # the first failure of the host's SNP verdict, named
        assert why.startswith("--sev-snp but host not ready for sev-snp: host check snp_iommu failed: "
                              "the IOMMU driver refused SNP"), (name, why)
    host_failed = {n[len("test_host_check["):-1] for n in failures if n.startswith("test_host_check[")}
    # the checks --sev-snp needs that this host fails, or could not answer (no msr driver): not a pass either
    assert host_failed == {"snp_iommu", "snp_firmware", "kvm_amd_sev_snp", "kernel_log_snp", "qemu_snp",
                           "syscfg_snpen", "rmp_table"}, sorted(host_failed)
    assert "not determined: unknown" in failures["test_host_check[rmp_table]"]
    assert re.search(r"\b18 failed, 55 passed, 1 skipped\b", out), out[-2000:]
    assert not [line for line in seen.splitlines() if line.startswith("sev-snp:")], seen
    for kind in ("sev", "sev-es"):  # not demanded by --sev-snp, but the host can: they ran
        assert re.search(rf"^{kind}:dma-{kind}-virtio-blk-64M:policy=", seen, re.M), seen
    sev_failed = [n for n in failures if re.search(r"\[sev(-es)?[\]-](?!snp)", n)]
    assert sev_failed == [], sev_failed
