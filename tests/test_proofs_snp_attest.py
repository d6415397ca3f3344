"""The SNP report fetch over the console, and the live verdict on it, with guest doubles (no QEMU).

The double plays configfs-tsm as the kernel ABI describes it
(Documentation/ABI/testing/configfs-tsm: ``inblob`` write-only, ``outblob``
the report, ``auxblob`` the host's certificate table, ``generation``
counting writes, ``provider`` ``sev_guest``): reconstructed from that
document, not captured from a machine. The report it hands back is real:
google/go-sev-guest's Milan report and the VCEK that signed it
(fixtures/snp-kat, see its README), so the signature and chain checks run
on AMD-signed bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from pytest_sev.attest.snp_report import parse_report
from pytest_sev.attest.snp_roots import read_chain_file
from pytest_sev.errors import GuestTimeout
from pytest_sev.model.spec import Firmware, GuestSpec, SnpLaunch
from pytest_sev.proofs import snp_attest
from pytest_sev.proofs.snp_attest import (
    FetchResult,
    check_live_report,
    fetch_report,
    judge_generation,
    live_expectations,
    measurement_inputs,
    parse_hex_dump,
    parse_probe,
    printf_command,
)

KAT = Path(__file__).resolve().parents[1] / "fixtures" / "snp-kat"
REPORT = (KAT / "reports" / "gosev-milan-report.bin").read_bytes()
with warnings.catch_warnings():  # go-sev-guest's test VCEK has a negative serial (fixtures/snp-kat/README.md)
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    VCEK = x509.load_der_x509_certificate((KAT / "reports" / "gosev-milan-vcek.der").read_bytes())
MILAN = read_chain_file(KAT / "reports" / "ask_ark_milan.pem")
#: the nonce go-sev-guest's report carries (its REPORT_DATA)
REAL_NONCE = parse_report(REPORT).report_data
MEASURED = bytes.fromhex(json.loads((KAT / "kat.json").read_text())["reports"][0]["measurement"])
_OCTAL = re.compile(r"\\([0-7]{3})")


def od_dump(data: bytes) -> str:
    """What busybox ``od -An -v -tx1`` prints: 16 bytes a line, each as two hex digits after a space."""
    return "".join(" " + " ".join(f"{b:02x}" for b in data[i:i + 16]) + "\n" for i in range(0, len(data), 16))


@dataclass
class Tsm:
    """The guest side: what configfs-tsm and the PSP do in the double."""

    present: bool = True
    sev_guest: bool = False
    provider: str | None = "sev_guest"
    generation: bool = True
    deny_write: bool = False
    #: the PSP: nonce -> outblob (default: the real report when the nonce is its REPORT_DATA)
    psp: object = None
    auxblob: bytes | None = b""
    extra_writer: int = 0  #: writes another process makes between ours and the read
    read_error: str | None = None
    timeout_on: str | None = None  #: a command containing this raises GuestTimeout
    rmdir_rc: int = 0
    mkdir_error: str | None = None  #: what mkdir says instead of making the entry


class TsmGuest:
    """A GuestLike whose shell understands exactly the commands fetch_report sends."""

    def __init__(self, tsm: Tsm) -> None:
        self.tsm = tsm
        self.spec = SimpleNamespace(name="double")
        self.commands: list[str] = []
        self.entries: dict[str, dict] = {}
        self.removed: list[str] = []

    def run(self, cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        assert timeout > 0
        self.commands.append(cmd)
        t = self.tsm
        if t.timeout_on and t.timeout_on in cmd:
            raise GuestTimeout(f"timed out after {timeout:g}s waiting for command {cmd[:40]!r}")
        if cmd.startswith("grep -q ' /sys/kernel/config configfs '"):
            mount = "" if t.present else "mount: mounting configfs on /sys/kernel/config failed: No such device\n"
            return (mount + f"pytest-sev: tsm={'yes' if t.present else 'no'}\n"
                    f"pytest-sev: sev-guest={'yes' if t.sev_guest else 'no'}\n"), 0
        if cmd.startswith("mkdir "):
            path = cmd.split()[1]
            if t.mkdir_error:
                return t.mkdir_error.format(path=path) + "\n", 1
            assert path.startswith(snp_attest.TSM_REPORT_DIR + "/pytest-sev-") and path not in self.entries
            self.entries[path] = {"generation": 0, "inblob": None}
            return "", 0
        if cmd.startswith("rmdir "):
            path = cmd.split()[1]
            self.removed.append(path)
            if t.rmdir_rc == 0:
                del self.entries[path]
                return "", 0
            return f"rmdir: '{path}': Device or resource busy\n", t.rmdir_rc
        if cmd.startswith("for a in provider generation"):
            entry = self._entry_in(cmd)
            lines = []
            if t.provider is not None:
                lines.append(f"pytest-sev: provider={t.provider}")
            if t.generation:
                lines.append(f"pytest-sev: generation={entry['generation']}")
            return "\n".join(lines) + "\n", 0
        if cmd.startswith("printf '"):
            path = cmd.rsplit("> ", 1)[1]
            entry = self.entries[path.rsplit("/", 1)[0]]
            if t.deny_write:
                return f"sh: can't create {path}: Permission denied\n", 1
            escaped = cmd[len("printf '"):cmd.rindex("' > ")]
            assert _OCTAL.sub("", escaped) == "", "every byte goes as an octal escape"
            entry["inblob"] = bytes(int(o, 8) for o in _OCTAL.findall(escaped))
            entry["generation"] += 1 + t.extra_writer
            return "", 0
        if cmd.startswith("od -An -v -tx1 ") and cmd.endswith("/outblob"):
            entry = self._entry_in(cmd)
            if t.read_error:
                return f"od: {cmd.split()[-1]}: {t.read_error}\n", 1
            psp = t.psp or (lambda nonce: REPORT if nonce == REAL_NONCE else REPORT[:0x50] + nonce + REPORT[0x90:])
            return od_dump(psp(entry["inblob"])), 0
        if cmd.startswith("[ -e ") and "auxblob" in cmd:
            if t.auxblob is None:
                return "", 3
            return od_dump(t.auxblob), 0
        raise AssertionError(f"unexpected guest command {cmd!r}")

    def _entry_in(self, cmd: str) -> dict:
        for path, entry in self.entries.items():
            if path in cmd:
                return entry
        raise AssertionError(f"{cmd!r}: no such entry (made: {list(self.entries)})")


def fetch(tsm: Tsm, nonce: bytes = REAL_NONCE) -> tuple[FetchResult, TsmGuest]:
    guest = TsmGuest(tsm)
    return fetch_report(guest, nonce, timeout=30), guest  # type: ignore[arg-type]


# -- the fetch -------------------------------------------------------------------

def test_configfs_tsm_gives_the_real_report_and_cleans_up():
    result, guest = fetch(Tsm(auxblob=b"\x01" * 40))
    assert result.ok and result.status == "report", result.describe()
    assert result.report == REPORT and result.via == "configfs-tsm" and result.provider == "sev_guest"
    assert result.auxblob == b"\x01" * 40
    made = [c.split()[1] for c in guest.commands if c.startswith("mkdir ")]
    assert len(made) == 1 and guest.removed == made and guest.entries == {}
    assert result.notes == ()  # a clean removal says nothing
    # the nonce went in as the raw 64 bytes, not as text
    assert any(c.startswith("printf '") and c.endswith(f"{made[0]}/inblob") for c in guest.commands)


def test_each_fetch_makes_a_fresh_entry():
    guest = TsmGuest(Tsm())
    fetch_report(guest, REAL_NONCE, timeout=30)  # type: ignore[arg-type]
    fetch_report(guest, bytes(64), timeout=30)  # type: ignore[arg-type]
    made = [c.split()[1] for c in guest.commands if c.startswith("mkdir ")]
    assert len(set(made)) == 2 and guest.removed == made


def test_empty_auxblob_or_none_is_no_cert_table():
    result, _ = fetch(Tsm(auxblob=b""))
    assert result.ok and result.auxblob is None and "auxblob is empty" in result.describe()
    result, _ = fetch(Tsm(auxblob=None))
    assert result.ok and result.auxblob is None and "no auxblob attribute" in result.describe()


def test_configfs_absent_names_both_paths_and_the_kernel_symbols():
    result, guest = fetch(Tsm(present=False))
    assert result.status == "unknown" and result.report is None
    for what in ("/sys/kernel/config/tsm/report", "/dev/sev-guest", "CONFIG_TSM_REPORTS", "CONFIG_SEV_GUEST",
                 "No such device"):
        assert what in result.reason, what
    assert not any(c.startswith("mkdir") for c in guest.commands)


#: CAPTURED on this machine (2026-12-07): Debian bookworm-backports linux-image-6.12.95+deb12-cloud-amd64
#: booted as a plain guest (QEMU 10.0.2 TCG, -cpu EPYC, 2 vCPUs) with configfs, tsm and sev-guest in the
#: harness's initramfs; sev-guest does not load there ("insmod: can't insert ...sev-guest.ko: No such
#: device"), so configfs-tsm has no provider, and after the probe mounted configfs the real fetch_report
#: said exactly this for its mkdir (the entry name varies).
CAPTURED_NO_PROVIDER = "mkdir: can't create directory '{path}': No such device or address"


def test_configfs_tsm_without_provider_is_unknown_naming_it():
    result, guest = fetch(Tsm(mkdir_error=CAPTURED_NO_PROVIDER))
    assert result.status == "unknown" and result.via == "configfs-tsm"
    assert "No such device or address" in result.reason and "no provider" in result.reason
    assert not any(c.startswith(("printf", "od ", "rmdir")) for c in guest.commands)  # nothing was made
    other, _ = fetch(Tsm(mkdir_error="mkdir: can't create directory '{path}': Permission denied"))
    assert "Permission denied" in other.reason and "no provider" not in other.reason


def test_sev_guest_device_without_a_tool_is_unknown_saying_so():
    result, _ = fetch(Tsm(present=False, sev_guest=True))
    assert result.status == "unknown" and result.via == "/dev/sev-guest"
    assert "SNP_GET_REPORT ioctl" in result.reason and "no tool" in result.reason


def test_probe_without_answer_is_unknown():
    assert parse_probe("sh: syntax error\n").tsm is None
    guest = TsmGuest(Tsm())
    guest.run = lambda cmd, timeout=60.0: ("sh: syntax error\n", 2)  # type: ignore[method-assign]
    result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    assert result.status == "unknown" and "gave no answer" in result.reason


def test_write_denied_is_unknown_and_the_entry_removed():
    result, guest = fetch(Tsm(deny_write=True))
    assert result.status == "unknown" and "inblob failed (exit 1)" in result.reason
    assert "Permission denied" in result.reason
    assert guest.entries == {} and len(guest.removed) == 1


def test_read_error_is_unknown_and_the_entry_removed():
    result, guest = fetch(Tsm(read_error="Input/output error"))
    assert result.status == "unknown" and "Input/output error" in result.reason
    assert guest.entries == {} and len(guest.removed) == 1


def test_empty_outblob_is_unknown():
    result, guest = fetch(Tsm(psp=lambda nonce: b""))
    assert result.status == "unknown" and "outblob is empty" in result.reason and guest.entries == {}


@pytest.mark.parametrize("size", [0x4A0 - 1, 0x4A0 + 16, 32])
def test_wrong_size_is_unknown(size):
    result, guest = fetch(Tsm(psp=lambda nonce: (REPORT * 2)[:size]))
    assert result.status == "unknown" and f"{size} bytes" in result.reason and "1184" in result.reason
    assert guest.entries == {}


def test_another_writer_moving_generation_is_unknown():
    result, guest = fetch(Tsm(extra_writer=1))
    assert result.status == "unknown" and "generation went from 0 to 2" in result.reason
    assert guest.entries == {}


def test_no_generation_attribute_is_a_note_not_a_failure():
    result, _ = fetch(Tsm(generation=False))
    assert result.ok and "no generation attribute" in result.describe()


def test_other_provider_is_unknown():
    result, guest = fetch(Tsm(provider="tdx_guest"))
    assert result.status == "unknown" and "'tdx_guest'" in result.reason
    assert not any(c.startswith("printf") for c in guest.commands) and guest.entries == {}


def test_timeout_mid_fetch_is_unknown_and_cleanup_still_tried():
    result, guest = fetch(Tsm(timeout_on="/outblob"))
    assert result.status == "unknown" and "GuestTimeout" in result.reason
    assert len(guest.removed) == 1 and guest.entries == {}


def test_timeout_in_probe_or_mkdir_is_unknown():
    result, guest = fetch(Tsm(timeout_on="grep -q"))
    assert result.status == "unknown" and "probe" in result.reason and "GuestTimeout" in result.reason
    result, guest = fetch(Tsm(timeout_on="mkdir "))
    assert result.status == "unknown" and "mkdir" in result.reason and "GuestTimeout" in result.reason


def test_failed_cleanup_is_a_note():
    result, guest = fetch(Tsm(rmdir_rc=1))
    assert result.ok and "rmdir" in result.describe() and "busy" in result.describe()


def test_nonce_must_be_64_bytes():
    with pytest.raises(ValueError, match="64"):
        fetch_report(TsmGuest(Tsm()), b"short")  # type: ignore[arg-type]


# -- the pure pieces on real tool output --------------------------------------------

needs_busybox = pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox-static not installed")


@needs_busybox
@pytest.mark.parametrize("data", [bytes(range(64)), b"%d%s\\'\n\0" * 8, bytes(range(255, 191, -1))])
def test_printf_command_writes_the_raw_bytes_in_busybox_sh(tmp_path, data):
    out = tmp_path / "inblob"
    subprocess.run(["busybox", "sh", "-c", printf_command(data, str(out))], check=True, timeout=10)
    assert out.read_bytes() == data


@needs_busybox
def test_hex_dump_parser_reads_busybox_od(tmp_path):
    f = tmp_path / "outblob"
    f.write_bytes(REPORT)
    text = subprocess.run(["busybox", "sh", "-c", snp_attest.dump_command(str(f))], capture_output=True,
                          text=True, check=True, timeout=10).stdout
    assert parse_hex_dump(text) == REPORT
    assert parse_hex_dump(od_dump(REPORT)) == REPORT
    assert parse_hex_dump("od: /x: Input/output error\n") is None
    assert parse_hex_dump("") == b""


def test_judge_generation():
    assert judge_generation("0", "1") is None
    assert judge_generation(None, None) is None
    assert "0 to 2" in (judge_generation("0", "2") or "")
    assert "0 to 0" in (judge_generation("0", "0") or "")
    assert "cannot tell" in (judge_generation("0", None) or "")
    assert "not a number" in (judge_generation("x", "1") or "")


# -- the verdict ------------------------------------------------------------------

def snp_guest_spec(tmp_path: Path, *, policy: int = 0xB0000, firmware: Firmware | None = None,
                   kernel_hashes: bool = False, vcpus: int = 1, append: str = "") -> GuestSpec:
    kernel = tmp_path / "vmlinuz"
    initrd = tmp_path / "initrd"
    kernel.write_bytes(b"")  # the KAT's "empty" kernel and initrd
    initrd.write_bytes(b"")
    fw = firmware or Firmware("bios", code=KAT / "ovmf_OvmfX64_suffix.bin")
    return GuestSpec(name="snp", kernel=kernel, initrd=initrd, append=append, vcpus=vcpus, firmware=fw,
                     snp=SnpLaunch(cbitpos=51, policy=policy, kernel_hashes=kernel_hashes))


def lookup(cert=VCEK, source="test table", reason=""):
    def find(report, *, cert_table=None, cert_dir=None, product=None):
        return SimpleNamespace(cert=cert, source=source, reason=reason)
    return find


def verdict(tmp_path, fetched: FetchResult, nonce: bytes = REAL_NONCE, measured: bytes = MEASURED, **kw):
    spec = kw.pop("spec", None) or snp_guest_spec(tmp_path)
    return check_live_report(fetched, spec, nonce, find_vcek=kw.pop("find_vcek", lookup()),
                             measure=lambda inputs: measured, chains={"milan": MILAN}, **kw)


def test_live_report_every_check_holds(tmp_path):
    fetched, _ = fetch(Tsm())
    live = verdict(tmp_path, fetched)
    assert live.ok, live.problems()
    names = {c.name: c.state for c in live.verdict.checks if c.asked}
    assert names == {"signature": "ok", "chain": "ok", "vcek_tcb": "ok", "vcek_chip_id": "ok", "debug": "ok",
                     "report_data": "ok", "measurement": "ok", "policy": "ok", "vmpl": "ok"}
    assert live.verdict.product == "milan"


def test_nonce_mismatch_is_caught(tmp_path):
    fresh = bytes(range(64))
    fetched, _ = fetch(Tsm(psp=lambda nonce: REPORT))  # a "PSP" that ignores the nonce: a replayed report
    live = verdict(tmp_path, fetched, nonce=fresh)
    assert not live.ok and live.verdict.check("report_data").state == "failed"
    assert any(p.startswith("report_data: failed") for p in live.problems())


def test_measurement_mismatch_is_caught(tmp_path):
    fetched, _ = fetch(Tsm())
    live = verdict(tmp_path, fetched, measured=bytes(48))
    assert not live.ok and live.verdict.check("measurement").state == "failed"


def test_policy_other_than_launched_is_caught(tmp_path):
    fetched, _ = fetch(Tsm())
    live = verdict(tmp_path, fetched, spec=snp_guest_spec(tmp_path, policy=0xB0000 | (1 << 20)))
    assert not live.ok and live.verdict.check("policy").state == "failed"


def test_debug_allowed_only_when_launched_so(tmp_path):
    expect, _ = live_expectations(snp_guest_spec(tmp_path, policy=0x30000), REAL_NONCE, measure=lambda i: MEASURED)
    assert expect.allow_debug is False and expect.vmpl == 0 and expect.policy == 0x30000
    expect, _ = live_expectations(snp_guest_spec(tmp_path, policy=0xB0000), REAL_NONCE, measure=lambda i: MEASURED)
    assert expect.allow_debug is True


def test_min_tcb_asked_when_given(tmp_path):
    fetched, _ = fetch(Tsm())
    live = verdict(tmp_path, fetched, min_tcb={"snp": 5, "microcode": 68})
    assert live.ok and live.verdict.check("min_tcb").state == "ok"
    live = verdict(tmp_path, fetched, min_tcb={"snp": 6})
    assert not live.ok and live.verdict.check("min_tcb").state == "failed"
    assert not verdict(tmp_path, fetched).verdict.check("min_tcb").asked


def test_no_vcek_is_unknown_and_the_test_cannot_pass(tmp_path):
    fetched, _ = fetch(Tsm())
    live = verdict(tmp_path, fetched, find_vcek=lookup(cert=None, source="", reason="no certificate table, no dir"))
    assert not live.ok
    assert live.verdict.check("signature").state == "unknown" and live.verdict.check("chain").state == "unknown"
    assert any("no certificate table, no dir" in p for p in live.problems())


def test_a_measurement_that_cannot_be_computed_is_asked_unknown(tmp_path):
    fetched, _ = fetch(Tsm())
    spec = snp_guest_spec(tmp_path, firmware=Firmware("bios", code=tmp_path / "vmlinuz"))  # not an OVMF
    live = check_live_report(fetched, spec, REAL_NONCE, find_vcek=lookup(), chains={"milan": MILAN})
    m = live.verdict.check("measurement")
    assert m.asked and m.state == "unknown" and "could not be computed" in m.reason and not live.ok


def test_judge_live_by_mode(tmp_path):
    from pytest_sev.proofs.snp_attest import judge_live
    fetched, _ = fetch(Tsm())
    good = verdict(tmp_path, fetched)
    assert judge_live(fetched, good, demanded=True)[0] == "pass"
    assert judge_live(fetched, good, demanded=False)[0] == "pass"
    # a failed check fails in every mode
    bad = verdict(tmp_path, fetched, measured=bytes(48))
    for demanded in (True, False):
        outcome, why = judge_live(fetched, bad, demanded=demanded)
        assert outcome == "fail" and "measurement: failed" in why
    # an unknown check: fail under --sev-snp, skip in auto, never pass
    unsure = verdict(tmp_path, fetched, find_vcek=lookup(cert=None, source="", reason="none here"))
    assert judge_live(fetched, unsure, demanded=True)[0] == "fail"
    outcome, why = judge_live(fetched, unsure, demanded=False)
    assert outcome == "skip" and "signature: unknown" in why and "none here" in why
    # an unknown check beside a failed one fails in auto too
    both = verdict(tmp_path, fetched, measured=bytes(48), find_vcek=lookup(cert=None))
    assert judge_live(fetched, both, demanded=False)[0] == "fail"
    # no report at all
    none, _ = fetch(Tsm(present=False))
    assert judge_live(none, None, demanded=True)[0] == "fail"
    outcome, why = judge_live(none, None, demanded=False)
    assert outcome == "skip" and "CONFIG_TSM_REPORTS" in why
    assert judge_live(none, good, demanded=False)[0] == "skip"  # a verdict without a fetched report decides nothing


def test_check_needs_a_report(tmp_path):
    with pytest.raises(ValueError, match="no report"):
        check_live_report(FetchResult("unknown", "x"), snp_guest_spec(tmp_path), REAL_NONCE)


# -- the expected measurement from the launched spec: sev-snp-measure's known answers --

def _kat(name: str) -> bytes:
    case = next(c for c in json.loads((KAT / "kat.json").read_text())["digests"]["cases"] if c["name"] == name)
    return bytes.fromhex(case["digest"])


def test_expected_digest_ovmf_without_kernel_hashes(tmp_path):
    # OVMF.fd (no kernel-hashes page): the kernel boots but is not measured
    spec = snp_guest_spec(tmp_path, policy=0x30000)
    inputs = measurement_inputs(spec)
    assert (inputs.vcpus, inputs.vcpu_type, inputs.guest_features, inputs.kernel) == (1, "EPYC-v4", 1, None)
    expect, why = live_expectations(spec, REAL_NONCE)
    assert why is None and expect.measurement == _kat("test_snp_with_ovmfx64_without_kernel_feature_snp_only")


def test_expected_digest_with_kernel_hashes(tmp_path):
    amdsev = Firmware("amdsev", code=KAT / "ovmf_AmdSev_suffix.bin")
    spec = snp_guest_spec(tmp_path, policy=0x30000, firmware=amdsev, kernel_hashes=True,
                          append="console=ttyS0 loglevel=7")
    expect, why = live_expectations(spec, REAL_NONCE)
    assert why is None and expect.measurement == _kat("test_snp_guest_feature_snp_only")
    four = snp_guest_spec(tmp_path, policy=0x30000, firmware=amdsev, kernel_hashes=True, vcpus=4)
    assert live_expectations(four, REAL_NONCE)[0].measurement == _kat("test_snp_with_multiple_vcpus_feature_snp_only")
    with_swap = live_expectations(four, REAL_NONCE, guest_features=0x21)[0].measurement
    assert with_swap == _kat("test_snp_with_multiple_vcpus_default")


def test_plain_spec_has_nothing_measured(tmp_path):
    spec = snp_guest_spec(tmp_path).with_(snp=None)
    with pytest.raises(ValueError, match="not an SEV-SNP launch"):
        measurement_inputs(spec)


# -- the options: --snp-cert-dir, --snp-min-tcb ------------------------------------

def _config(**given):
    from pytest_sev.config import build_config
    return build_config(lambda name: given.get(name))


def test_snp_options_reach_the_run_config(tmp_path):
    cfg = _config(snp_cert_dir=str(tmp_path), snp_min_tcb="snp=5,microcode=68")
    assert cfg.snp_cert_dir == tmp_path.resolve() and cfg.snp_min_tcb == {"snp": 5, "microcode": 68}
    assert _config(snp_min_tcb="0x4405000000000002").snp_min_tcb.raw == 0x4405000000000002
    assert _config().snp_cert_dir is None and _config().snp_min_tcb is None


@pytest.mark.parametrize("given,message", [
    ({"snp_cert_dir": "/nonexistent/certs"}, "--snp-cert-dir /nonexistent/certs: not a directory"),
    ({"snp_min_tcb": "snp=five"}, "--snp-min-tcb: minimum TCB: snp='five' is not a number"),
    ({"snp_min_tcb": "bios=3"}, "--snp-min-tcb: minimum TCB: unknown component 'bios'"),
    ({"snp_min_tcb": "snp=300"}, "not a security patch level"),
])
def test_bad_snp_options_are_config_errors(given, message):
    from pytest_sev.errors import ConfigError
    with pytest.raises(ConfigError) as exc:
        _config(**given)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_cert_dir_that_is_a_file_or_unreadable(tmp_path, monkeypatch):
    from pytest_sev import config
    from pytest_sev.errors import ConfigError
    f = tmp_path / "vcek.der"
    f.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a directory"):
        _config(snp_cert_dir=str(f))
    # root reads any directory, so the refusal is shown with access() saying no, as for a user
    monkeypatch.setattr(config.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ConfigError, match="not readable"):
        _config(snp_cert_dir=str(tmp_path))


def test_bad_snp_option_stops_pytest_with_one_line(pytester):
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess("--snp-min-tcb=snp=x", "--snp-cert-dir=/nonexistent")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "--snp-" in errors[0], result.errlines
    assert "Traceback" not in result.stderr.str() and "must not run" not in result.stdout.str()
