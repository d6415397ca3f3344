"""The mode table end to end on this host, with real guests: --sev-es on a
host that is not SEV-ES ready fails the SEV-ES guest tests fast (naming the
host check, no boot), while the plain control still passes; auto skips them
instead. (Moved from test_mode_semantics.py, which mutation testing runs and
so must not boot QEMU.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sev.host import decide, probe_host

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def reasons():
    """What the mode table says about an SEV-ES test here, in each mode."""
    report = probe_host()
    if report.ready_for("sev-es"):
        pytest.skip("this host is SEV-ES ready: the unready-host path cannot be shown here")
    return {mode: decide(mode, report, "sev-es").reason for mode in ("sev-es", "auto")}


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_activation.py"), "-p", "no:cacheprovider",
         "-o", "sev_allure=false", f"--rootdir={tmp_path}", f"--guest-log-dir={tmp_path / 'logs'}", "-q", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600)


def test_sev_es_mode_fails_fast_and_keeps_the_plain_control(tmp_path, reasons):
    proc = _run(tmp_path, "--sev-es")
    assert proc.returncode == 1, proc.stdout[-3000:]
    # plain control: 7 pass; SEV (7 + the sev_guest fixture test) and SEV-ES (7) fail fast;
    # SEV-SNP (7 + the sev_snp_guest fixture test) skip: --sev-es does not ask for it
    assert "15 failed, 7 passed, 8 skipped" in proc.stdout
    assert reasons["sev-es"].split(":")[0] in proc.stdout  # "--sev-es but host not ready for sev-es" (or undetermined)
    assert reasons["sev-es"][:200] in proc.stdout.replace("\n", "")
    # only the plain control booted: the SEV-ES subject never made a guest
    booted = [d.name for d in (tmp_path / "logs").glob("*") if d.is_dir()]
    assert not any("sev" in name for name in booted), booted


def test_auto_mode_skips_naming_the_check(tmp_path, reasons):
    proc = _run(tmp_path, "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:]
    # plain control: 7 pass; SEV (8), SEV-ES (7) and SEV-SNP (8) skip naming the check
    assert "7 passed, 23 skipped" in proc.stdout
    assert reasons["auto"][:120] in proc.stdout
