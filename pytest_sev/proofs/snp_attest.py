"""An SEV-SNP guest fetches its own attestation report over the console; the harness judges it offline.

Why here (proofs, floor 5): asking a running guest is I/O, the verdict is
:mod:`pytest_sev.attest.snp_verify`'s. QEMU gives no launch measurement for
SNP guests, so the guest's own report, signed by the chip's VCEK, is the
only proof that the launched image is running under SNP; the harness sends a
fresh 64-byte nonce, the guest asks its PSP for a report carrying it, and
the report comes back over the serial console.

The guest's two ways to ask (docs/sev-reference.md, "SEV-SNP", guest side):

- configfs-tsm (Linux >= 6.7, ``CONFIG_TSM_REPORTS``, selected by
  ``CONFIG_SEV_GUEST``): ``mkdir`` an entry under
  ``/sys/kernel/config/tsm/report``, write up to 64 bytes to ``inblob``,
  read ``outblob`` (the 0x4A0-byte report) and ``auxblob`` (the host's
  certificate table, when it gives one). ``generation`` counts the writes to
  the entry, so reading it before and after tells whether another writer
  changed the entry between our write and our read (the kernel ABI document
  ``Documentation/ABI/testing/configfs-tsm``). Pure shell: busybox's
  ``printf`` with octal escapes writes the raw nonce, ``od`` prints the
  blobs as hex text, which the console carries unharmed.
- ``/dev/sev-guest`` (``CONFIG_SEV_GUEST``, Linux >= 5.19): the
  ``SNP_GET_REPORT`` ioctl. busybox has no tool that issues an ioctl, so on
  the embedded guest this path is named as the reason of an ``unknown``,
  never pretended.

Every answer is a report or ``unknown`` with the reason: a directory that is
missing, a write that was denied, an empty or short ``outblob``, a
generation that moved. The entry made for a fetch is removed on every path
the shell can still take (a guest that timed out is unusable and is torn
down with its entries).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pytest_sev.attest.errors import AttestError
from pytest_sev.attest.snp_measure import SNP_ACTIVE, SnpLaunchInputs, describe_guest_features, snp_launch_digest
from pytest_sev.attest.snp_report import REPORT_SIZE, SnpReport, parse_report
from pytest_sev.attest.snp_roots import pinned_arks, pinned_chains
from pytest_sev.attest.snp_verify import Check, Expectations, MinTcb, SnpVerdict, verify_snp_report
from pytest_sev.deadline import Deadline
from pytest_sev.errors import GuestError
from pytest_sev.model.protocol import GuestLike
from pytest_sev.model.spec import GuestSpec
from pytest_sev.qemu.argv import default_cpu
from pytest_sev.sev.policy import SNP_DEBUG

log = logging.getLogger(__name__)

CONFIGFS = "/sys/kernel/config"
TSM_REPORT_DIR = f"{CONFIGFS}/tsm/report"
SEV_GUEST_DEVICE = "/dev/sev-guest"
NONCE_SIZE = 64
#: the provider name the SEV guest driver registers with configfs-tsm
SEV_PROVIDER = "sev_guest"
#: what a kernel needs for each way to ask (drivers/virt/coco/{guest,sev-guest}/Kconfig)
KERNEL_SYMBOLS = "CONFIG_TSM_REPORTS (configfs-tsm, Linux >= 6.7, selected by CONFIG_SEV_GUEST) and CONFIG_SEV_GUEST"

#: mkdir under tsm/report fails with ENXIO while no provider is registered (seen on a plain guest, README)
NO_PROVIDER_HINT = ("; configfs-tsm has no provider: no SNP (or TDX) guest driver registered, "
                    "so this is not an SNP guest or its sev-guest driver is not loaded")

_PROBE = (
    f"grep -q ' {CONFIGFS} configfs ' /proc/mounts || mount -t configfs configfs {CONFIGFS} 2>&1; "
    f"if [ -d {TSM_REPORT_DIR} ]; then echo 'pytest-sev: tsm=yes'; else echo 'pytest-sev: tsm=no'; fi; "
    f"if [ -c {SEV_GUEST_DEVICE} ]; then echo 'pytest-sev: sev-guest=yes'; else echo 'pytest-sev: sev-guest=no'; fi"
)
_PROBE_LINE = re.compile(r"^pytest-sev: (tsm|sev-guest)=(yes|no)$")
_ATTR_LINE = re.compile(r"^pytest-sev: (provider|generation)=(.*)$")

Status = Literal["report", "unknown"]


@dataclass(frozen=True)
class Probe:
    """What the guest offers: configfs-tsm's report directory, ``/dev/sev-guest``; ``None``: not said."""

    tsm: bool | None
    sev_guest: bool | None
    said: str = ""  #: other output of the probe (a failed configfs mount says why here)


@dataclass(frozen=True)
class FetchResult:
    """A report fetched from the guest (``status`` ``report``) or ``unknown`` with the reason."""

    status: Status
    reason: str = ""
    report: bytes | None = None
    #: configfs-tsm's ``auxblob``: the host's certificate table (GHCB spec 56421, MSG_REPORT_REQ), if any
    auxblob: bytes | None = None
    provider: str | None = None
    via: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "report" and self.report is not None

    def describe(self) -> str:
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        if self.ok:
            aux = f", auxblob {len(self.auxblob)} bytes" if self.auxblob else ", no auxblob"
            return f"report of {len(self.report or b'')} bytes via {self.via}{aux}{notes}"
        return f"unknown: {self.reason}{notes}"


def _unknown(reason: str, **kw: Any) -> FetchResult:
    return FetchResult("unknown", reason, **kw)


# -- pure parsers of what the guest printed ------------------------------------------

def parse_probe(text: str) -> Probe:
    """The probe's ``pytest-sev: tsm=yes|no`` / ``sev-guest=yes|no`` lines; other lines kept as said. Pure."""
    found: dict[str, bool] = {}
    other = []
    for line in (ln.strip() for ln in text.splitlines()):
        m = _PROBE_LINE.match(line)
        if m:
            found[m.group(1)] = m.group(2) == "yes"
        elif line:
            other.append(line)
    return Probe(found.get("tsm"), found.get("sev-guest"), "; ".join(other)[:300])


def parse_hex_dump(text: str) -> bytes | None:
    """``od -An -v -tx1`` output as bytes; ``None`` when a line is not hex bytes (an error message). Pure."""
    out = bytearray()
    for line in text.splitlines():
        words = line.split()
        if not all(re.fullmatch(r"[0-9a-fA-F]{2}", w) for w in words):
            return None
        out += bytes(int(w, 16) for w in words)
    return bytes(out)


def parse_attributes(text: str) -> dict[str, str]:
    """``pytest-sev: provider=...`` / ``generation=...`` lines of an entry. Pure."""
    out = {}
    for line in text.splitlines():
        m = _ATTR_LINE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def printf_command(data: bytes, path: str) -> str:
    """A shell line that writes ``data`` (raw bytes, NUL included) to ``path`` in one ``printf``.

    Why octal escapes: the console is a line of text; every byte as ``\\NNN``
    survives it and busybox's (and POSIX) ``printf`` turns them back into
    the bytes, ``%`` and NUL included, without a second interpretation."""
    escaped = "".join(f"\\{b:03o}" for b in data)
    return f"printf '{escaped}' > {path}"


def dump_command(path: str) -> str:
    return f"od -An -v -tx1 {path}"


def _attrs_command(entry: str) -> str:
    return (f"for a in provider generation; do [ -r {entry}/$a ] && "
            f"echo \"pytest-sev: $a=$(cat {entry}/$a)\"; done; true")


def judge_generation(before: str | None, after: str | None, writes: int = 1) -> str | None:
    """``None`` when ``generation`` moved by exactly our writes, else why the report cannot be trusted
    to be ours; an entry without ``generation`` (not in this kernel's ABI) is no conflict. Pure."""
    if before is None and after is None:
        return None
    if before is None or after is None:
        return f"generation read {before!r} before and {after!r} after the write: cannot tell who wrote"
    try:
        b, a = int(before), int(after)
    except ValueError:
        return f"generation is not a number ({before!r}, {after!r})"
    if a != b + writes:
        return (f"generation went from {b} to {a}, not {b + writes}: another writer changed the entry, "
                "the report may not carry this nonce")
    return None


# -- the fetch ---------------------------------------------------------------------

def _run(guest: GuestLike, cmd: str, deadline: Deadline) -> tuple[str, int]:
    return guest.run(cmd, timeout=deadline.remaining(floor=5.0))


def fetch_report(guest: GuestLike, nonce: bytes, timeout: float = 120.0) -> FetchResult:
    """Ask ``guest`` for its SNP attestation report with ``nonce`` (64 bytes) as REPORT_DATA.

    A guest command that fails as a command (a timeout, a dead shell) is
    ``unknown`` naming it: the guest is then unusable, the fixture tears it down."""
    if len(nonce) != NONCE_SIZE:
        raise ValueError(f"the nonce is {len(nonce)} bytes; configfs-tsm's inblob takes {NONCE_SIZE}")
    deadline = Deadline(timeout)
    try:
        probe_out, _ = _run(guest, _PROBE, deadline)
    except GuestError as exc:
        return _unknown(f"the probe for {TSM_REPORT_DIR} and {SEV_GUEST_DEVICE} did not run: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    probe = parse_probe(probe_out)
    result = _fetch_by_probe(guest, probe, nonce, deadline)
    log.info("%s: SNP report fetch: %s", guest.spec.name, result.describe())  # pragma: no mutate, log text only
    return result


def _fetch_by_probe(guest: GuestLike, probe: Probe, nonce: bytes, deadline: Deadline) -> FetchResult:
    if probe.tsm is None or probe.sev_guest is None:
        return _unknown(f"the probe for {TSM_REPORT_DIR} and {SEV_GUEST_DEVICE} gave no answer "
                        f"(output: {probe.said[:200]!r})")
    if probe.tsm:
        return _fetch_tsm(guest, nonce, deadline)
    said = f"; the guest said: {probe.said}" if probe.said else ""
    if probe.sev_guest:
        return _unknown(f"{TSM_REPORT_DIR} is absent (no configfs-tsm: CONFIG_TSM_REPORTS, Linux >= 6.7) and "
                        f"{SEV_GUEST_DEVICE} needs the SNP_GET_REPORT ioctl, which no tool in this guest issues "
                        f"(busybox has none; snpguest would){said}", via=SEV_GUEST_DEVICE)
    return _unknown(f"neither configfs-tsm ({TSM_REPORT_DIR}) nor {SEV_GUEST_DEVICE} is in this guest: "
                    f"its kernel needs {KERNEL_SYMBOLS}{said}")


def _fetch_tsm(guest: GuestLike, nonce: bytes, deadline: Deadline) -> FetchResult:
    entry = f"{TSM_REPORT_DIR}/pytest-sev-{secrets.token_hex(8)}"
    try:
        out, rc = _run(guest, f"mkdir {entry}", deadline)
    except GuestError as exc:
        return _unknown(f"mkdir {entry} did not run: {type(exc).__name__}", via="configfs-tsm")
    if rc != 0:
        hint = NO_PROVIDER_HINT if "No such device or address" in out else ""
        return _unknown(f"mkdir {entry} failed (exit {rc}): {out.strip()[:200]}{hint}", via="configfs-tsm")
    try:
        result = _fill_entry(guest, entry, nonce, deadline)
    except GuestError as exc:
        result = _unknown(f"a guest command on {entry} did not finish: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:160]}", via="configfs-tsm")
    except BaseException:
        _remove_entry(guest, entry, deadline)  # an unforeseen error (or ^C) still removes the entry, then goes on
        raise
    note = _remove_entry(guest, entry, deadline)
    return result if note is None else replace(result, notes=(*result.notes, note))


def _remove_entry(guest: GuestLike, entry: str, deadline: Deadline) -> str | None:
    """``rmdir`` the entry: ``None`` when it went, else a note (the report, if any, is still the one read)."""
    try:
        out, rc = _run(guest, f"rmdir {entry}", deadline)
    except GuestError as exc:
        note = f"rmdir {entry} did not run ({type(exc).__name__})"
    else:
        if rc == 0:
            return None
        note = f"rmdir {entry} failed (exit {rc}): {out.strip()[:120]}"
    log.warning("%s: %s", guest.spec.name, note)  # pragma: no mutate, log text only
    return note


def _fill_entry(guest: GuestLike, entry: str, nonce: bytes, deadline: Deadline) -> FetchResult:
    before = parse_attributes(_run(guest, _attrs_command(entry), deadline)[0])
    provider = before.get("provider")
    if provider is not None and provider != SEV_PROVIDER:
        return _unknown(f"the configfs-tsm provider is {provider!r}, not {SEV_PROVIDER!r}: "
                        "its outblob is not an SNP report", via="configfs-tsm", provider=provider)
    out, rc = _run(guest, printf_command(nonce, f"{entry}/inblob"), deadline)
    if rc != 0:
        return _unknown(f"writing the nonce to {entry}/inblob failed (exit {rc}): {out.strip()[:200]}",
                        via="configfs-tsm", provider=provider)
    out, rc = _run(guest, dump_command(f"{entry}/outblob"), deadline)
    if rc != 0:
        return _unknown(f"reading {entry}/outblob failed (exit {rc}): {out.strip()[:200]}",
                        via="configfs-tsm", provider=provider)
    report = parse_hex_dump(out)
    if report is None:
        return _unknown(f"{entry}/outblob did not read as bytes: {out.strip()[:200]!r}",
                        via="configfs-tsm", provider=provider)
    if not report:
        return _unknown(f"{entry}/outblob is empty: the guest's PSP gave no report", via="configfs-tsm",
                        provider=provider)
    if len(report) != REPORT_SIZE:
        return _unknown(f"{entry}/outblob is {len(report)} bytes, an SNP report is {REPORT_SIZE} ({REPORT_SIZE:#x})",
                        via="configfs-tsm", provider=provider)
    aux, notes = _read_auxblob(guest, entry, deadline)
    after = parse_attributes(_run(guest, _attrs_command(entry), deadline)[0])
    conflict = judge_generation(before.get("generation"), after.get("generation"))
    if conflict:
        return _unknown(conflict, via="configfs-tsm", provider=provider)
    if "generation" not in before:
        notes.append("the entry has no generation attribute: a concurrent writer could not be ruled out")
    return FetchResult("report", "", report, aux, provider, "configfs-tsm", tuple(notes))


def _read_auxblob(guest: GuestLike, entry: str, deadline: Deadline) -> tuple[bytes | None, list[str]]:
    """The certificate table, or ``None`` with a note: the host need not give one (AMD's KDS then does)."""
    out, rc = _run(guest, f"[ -e {entry}/auxblob ] || exit 3; {dump_command(entry + '/auxblob')}", deadline)
    if rc == 3:
        return None, ["no auxblob attribute"]
    if rc != 0:
        return None, [f"reading auxblob failed (exit {rc}): {out.strip()[:120]}"]
    aux = parse_hex_dump(out)
    if aux is None:
        return None, [f"auxblob did not read as bytes: {out.strip()[:120]!r}"]
    return (aux or None), ([] if aux else ["auxblob is empty: the host gave no certificate table"])


# -- the verdict on a live report ---------------------------------------------------

Measure = Callable[[SnpLaunchInputs], bytes]
FindVcek = Callable[..., Any]


def measurement_inputs(spec: GuestSpec, guest_features: int = SNP_ACTIVE) -> SnpLaunchInputs:
    """What the launch of ``spec`` measured: its ``-bios`` OVMF, vCPUs and ``-cpu`` model, the guest
    features, and the kernel, initrd and command line when QEMU hashed them (``kernel-hashes=on``).

    ``guest_features`` 0x1 (SNPActive alone) is what QEMU >= 9.1 asks of KVM_SEV_INIT2; a host whose
    KVM adds DebugSwap launches 0x21 (docs/sev-reference.md: AMDSEV #195, ``kvm_amd debug_swap``)."""
    if spec.snp is None:
        raise ValueError(f"guest {spec.name} is not an SEV-SNP launch: nothing was measured")
    if spec.firmware.code is None:
        raise ValueError(f"guest {spec.name} has no -bios firmware image to measure")
    kernel = spec.snp.kernel_hashes and spec.kernel is not None
    return SnpLaunchInputs(
        ovmf=str(spec.firmware.code), vcpus=spec.vcpus,
        vcpu_type=default_cpu(spec, "kvm"),  # pragma: no mutate, an SNP spec's CPU does not depend on the accelerator
        guest_features=guest_features,
        kernel=str(spec.kernel) if kernel else None,
        initrd=str(spec.initrd) if kernel and spec.initrd else None,
        append=spec.append if kernel else None)


def live_expectations(spec: GuestSpec, nonce: bytes, *, min_tcb: MinTcb | None = None,
                      guest_features: int = SNP_ACTIVE,
                      measure: Measure = snp_launch_digest) -> tuple[Expectations, str | None]:
    """The Expectations of the launch of ``spec`` and, when the digest could not be computed, why.

    Policy, VMPL 0 (the harness launches no SVSM) and the debug permission
    come from the launched ``SnpLaunch``; the nonce is the one just sent."""
    assert spec.snp is not None, "live_expectations needs an SNP launch"
    why: str | None = None
    digest: bytes | None = None
    try:
        inputs = measurement_inputs(spec, guest_features)
        digest = measure(inputs)
    except (AttestError, ValueError, OSError) as exc:
        why = f"the expected measurement could not be computed: {exc}"
    expect = Expectations(nonce=nonce, measurement=digest, policy=spec.snp.policy, vmpl=0, min_tcb=min_tcb,
                          allow_debug=bool(spec.snp.policy & SNP_DEBUG))
    return expect, why


@dataclass(frozen=True)
class LiveVerdict:
    """The offline verdict on a fetched report, with where the VCEK came from."""

    verdict: SnpVerdict
    vcek_source: str
    vcek_reason: str

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    def problems(self) -> list[str]:
        """Each asked check that does not hold, named with its state (an unknown one too)."""
        out = [c.describe() for c in self.verdict.not_holding]
        if any(c.name in ("signature", "chain") and c.state == "unknown" for c in self.verdict.not_holding):
            out.append(f"VCEK: {self.vcek_reason or 'none found'} (source: {self.vcek_source or 'none'})")
        return out

    def describe(self) -> str:
        return "; ".join(c.describe() for c in self.verdict.checks if c.asked)


Outcome = Literal["pass", "skip", "fail"]


def judge_live(fetched: FetchResult, live: LiveVerdict | None, demanded: bool) -> tuple[Outcome, str]:
    """What a suite item does with a fetch and its verdict. Pure.

    ``pass`` only with a report whose every asked check holds. A check that
    failed fails in every mode. What could not be decided (no report, a
    check that is unknown) fails when SNP is demanded (``--sev-snp``) and
    skips otherwise, naming it, as the mode table treats a host that cannot
    run SNP: auto mode never turns "could not tell" into a pass or a red."""
    if not fetched.ok or live is None:
        return ("fail" if demanded else "skip"), f"no SNP report from the guest: {fetched.describe()}"
    problems = live.problems()
    if not problems:
        return "pass", live.describe()
    message = "SNP report checks that do not hold:\n  " + "\n  ".join(problems)
    failed = any(c.state == "failed" for c in live.verdict.not_holding)
    return ("fail" if failed or demanded else "skip"), message


def _default_find_vcek() -> FindVcek | None:
    """The VCEK lookup of :mod:`pytest_sev.attest.snp_vcek_source`, ``None`` when that module is absent."""
    try:
        from pytest_sev.attest.snp_vcek_source import find_vcek
    except ImportError:
        return None
    return find_vcek


def check_live_report(fetched: FetchResult, spec: GuestSpec, nonce: bytes, *, cert_dir: Path | None = None,
                      min_tcb: MinTcb | None = None, guest_features: int = SNP_ACTIVE,
                      find_vcek: FindVcek | None = None, measure: Measure = snp_launch_digest,
                      chains: Mapping[str, Any] | None = None,
                      anchors: Mapping[str, Any] | None = None) -> LiveVerdict:
    """Verify a fetched report against what ``spec`` launched, offline.

    The VCEK is looked up from the report (the host's certificate table in
    ``auxblob``, then ``cert_dir``) by ``find_vcek``
    (:func:`pytest_sev.attest.snp_vcek_source.find_vcek` by default); the
    ASK/ARK (ASVK/ARK for a VLEK-signed report) are AMD's pinned ones for
    every product. A digest that could not
    be computed is an asked ``unknown`` measurement check, never "not asked"."""
    if not fetched.ok or fetched.report is None:
        raise ValueError(f"no report to check: {fetched.describe()}")
    report = parse_report(fetched.report)
    lookup = find_vcek if find_vcek is not None else _default_find_vcek()
    vek, source, reason = _lookup_vcek(lookup, report, fetched.auxblob, cert_dir)
    chains = chains if chains is not None else pinned_chains(report.signer.signing_key)
    anchors = anchors if anchors is not None else pinned_arks()
    expect, why = live_expectations(spec, nonce, min_tcb=min_tcb, guest_features=guest_features, measure=measure)
    verdict = verify_snp_report(report, vek, chains, anchors, expect)
    if why is not None:
        checks = tuple(Check("measurement", "unknown", why) if c.name == "measurement" else c
                       for c in verdict.checks)
        verdict = replace(verdict, checks=checks)
    live = LiveVerdict(verdict, source, reason)
    log.info("SNP report verdict: %s", live.describe())  # pragma: no mutate, log text only
    return live


def _lookup_vcek(lookup: FindVcek | None, report: SnpReport, cert_table: bytes | None,
                 cert_dir: Path | None) -> tuple[Any, str, str]:
    if lookup is None:
        return None, "", "no VCEK source: pytest_sev.attest.snp_vcek_source is not installed"
    try:
        found = lookup(report, cert_table=cert_table, cert_dir=cert_dir)
    except (AttestError, OSError, ValueError) as exc:
        return None, "", f"the VCEK lookup failed: {exc}"
    return found.cert, found.source, found.reason


def describe_inputs(spec: GuestSpec, guest_features: int = SNP_ACTIVE) -> str:
    """One line naming the measured inputs (for a failure message)."""
    inputs = measurement_inputs(spec, guest_features)
    return (f"OVMF {inputs.ovmf}, {inputs.describe_vcpus()}, features {describe_guest_features(inputs.guest_features)}, "
            f"{inputs.describe_kernel()}")


__all__ = ["CONFIGFS", "FetchResult", "KERNEL_SYMBOLS", "LiveVerdict", "NONCE_SIZE", "Probe", "SEV_GUEST_DEVICE",
           "TSM_REPORT_DIR", "check_live_report", "describe_inputs", "fetch_report", "judge_generation",
           "judge_live", "live_expectations", "measurement_inputs", "parse_attributes", "parse_hex_dump", "parse_probe",
           "printf_command"]
