"""Each decision of the live SNP report fetch and its verdict (:mod:`pytest_sev.proofs.snp_attest`).

Why a second file: ``test_proofs_snp_attest`` proves the fetch against a
configfs-tsm double and the verdict on the real Milan report; here every
branch is taken on its own, asserting the status and the reason it gives, so
that flipping any one decision (a report where there is none, unknown turned
into ok) fails a test. The guest double is that file's ``TsmGuest``.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_proofs_snp_attest import KAT, MEASURED, MILAN, REAL_NONCE, REPORT, VCEK, Tsm, TsmGuest, fetch, lookup, od_dump
from test_proofs_snp_attest import snp_guest_spec as spec_of

from pytest_sev.attest.errors import FormatError
from pytest_sev.attest.snp_report import parse_report
from pytest_sev.attest.snp_verify import Check, SnpVerdict
from pytest_sev.errors import GuestTimeout
from pytest_sev.model.spec import Disk, Firmware
from pytest_sev.proofs import snp_attest
from pytest_sev.proofs.snp_attest import (
    FetchResult,
    LiveVerdict,
    Probe,
    check_live_report,
    describe_inputs,
    dump_command,
    fetch_report,
    judge_generation,
    judge_live,
    live_expectations,
    measurement_inputs,
    parse_attributes,
    parse_hex_dump,
    parse_probe,
    printf_command,
)

TSM = "/sys/kernel/config/tsm/report"


LONG = "the shell went away " + "x" * 200 + "\nsecond line"


def _failing(tsm: Tsm, on: str, answer: BaseException | tuple[str, int]) -> TsmGuest:
    """The double, but a command starting with *on* raises *answer* (an exception) or prints it (text, exit)."""
    guest = TsmGuest(tsm)
    run = guest.run

    def failing(cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        if not cmd.startswith(on):
            return run(cmd, timeout)
        guest.commands.append(cmd)
        if isinstance(answer, BaseException):
            raise answer
        return answer
    guest.run = failing  # type: ignore[method-assign]
    return guest


def _amdsev_spec(tmp_path: Path, **kw: Any) -> Any:
    return spec_of(tmp_path, firmware=Firmware("amdsev", code=KAT / "ovmf_AmdSev_suffix.bin"), kernel_hashes=True, **kw)


def _entry(guest: TsmGuest) -> str:
    return next(c.split()[1] for c in guest.commands if c.startswith("mkdir "))


# -- FetchResult -------------------------------------------------------------------

def test_fetch_result_ok_only_with_a_report() -> None:
    assert FetchResult("report", report=b"r").ok
    assert not FetchResult("report").ok
    assert not FetchResult("unknown", report=b"r").ok


def test_fetch_result_describe() -> None:
    assert FetchResult("report", report=b"abc", via="v").describe() == "report of 3 bytes via v, no auxblob"
    assert FetchResult("report", report=b"abc", via="v", auxblob=b"xy", notes=("n1", "n2")).describe() == \
        "report of 3 bytes via v, auxblob 2 bytes (n1; n2)"
    assert FetchResult("unknown", "why").describe() == "unknown: why"
    assert FetchResult("unknown", "why", notes=("n",)).describe() == "unknown: why (n)"


# -- the pure parsers --------------------------------------------------------------

def test_parse_probe() -> None:
    said = " mount: failed \n\npytest-sev: tsm=yes\npytest-sev: sev-guest=no\nother\n"
    assert parse_probe(said) == Probe(True, False, "mount: failed; other")
    assert parse_probe("pytest-sev: tsm=no\npytest-sev: sev-guest=yes\n") == Probe(False, True, "")
    assert parse_probe("pytest-sev: tsm=maybe\n") == Probe(None, None, "pytest-sev: tsm=maybe")
    assert parse_probe("x" * 400).said == "x" * 300


def test_parse_hex_dump() -> None:
    assert parse_hex_dump(" 00 0a FF\n\n 10\n") == bytes([0, 10, 255, 16])
    assert parse_hex_dump(" 00 0a0\n") is None
    assert parse_hex_dump(" 00 0g\n") is None
    assert parse_hex_dump(" 00\nod: x: error\n") is None


def test_parse_attributes() -> None:
    text = "junk\n  pytest-sev: provider= sev_guest \npytest-sev: generation=3\npytest-sev: other=1\n"
    assert parse_attributes(text) == {"provider": "sev_guest", "generation": "3"}


def test_commands() -> None:
    assert printf_command(b"\x00A%\xff", "/x/inblob") == "printf '\\000\\101\\045\\377' > /x/inblob"
    assert dump_command("/x/outblob") == "od -An -v -tx1 /x/outblob"
    assert snp_attest._attrs_command("/e") == (
        "for a in provider generation; do [ -r /e/$a ] && echo \"pytest-sev: $a=$(cat /e/$a)\"; done; true")


def test_judge_generation_messages() -> None:
    assert judge_generation("4", "5") is None
    assert judge_generation("4", "6", writes=2) is None
    assert judge_generation("4", "5", writes=2) == (
        "generation went from 4 to 5, not 6: another writer changed the entry, the report may not carry this nonce")
    assert judge_generation(None, "1") == "generation read None before and '1' after the write: cannot tell who wrote"
    assert judge_generation("1", None) == "generation read '1' before and None after the write: cannot tell who wrote"
    assert judge_generation("1", "x") == "generation is not a number ('1', 'x')"


# -- the fetch ---------------------------------------------------------------------

def test_a_good_fetch_is_a_report_with_everything_said() -> None:
    result, guest = fetch(Tsm(auxblob=b"\x02" * 8))
    assert result == FetchResult("report", "", REPORT, b"\x02" * 8, "sev_guest", "configfs-tsm", ())
    entry = _entry(guest)
    assert entry.startswith(f"{TSM}/pytest-sev-") and len(entry) == len(TSM) + len("/pytest-sev-") + 16
    assert guest.commands[-1] == f"rmdir {entry}"


def test_no_provider_attribute_is_still_asked() -> None:
    result, _ = fetch(Tsm(provider=None))
    assert result.ok and result.provider is None


def _timeouts_seen() -> tuple[TsmGuest, list[float]]:
    """A guest stand-in that records the timeout of every command it is given."""
    seen: list[float] = []
    guest = TsmGuest(Tsm())
    run = guest.run

    def timed(cmd: str, timeout: float = 60.0) -> tuple[str, int]:
        seen.append(timeout)
        return run(cmd, timeout)
    guest.run = timed  # type: ignore[method-assign]
    return guest, seen


def test_every_command_gets_at_least_the_floor_of_time() -> None:
    guest, seen = _timeouts_seen()
    assert fetch_report(guest, REAL_NONCE, timeout=0.01).ok  # type: ignore[arg-type]
    assert seen and all(t == 5.0 for t in seen)
    seen.clear()
    fetch_report(guest, REAL_NONCE, timeout=100)  # type: ignore[arg-type]
    assert all(90 < t <= 100 for t in seen)


def test_nonce_size_refused_naming_it() -> None:
    with pytest.raises(ValueError) as err:
        fetch_report(TsmGuest(Tsm()), bytes(65))  # type: ignore[arg-type]
    assert str(err.value) == "the nonce is 65 bytes; configfs-tsm's inblob takes 64"


def test_probe_that_did_not_run() -> None:
    guest = _failing(Tsm(), "grep -q", GuestTimeout(LONG))
    result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    assert result == FetchResult("unknown", f"the probe for {TSM} and /dev/sev-guest did not run: GuestTimeout: "
                                            f"{LONG[:160]}")


def test_probe_answers() -> None:
    guest = SimpleNamespace(spec=SimpleNamespace(name="g"))
    deadline = snp_attest.Deadline(10)
    half = snp_attest._fetch_by_probe(guest, Probe(True, None, "odd"), REAL_NONCE, deadline)  # type: ignore[arg-type]
    assert half == FetchResult("unknown", f"the probe for {TSM} and /dev/sev-guest gave no answer (output: 'odd')")
    other_half = snp_attest._fetch_by_probe(guest, Probe(None, True, "x" * 300), REAL_NONCE, deadline)  # type: ignore[arg-type]
    assert other_half.reason.endswith(f"(output: {'x' * 200!r})")
    device = snp_attest._fetch_by_probe(guest, Probe(False, True, "said"), REAL_NONCE, deadline)  # type: ignore[arg-type]
    assert device == FetchResult(
        "unknown", f"{TSM} is absent (no configfs-tsm: CONFIG_TSM_REPORTS, Linux >= 6.7) and /dev/sev-guest needs "
                   "the SNP_GET_REPORT ioctl, which no tool in this guest issues (busybox has none; snpguest would)"
                   "; the guest said: said", via="/dev/sev-guest")
    neither = snp_attest._fetch_by_probe(guest, Probe(False, False, ""), REAL_NONCE, deadline)  # type: ignore[arg-type]
    assert neither == FetchResult("unknown", f"neither configfs-tsm ({TSM}) nor /dev/sev-guest is in this guest: its "
                                             f"kernel needs {snp_attest.KERNEL_SYMBOLS}")


def test_mkdir_refused_or_not_run() -> None:
    result, guest = fetch(Tsm(mkdir_error="mkdir: can't create directory '{path}': No such device or address"))
    entry = _entry(guest)
    assert result == FetchResult("unknown", f"mkdir {entry} failed (exit 1): mkdir: can't create directory "
                                            f"'{entry}': No such device or address{snp_attest.NO_PROVIDER_HINT}",
                                 via="configfs-tsm")
    result, guest = fetch(Tsm(timeout_on="mkdir "))
    assert result == FetchResult("unknown", f"mkdir {_entry(guest)} did not run: GuestTimeout", via="configfs-tsm")


def test_what_the_guest_said_is_quoted_up_to_a_limit() -> None:
    said = "s" * 300 + "\n"
    result, guest = fetch(Tsm(mkdir_error=said))
    assert result.reason == f"mkdir {_entry(guest)} failed (exit 1): {'s' * 200}"
    for prefix, reason in [("printf", "writing the nonce to {e}/inblob failed (exit 1): {s}"),
                           ("od -An -v -tx1 ", "reading {e}/outblob failed (exit 1): {s}")]:
        guest = _failing(Tsm(), prefix, (said, 1))
        result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
        assert result.reason == reason.format(e=_entry(guest), s="s" * 200)
    guest = _failing(Tsm(), "od -An -v -tx1 ", (said, 0))
    assert fetch_report(guest, REAL_NONCE).reason == \
        f"{_entry(guest)}/outblob did not read as bytes: {'s' * 200!r}"  # type: ignore[arg-type]
    for prefix, rc, note in [("[ -e ", 1, f"reading auxblob failed (exit 1): {'s' * 120}"),
                             ("[ -e ", 0, f"auxblob did not read as bytes: {'s' * 120!r}")]:
        result = fetch_report(_failing(Tsm(), prefix, (said, rc)), REAL_NONCE)  # type: ignore[arg-type]
        assert result.notes == (note,)
    guest = _failing(Tsm(auxblob=b"\x01"), "rmdir", (said, 1))
    result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    assert result.notes == (f"rmdir {_entry(guest)} failed (exit 1): {'s' * 120}",)


def test_the_whole_fetch_has_two_minutes_by_default() -> None:
    guest, seen = _timeouts_seen()
    assert fetch_report(guest, REAL_NONCE).ok  # type: ignore[arg-type]
    assert seen and all(110 < t <= 120 for t in seen)


def test_other_provider_names_it() -> None:
    result, guest = fetch(Tsm(provider="tdx_guest"))
    assert result == FetchResult("unknown", "the configfs-tsm provider is 'tdx_guest', not 'sev_guest': its outblob "
                                            "is not an SNP report", via="configfs-tsm", provider="tdx_guest")
    assert guest.entries == {}


def test_write_and_read_failures_name_the_file_and_exit() -> None:
    result, guest = fetch(Tsm(deny_write=True))
    entry = _entry(guest)
    assert result == FetchResult("unknown", f"writing the nonce to {entry}/inblob failed (exit 1): sh: can't create "
                                            f"{entry}/inblob: Permission denied", via="configfs-tsm",
                                 provider="sev_guest")
    result, guest = fetch(Tsm(read_error="I/O error"))
    entry = _entry(guest)
    assert result == FetchResult("unknown", f"reading {entry}/outblob failed (exit 1): od: {entry}/outblob: I/O error",
                                 via="configfs-tsm", provider="sev_guest")


def test_outblob_that_is_not_a_report() -> None:
    guest = _failing(Tsm(), "od -An -v -tx1 ", ("od: short read\n", 0))
    result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    entry = _entry(guest)
    assert result == FetchResult("unknown", f"{entry}/outblob did not read as bytes: 'od: short read'",
                                 via="configfs-tsm", provider="sev_guest")
    result, guest = fetch(Tsm(psp=lambda nonce: b""))
    assert result == FetchResult("unknown", f"{_entry(guest)}/outblob is empty: the guest's PSP gave no report",
                                 via="configfs-tsm", provider="sev_guest")
    result, guest = fetch(Tsm(psp=lambda nonce: REPORT[:100]))
    assert result == FetchResult("unknown", f"{_entry(guest)}/outblob is 100 bytes, an SNP report is 1184 (0x4a0)",
                                 via="configfs-tsm", provider="sev_guest")


def test_generation_that_moved_or_is_missing() -> None:
    result, _ = fetch(Tsm(extra_writer=1))
    assert result == FetchResult("unknown", judge_generation("0", "2") or "", via="configfs-tsm", provider="sev_guest")
    result, _ = fetch(Tsm(generation=False, auxblob=b"\x01"))
    assert result.ok and result.notes == (
        "the entry has no generation attribute: a concurrent writer could not be ruled out",)


def test_auxblob_reads() -> None:
    result, _ = fetch(Tsm(auxblob=None))
    assert result.ok and (result.auxblob, result.notes) == (None, ("no auxblob attribute",))
    result, _ = fetch(Tsm(auxblob=b""))
    assert (result.auxblob, result.notes) == (None, ("auxblob is empty: the host gave no certificate table",))
    for out, rc, note in [("cat: denied\n", 1, "reading auxblob failed (exit 1): cat: denied"),
                          ("not hex\n", 0, "auxblob did not read as bytes: 'not hex'")]:
        guest = _failing(Tsm(), "[ -e ", (out, rc))
        result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
        assert result.ok and (result.auxblob, result.notes) == (None, (note,))
    # the command: exit 3 when the attribute is absent, else the dump
    _, guest = fetch(Tsm(auxblob=b"\x01"))
    entry = _entry(guest)
    assert f"[ -e {entry}/auxblob ] || exit 3; od -An -v -tx1 {entry}/auxblob" in guest.commands


def test_a_command_that_did_not_finish_is_unknown_and_the_entry_removed() -> None:
    guest = _failing(Tsm(), "od ", GuestTimeout(LONG))
    result = fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    entry = _entry(guest)
    assert result == FetchResult("unknown", f"a guest command on {entry} did not finish: GuestTimeout: {LONG[:160]}",
                                 via="configfs-tsm")
    assert guest.removed == [entry]


def test_an_unforeseen_error_still_removes_the_entry() -> None:
    guest = _failing(Tsm(), "printf", RuntimeError("the double broke"))
    with pytest.raises(RuntimeError, match="the double broke"):
        fetch_report(guest, REAL_NONCE)  # type: ignore[arg-type]
    assert guest.removed == [_entry(guest)] and guest.entries == {}


def test_cleanup_that_fails_or_does_not_run_is_a_note() -> None:
    result, guest = fetch(Tsm(rmdir_rc=2, auxblob=b"\x01"))
    entry = _entry(guest)
    assert result.ok and result.notes == (f"rmdir {entry} failed (exit 2): rmdir: '{entry}': Device or resource busy",)
    result, guest = fetch(Tsm(timeout_on="rmdir ", auxblob=b"\x01"))
    assert result.ok and result.notes == (f"rmdir {_entry(guest)} did not run (GuestTimeout)",)
    # a note on an unknown result too, after its own notes
    result, guest = fetch(Tsm(rmdir_rc=1, psp=lambda nonce: b""))
    assert result.status == "unknown" and len(result.notes) == 1 and result.notes[0].startswith("rmdir ")
    noted = snp_attest._remove_entry(TsmGuest(Tsm(timeout_on="rmdir")), "/e", snp_attest.Deadline(5))  # type: ignore[arg-type]
    assert noted == "rmdir /e did not run (GuestTimeout)"


# -- what was launched ---------------------------------------------------------------

def test_measurement_inputs(tmp_path: Path) -> None:
    spec = _amdsev_spec(tmp_path, vcpus=2, append="console=ttyS0")
    inputs = measurement_inputs(spec, 0x21)
    assert (inputs.ovmf, inputs.vcpus, inputs.vcpu_type, inputs.guest_features) == \
        (str(spec.firmware.code), 2, "EPYC-v4", 0x21)
    assert (inputs.kernel, inputs.initrd, inputs.append) == (str(spec.kernel), str(spec.initrd), "console=ttyS0")
    no_initrd = measurement_inputs(spec.with_(initrd=None))
    assert (no_initrd.kernel, no_initrd.initrd, no_initrd.guest_features) == (str(spec.kernel), None, 1)
    unhashed = measurement_inputs(spec_of(tmp_path, append="x"))
    assert (unhashed.kernel, unhashed.initrd, unhashed.append) == (None, None, None)
    no_kernel = measurement_inputs(spec.with_(kernel=None, initrd=None, disks=(Disk(tmp_path / "disk"),)))
    assert (no_kernel.kernel, no_kernel.initrd, no_kernel.append) == (None, None, None)
    with pytest.raises(ValueError) as err:
        measurement_inputs(spec.with_(snp=None))
    assert str(err.value) == "guest snp is not an SEV-SNP launch: nothing was measured"
    with pytest.raises(ValueError) as err:
        # a valid spec always has one (SpecError otherwise): the guard is for a spec made some other way
        measurement_inputs(SimpleNamespace(name="snp", snp=spec.snp, firmware=SimpleNamespace(code=None)))  # type: ignore[arg-type]
    assert str(err.value) == "guest snp has no -bios firmware image to measure"


def test_describe_inputs(tmp_path: Path) -> None:
    spec = _amdsev_spec(tmp_path, append="a b")
    inputs = measurement_inputs(spec, 0x21)
    assert describe_inputs(spec, 0x21) == (f"OVMF {inputs.ovmf}, {inputs.describe_vcpus()}, features "
                                           f"{snp_attest.describe_guest_features(0x21)}, {inputs.describe_kernel()}")
    assert "features " + snp_attest.describe_guest_features(1) in describe_inputs(spec)


def test_live_expectations(tmp_path: Path) -> None:
    seen: list[Any] = []

    def measure(inputs: Any) -> bytes:
        seen.append(inputs)
        return MEASURED
    spec = spec_of(tmp_path, policy=0x30000)
    expect, why = live_expectations(spec, REAL_NONCE, min_tcb={"snp": 1}, guest_features=0x21, measure=measure)
    assert why is None and seen == [measurement_inputs(spec, 0x21)]
    assert (expect.nonce, expect.measurement, expect.policy, expect.vmpl, expect.min_tcb, expect.allow_debug) == \
        (REAL_NONCE, MEASURED, 0x30000, 0, {"snp": 1}, False)
    assert live_expectations(spec_of(tmp_path, policy=0xB0000), REAL_NONCE, measure=measure)[0].allow_debug is True
    assert live_expectations(spec, REAL_NONCE, measure=measure)[0].min_tcb is None
    with pytest.raises(AssertionError) as err:
        live_expectations(spec.with_(snp=None), REAL_NONCE, measure=measure)
    assert str(err.value).splitlines()[0] == "live_expectations needs an SNP launch"  # pytest may add its explanation
    for exc in (FormatError("not an OVMF"), ValueError("not an OVMF"), OSError("not an OVMF")):
        def broken(inputs: Any, exc: Exception = exc) -> bytes:
            raise exc
        expect, why = live_expectations(spec, REAL_NONCE, measure=broken)
        assert why == "the expected measurement could not be computed: not an OVMF"
        assert expect.measurement is None and expect.nonce == REAL_NONCE


# -- the verdict on a live report -------------------------------------------------------

def _live(*states: tuple[str, str], source: str = "", reason: str = "") -> LiveVerdict:
    checks = tuple(Check(name, state, f"{name} {state}") for name, state in states)
    return LiveVerdict(SnpVerdict(parse_report(REPORT), "milan", checks), source, reason)


def test_live_verdict_problems_and_describe() -> None:
    good = _live(("signature", "ok"), ("chain", "ok"))
    assert good.ok and good.problems() == [] and good.describe() == "signature: ok (signature ok); chain: ok (chain ok)"
    unasked = replace(good, verdict=replace(good.verdict, checks=(*good.verdict.checks,
                                                                   Check("vmpl", "unknown", "x", asked=False))))
    assert unasked.describe() == good.describe()
    no_vcek = _live(("signature", "unknown"), ("chain", "ok"))
    assert not no_vcek.ok
    assert no_vcek.problems() == ["signature: unknown (signature unknown)", "VCEK: none found (source: none)"]
    no_chain = _live(("signature", "ok"), ("chain", "unknown"), source="dir", reason="stale")
    assert no_chain.problems() == ["chain: unknown (chain unknown)", "VCEK: stale (source: dir)"]
    failed = _live(("signature", "failed"), ("measurement", "unknown"))
    assert failed.problems() == ["signature: failed (signature failed)", "measurement: unknown (measurement unknown)"]


def test_judge_live_messages() -> None:
    report = FetchResult("report", report=REPORT, via="configfs-tsm")
    none = FetchResult("unknown", "no tsm")
    assert judge_live(none, None, demanded=True) == ("fail", "no SNP report from the guest: unknown: no tsm")
    assert judge_live(none, None, demanded=False) == ("skip", "no SNP report from the guest: unknown: no tsm")
    assert judge_live(report, None, demanded=False)[0] == "skip"
    good = _live(("signature", "ok"))
    assert judge_live(report, good, demanded=False) == ("pass", "signature: ok (signature ok)")
    unknown = _live(("signature", "ok"), ("measurement", "unknown"), ("vmpl", "unknown"))
    message = ("SNP report checks that do not hold:\n  measurement: unknown (measurement unknown)\n"
               "  vmpl: unknown (vmpl unknown)")
    assert judge_live(report, unknown, demanded=False) == ("skip", message)
    assert judge_live(report, unknown, demanded=True) == ("fail", message)
    failed = _live(("measurement", "unknown"), ("policy", "failed"))
    assert judge_live(report, failed, demanded=False)[0] == "fail"


def test_default_vcek_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_sev.attest.snp_vcek_source import find_vcek
    assert snp_attest._default_find_vcek() is find_vcek
    monkeypatch.setitem(sys.modules, "pytest_sev.attest.snp_vcek_source", None)  # an import of it now fails
    assert snp_attest._default_find_vcek() is None


def test_lookup_vcek() -> None:
    report = parse_report(REPORT)
    assert snp_attest._lookup_vcek(None, report, b"t", None) == (
        None, "", "no VCEK source: pytest_sev.attest.snp_vcek_source is not installed")
    asked: list[Any] = []

    def find(r: Any, *, cert_table: Any = None, cert_dir: Any = None) -> Any:
        asked.append((r, cert_table, cert_dir))
        return SimpleNamespace(cert=VCEK, source="table", reason="found")
    assert snp_attest._lookup_vcek(find, report, b"t", Path("/d")) == (VCEK, "table", "found")
    assert asked == [(report, b"t", Path("/d"))]
    for exc in (FormatError("bad table"), OSError("bad table"), ValueError("bad table")):
        def broken(r: Any, *, cert_table: Any = None, cert_dir: Any = None, exc: Exception = exc) -> Any:
            raise exc
        assert snp_attest._lookup_vcek(broken, report, None, None) == (None, "", "the VCEK lookup failed: bad table")


def test_check_live_report_needs_a_report(tmp_path: Path) -> None:
    for fetched in (FetchResult("unknown", "x"), FetchResult("unknown", "x", report=REPORT)):
        with pytest.raises(ValueError) as err:
            check_live_report(fetched, spec_of(tmp_path), REAL_NONCE)
        assert str(err.value) == "no report to check: unknown: x"


def test_check_live_report_passes_what_it_was_given(tmp_path: Path) -> None:
    fetched = FetchResult("report", report=REPORT, auxblob=b"aux", via="configfs-tsm")
    asked: list[Any] = []
    measured: list[Any] = []

    def find(r: Any, *, cert_table: Any = None, cert_dir: Any = None) -> Any:
        asked.append((r.raw, cert_table, cert_dir))
        return SimpleNamespace(cert=VCEK, source="the table", reason="in it")

    def measure(inputs: Any) -> bytes:
        measured.append(inputs.guest_features)
        return MEASURED
    live = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, cert_dir=tmp_path, min_tcb={"snp": 99},
                             guest_features=0x21, find_vcek=find, measure=measure, chains={"milan": MILAN})
    assert asked == [(REPORT, b"aux", tmp_path)] and measured == [0x21]
    assert (live.vcek_source, live.vcek_reason) == ("the table", "in it")
    assert live.verdict.check("min_tcb").state == "failed" and live.verdict.check("chain").state == "ok"
    assert live.verdict.check("measurement").state == "ok"
    # the default chains and anchors: AMD's, every product
    amd = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, find_vcek=find, measure=measure)
    assert amd.ok and amd.verdict.check("chain").reason == "VCEK <- ASK <- ARK verified to AMD's milan ARK"
    assert asked[-1] == (REPORT, b"aux", None) and measured[-1] == 1
    # chains given: only those are tried
    given = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, find_vcek=find, measure=measure, chains={})
    assert given.verdict.check("chain") == Check("chain", "unknown", "no ASK/ARK given to check the VCEK against")
    # anchors given: only those are trusted
    other = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, find_vcek=find,
                              measure=lambda inputs: MEASURED, chains={"milan": MILAN}, anchors={})
    assert other.verdict.check("chain").state == "failed"


def test_check_live_report_without_a_digest_or_a_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = FetchResult("report", report=REPORT, via="configfs-tsm")

    def broken(inputs: Any) -> bytes:
        raise ValueError("no OVMF")
    live = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, find_vcek=lookup(), measure=broken,
                             chains={"milan": MILAN})
    assert _states(live) == {"signature": "ok", "chain": "ok", "vcek_tcb": "ok", "vcek_chip_id": "ok", "debug": "ok",
                             "report_data": "ok", "measurement": "unknown", "policy": "ok", "vmpl": "ok",
                             "min_tcb": "unknown"}
    assert live.verdict.check("measurement") == Check(
        "measurement", "unknown", "the expected measurement could not be computed: no OVMF")
    # no lookup given: the default one is asked
    monkeypatch.setattr(snp_attest, "_default_find_vcek", lambda: lookup(source="the default", reason="its reason"))
    default = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, measure=lambda inputs: MEASURED,
                                chains={"milan": MILAN})
    assert (default.vcek_source, default.vcek_reason) == ("the default", "its reason")
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "pytest_sev.attest.snp_vcek_source", None)
    none = check_live_report(fetched, spec_of(tmp_path), REAL_NONCE, measure=lambda inputs: MEASURED,
                             chains={"milan": MILAN})
    assert none.vcek_reason == "no VCEK source: pytest_sev.attest.snp_vcek_source is not installed"
    assert none.verdict.check("signature").state == "unknown"


def _states(live: LiveVerdict) -> dict[str, str]:
    return {c.name: c.state for c in live.verdict.checks}


def test_od_dump_double_matches_the_parser() -> None:
    assert parse_hex_dump(od_dump(REPORT)) == REPORT
    assert isinstance(GuestTimeout("x"), Exception)
