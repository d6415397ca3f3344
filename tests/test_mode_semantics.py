"""The mode table end to end on this host: --sev-es on a host that is not
SEV-ES ready fails the SEV-ES guest tests fast (naming the host check, no
boot), while the plain control still passes; auto skips them instead."""

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sev.host import probe_host

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def first_failure():
    check = probe_host().first_failure("sev-es")
    if check is None:
        pytest.skip("this host is SEV-ES ready: the unready-host path cannot be shown here")
    return check


def _run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites" / "test_activation.py"), "-p", "no:cacheprovider",
         "-o", "sev_allure=false", f"--rootdir={tmp_path}", f"--guest-log-dir={tmp_path / 'logs'}", "-q", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600)


def test_sev_es_mode_fails_fast_and_keeps_the_plain_control(tmp_path, first_failure):
    proc = _run(tmp_path, "--sev-es")
    assert proc.returncode == 1, proc.stdout[-3000:]
    # plain control: 7 pass; SEV (7 + the sev_guest fixture test) and SEV-ES (7) fail fast
    assert "15 failed, 7 passed" in proc.stdout
    assert f"--sev-es but host not ready for sev-es: host check {first_failure.name} failed" in proc.stdout
    # only the plain control booted: the SEV-ES subject never made a guest
    booted = [d.name for d in (tmp_path / "logs").glob("*") if d.is_dir()]
    assert not any("sev" in name for name in booted), booted


def test_auto_mode_skips_naming_the_check(tmp_path, first_failure):
    proc = _run(tmp_path, "-rs")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "7 passed, 15 skipped" in proc.stdout
    assert f"host not ready for sev-es: host check {first_failure.name} failed" in proc.stdout
