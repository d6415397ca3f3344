"""``python -m pytest_sev host``: report text, JSON, exit status by mode."""

import json
import subprocess
import sys
from pathlib import Path

from pytest_sev.cli.host import main

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"


def test_ready_host_exits_0(capsys):
    assert main(["host", "--recorded", str(HOSTS / "epyc-milan-6.8-ready")]) == 0
    out = capsys.readouterr().out
    assert "[ PASS ] sev_es_asids: 99" in out and out.rstrip().endswith("=> ready for sev-es")


def test_exit_status_follows_the_mode(capsys):
    host = str(HOSTS / "epyc-milan-sev-only")
    assert main(["--recorded", host]) == 1  # default mode sev-es
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("=> NOT ready for sev-es: host check sev_es_asids failed: 0 (CPUID")
    assert "SEV-ES ASID Space Limit" in out
    assert main(["--recorded", host, "--mode", "sev"]) == 0


def test_json(capsys):
    assert main(["--recorded", str(HOSTS / "epyc-rome-smee-off"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "sev-es" and doc["first_failure"] == "sev_firmware"
    assert doc["ready"] == {"sev": False, "sev-es": False, "sev-snp": False}
    # a failure decides (not-ready); what could not be answered is still listed
    assert doc["state"] == "not-ready"
    assert doc["unanswered"] == ["syscfg_smee", "kernel_log_sev", "kernel_log_sev_es"]
    assert doc["readiness"]["sev"]["state"] == "not-ready"
    assert doc["facts"]["cbitpos"] == "47"
    fw = next(c for c in doc["checks"] if c["name"] == "sev_firmware")
    assert fw["status"] == "fail" and "0x13" in fw["value"] and "SMEE" in fw["remedy"]


def test_this_machine_via_python_c():
    """The real probe from a separate interpreter, as a user would run it."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pytest_sev.cli.host import main; sys.exit(main(['host']))"],
        capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.splitlines()
    assert any(line.startswith("[ ") and "] cpu_vendor: " in line for line in lines), done.stdout + done.stderr
    first = next(line for line in lines if line.startswith("[ "))
    assert first.split("]")[0].strip("[ ") in ("PASS", "FAIL", "SKIP", "INFO")
    ready = lines[-1] == "=> ready for sev-es"
    assert done.returncode == (0 if ready else 1)
    sev_es_flag = " sev_es" in Path("/proc/cpuinfo").read_text()
    if not sev_es_flag:
        assert done.returncode == 1
