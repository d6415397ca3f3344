"""The host kernel-log corpus (fixtures/host-logs/): real captures from public
threads, each parsed and judged as written by hand in corpus.toml."""

import tomllib
from pathlib import Path

import pytest

from pytest_sev.host.checks_kernel import asid_check, firmware_check
from pytest_sev.host.parse_log import parse_kernel_log
from pytest_sev.host.report import FOR_SEV, FOR_SEV_ES

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "host-logs"
ENTRIES = tomllib.loads((LOGS / "corpus.toml").read_text())["log"]
FEATURES = ("SEV", "SEV-ES", "SEV-SNP")


def _text(entry: dict) -> str:
    return (LOGS / f"{entry['name']}.txt").read_text()


def test_index_and_files_agree():
    names = [e["name"] for e in ENTRIES]
    assert len(names) == len(set(names))
    assert set(names) == {p.stem for p in LOGS.glob("*.txt")}


def test_corpus_size_and_spread():
    captured = [e for e in ENTRIES if e["provenance"] == "captured"]
    assert len(captured) >= 25
    majors = {e["kernel"][0] for e in captured}
    assert {"4", "5", "6"} <= majors
    classes = " ".join(e["class"] for e in captured)
    for kind in ("SEV only", "SEV-ES", "snp-capable", "INIT failure", "status error"):
        assert kind in classes


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_provenance_is_stated(entry):
    assert entry["provenance"] in ("captured", "fragment", "reconstructed")
    assert entry["source"] and entry["machine"] and entry["kernel"]
    if entry["provenance"] == "reconstructed":
        assert entry["name"].startswith("reconstructed-") and entry.get("from")
        assert entry["machine"].startswith("(reconstructed)")
    else:
        assert entry["source"].startswith("https://") and entry.get("via")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_parse(entry):
    want = entry["expect"]
    log = parse_kernel_log(_text(entry))
    for feature in FEATURES:
        if feature in want.get("absent", []):
            assert feature not in log.asids, feature
        if feature not in want:
            continue
        got, exp = log.asids[feature], want[feature]
        assert got.state == exp["state"], feature
        assert got.count == (None if exp["count"] == "none" else exp["count"]), feature
        assert (got.first, got.last) == (exp.get("first"), exp.get("last")), feature
    if "wording" in want:
        assert log.wording == want["wording"]
    firmware = ".".join(map(str, log.firmware.api)) if log.firmware else ""
    assert firmware == want["firmware"]
    if firmware:
        assert log.firmware.source == want["firmware_source"]
    assert (f"0x{log.sev_init.error:x}" if log.sev_init else "") == want.get("sev_init", "")
    if "sev_rc" in want:
        assert log.sev_init.rc == want["sev_rc"]
    assert (f"0x{log.snp_init.error:x}" if log.snp_init else "") == want.get("snp_init", "")
    assert [f"0x{code:x}" for _, code, _ in log.status_errors] == want.get("status", [])
    assert log.sev_psps == want.get("sev_psps", [])
    assert log.psps_without_sev == want.get("no_sev_psps", [])
    assert bool(log.missing_firmware) is want.get("missing_firmware", False)
    assert bool(log.snp_firmware_too_old) is want.get("snp_too_old", False)
    assert len(log.timeouts) == want.get("timeouts", 0)


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_checks(entry):
    log = parse_kernel_log(_text(entry))
    got = {
        "sev_firmware": firmware_check(log, ""),
        "kernel_log_sev": asid_check("kernel_log_sev", "SEV", log, "", FOR_SEV),
        "kernel_log_sev_es": asid_check("kernel_log_sev_es", "SEV-ES", log, "", FOR_SEV_ES),
    }
    assert {k: c.status for k, c in got.items()} == entry["expect"]["checks"]
    fw = got["sev_firmware"]
    if log.sev_init is not None:
        # The failure is named with its code whatever version line followed.
        assert fw.status == "fail" and f"0x{log.sev_init.error:x}" in fw.value and fw.remedy


def test_init_failure_names_the_code_and_remedy():
    """INIT error 0x1 followed by an API line: not ready, named, with a remedy."""
    entry = next(e for e in ENTRIES if e["name"] == "amdsev-189-init-0x1-then-api")
    fw = firmware_check(parse_kernel_log(_text(entry)), "")
    assert fw.status == "fail"
    assert "error 0x1 (INVALID_PLATFORM_STATE), rc -5" in fw.value
    assert "SEV API:1.55 build:7 read after the failure" in fw.value
    assert "SEV-SNP INIT failed: error 0x3" in fw.value
    assert "SEV-SNP" in fw.remedy and "firmware" in fw.remedy


@pytest.mark.parametrize("name, words", [
    ("sevtool-43-milan-7313-init-0x13", ("SMEE",)),
    ("sevtool-66-naples-fw-missing-0x8004", ("mailbox", "BIOS", "no SEV firmware file")),
    ("thomas-krenn-debian10-4.19-sev-fw-missing-0x13", ("SMEE",)),
    ("amdsev-184-psp-timeout-svm-prefix", ("did not answer",)),
    ("amdsev-202-genoa-init-0xe", ("WBINVD_REQUIRED",)),
    ("amdsev-246-siena-status-0x8003-no-timestamps", ("mailbox",)),
])
def test_remedies_follow_the_code(name, words):
    entry = next(e for e in ENTRIES if e["name"] == name)
    fw = firmware_check(parse_kernel_log(_text(entry)), "")
    for word in words:
        assert word in fw.remedy, fw.remedy


def test_second_psp_without_sev_is_not_a_failure():
    entry = next(e for e in ENTRIES if e["name"] == "amdsev-107-r6525-dual-psp-no-sev-on-second")
    assert firmware_check(parse_kernel_log(_text(entry)), "").status == "skip"
    only_no = parse_kernel_log("ccp 0000:a2:00.1: psp does not support SEV\n")
    assert firmware_check(only_no, "").status == "fail"  # no PSP at all has SEV


CAPS = LOGS / "domcaps"
CAP_ENTRIES = tomllib.loads((CAPS / "domcaps.toml").read_text())["caps"]


def test_domcaps_index_and_files_agree():
    assert {e["name"] for e in CAP_ENTRIES} == {p.stem for p in CAPS.glob("*.xml")}


@pytest.mark.parametrize("entry", CAP_ENTRIES, ids=[e["name"] for e in CAP_ENTRIES])
def test_domcapabilities(entry):
    from pytest_sev.host.parse_tools import parse_domcapabilities

    assert entry["provenance"] in ("captured", "documentation", "reconstructed")
    assert entry.get("source") or entry.get("from")
    caps = parse_domcapabilities((CAPS / f"{entry['name']}.xml").read_text())
    want = entry["expect"]
    assert caps.supported is want["supported"]
    for key in ("cbitpos", "reduced_phys_bits", "max_guests", "max_es_guests", "cpu0_id"):
        assert getattr(caps, key) == want.get(key), key
