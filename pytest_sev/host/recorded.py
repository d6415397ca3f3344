"""Recorded hosts: a host's evidence written to a directory, and replayed.

Layout of ``fixtures/hosts/<name>/``::

    meta.json         what the probe was asked (qemu, ovmf paths) and a description
    root/             files read under the root: proc/cpuinfo, proc/self/limits,
                      sys/module/kvm_amd/parameters/*, dev/sev, dev/kvm (its text
                      is the KVM_GET_API_VERSION answer), OVMF placeholders
    cpuid.json        {"0x8000001f": [eax, ebx, ecx, edx], ...} (hex strings)
    msr.json          {"0xc0010010": "0x..."} when the MSR device was readable (the
                      RMP MSRs, adjacent offsets, are kept as "rdmsr -p 0 0xc001013x"
                      answers in commands.json)
    commands.json     {"dmesg": {"status": 0, "file": "dmesg.txt"}, "uname -r": {...}}
    qmp.json          the query-sev-capabilities reply or error, and the accel
    expected.txt      the report the probe must produce from all of the above

The CPUID and MSR devices are read with ``pread`` at offset = leaf / MSR
number, i.e. past 2 GiB: they are stored as JSON and written into a sparse
file in a scratch root at replay time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.host.commands import RecordingRunner, ReplayRunner, Runner, SubprocessRunner
from pytest_sev.host.evidence import RMP_MSRS, SYSCFG_MSR, Evidence, gather, under
from pytest_sev.host.parse_cpu import CpuidRegs
from pytest_sev.host.probe import build_report, probe_host
from pytest_sev.host.qmp_probe import QmpAnswer, QmpProbe, query_sev_capabilities
from pytest_sev.host.report import HostReport

_FILE_NAMES = {"dmesg": "dmesg.txt", "virsh domcapabilities": "domcapabilities.xml",
               "journalctl -k -b --no-pager -o cat": "journal.txt"}


_LOG_COMMANDS = ("dmesg", "journalctl -k -b --no-pager -o cat")
_RELEVANT = re.compile(r"sev|kvm|ccp|psp|microcode|Linux version|mem_encrypt|SME", re.IGNORECASE)


def relevant_log_lines(text: str) -> str:
    """The kernel-log lines a recording keeps: those the parser could use
    (SEV, kvm, ccp/PSP, microcode, the kernel version), so a recording
    carries no unrelated detail of the machine it was made on."""
    return "".join(line for line in text.splitlines(keepends=True) if _RELEVANT.search(line))


def _write_sparse(path: Path, chunks: dict[int, bytes]) -> None:
    """Write each chunk at its offset; refuse overlapping chunks (a real
    device answers each offset independently, a file cannot)."""
    spans = sorted((off, off + len(data)) for off, data in chunks.items())
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise ValueError(f"{path.name}: recorded reads overlap at offset 0x{start:x}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for off, data in chunks.items():
            os.pwrite(fd, data, off)
    finally:
        os.close(fd)


@dataclass
class RecordedHost:
    """A recorded host materialised under a scratch directory, ready to probe."""

    name: str
    source: Path
    root: Path
    runner: ReplayRunner
    meta: dict
    qmp_answer: QmpAnswer

    def qmp(self, qemu: str, accel: str) -> QmpAnswer:
        if accel != self.qmp_answer.accel:
            return QmpAnswer(accel, error_desc=f"not recorded with accel {accel}", launched=False)
        return self.qmp_answer

    def probe(self) -> HostReport:
        return probe_host(self.root, self.runner, self.meta.get("qemu", "qemu-system-x86_64"),
                          self.meta.get("ovmf_code"), self.meta.get("ovmf_vars"), qmp=self.qmp)

    def expected_text(self) -> str:
        return (self.source / "expected.txt").read_text()


def load_recorded(source: Path, scratch: Path) -> RecordedHost:
    source = Path(source)
    root = Path(scratch) / "root"
    if (source / "root").is_dir():
        shutil.copytree(source / "root", root, symlinks=True)
    else:
        root.mkdir(parents=True)
    cpuid = json.loads((source / "cpuid.json").read_text()) if (source / "cpuid.json").exists() else {}
    if cpuid:
        chunks = {}
        for leaf, regs in cpuid.items():
            r = CpuidRegs.from_hex(regs)
            chunks[int(leaf, 16)] = b"".join(x.to_bytes(4, "little") for x in (r.eax, r.ebx, r.ecx, r.edx))
        _write_sparse(root / "dev/cpu/0/cpuid", chunks)
    if (source / "msr.json").exists():
        msrs = json.loads((source / "msr.json").read_text())
        _write_sparse(root / "dev/cpu/0/msr",
                      {int(k, 16): int(v, 16).to_bytes(8, "little") for k, v in msrs.items()})
    answers: dict[str, tuple[int, str]] = {}
    commands = json.loads((source / "commands.json").read_text()) if (source / "commands.json").exists() else {}
    for key, rec in commands.items():
        out = (source / rec["file"]).read_text() if "file" in rec else rec.get("stdout", "")
        answers[key] = (int(rec["status"]), out)
    qmp = QmpAnswer.from_dict(json.loads((source / "qmp.json").read_text())) if (source / "qmp.json").exists() \
        else QmpAnswer("tcg", error_desc="no QMP answer recorded", launched=False)
    meta = json.loads((source / "meta.json").read_text()) if (source / "meta.json").exists() else {}
    return RecordedHost(source.name, source, root, ReplayRunner(answers), meta, qmp)


def save_recording(ev: Evidence, log: dict[str, tuple[int, str]], dest: Path, meta: dict) -> None:
    """Write what a probe read (its evidence and command log) as a recorded host."""
    dest = Path(dest)
    root = dest / "root"
    root.mkdir(parents=True, exist_ok=True)

    def put(host_path: str, text: str) -> None:
        p = under(root, host_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    if ev.cpuinfo is not None:
        put("/proc/cpuinfo", ev.cpuinfo)
    if ev.limits is not None:
        put("/proc/self/limits", ev.limits)
    if ev.kvm_amd is not None:
        for param, value in ev.kvm_amd.items():
            put(f"/sys/module/kvm_amd/parameters/{param}", value + "\n")
        if not ev.kvm_amd:
            put("/sys/module/kvm_amd/.loaded", "")
    if ev.dev_sev.exists:
        put("/dev/sev", "")
    if ev.dev_kvm.exists:
        put("/dev/kvm", "" if ev.dev_kvm.kvm_api is None else f"{ev.dev_kvm.kvm_api}\n")
    for p in (ev.ovmf_code, ev.ovmf_vars):
        if p:
            put(p, "")
    if ev.cpuid:
        (dest / "cpuid.json").write_text(json.dumps(
            {f"0x{leaf:08x}": regs.as_hex() for leaf, regs in sorted(ev.cpuid.items())}, indent=1) + "\n")
    if ev.syscfg is not None and ev.syscfg_source == "/dev/cpu/0/msr":
        (dest / "msr.json").write_text(json.dumps({hex(SYSCFG_MSR): hex(ev.syscfg)}) + "\n")
    log = dict(log)
    if ev.rmp_msrs is not None:
        # adjacent MSRs cannot share the sparse msr file: kept as the rdmsr answers they equal
        for msr, reading in zip(RMP_MSRS, ev.rmp_msrs, strict=True):
            log.setdefault(f"rdmsr -p 0 {hex(msr)}", (0, f"{reading:x}\n"))
    commands: dict[str, dict] = {}
    for key, (status, out) in sorted(log.items()):
        if key in _LOG_COMMANDS:
            out = relevant_log_lines(out)
        name: str | None = _FILE_NAMES.get(key) if out else None
        if name is None and out.count("\n") > 2:
            name = key.replace(" ", "_").replace("/", "_").strip("-_") + ".txt"
        if name:
            (dest / name).write_text(out)
            commands[key] = {"status": status, "file": name}
        else:
            commands[key] = {"status": status, "stdout": out}
    (dest / "commands.json").write_text(json.dumps(commands, indent=1) + "\n")
    (dest / "qmp.json").write_text(json.dumps(ev.qmp.to_dict(), indent=1) + "\n")
    (dest / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def record_host(dest: Path, root: Path = Path("/"), runner: Runner | None = None,
                qemu: str = "qemu-system-x86_64", ovmf_code: str | None = None,
                ovmf_vars: str | None = None, qmp: QmpProbe | None = None,
                description: str = "") -> HostReport:
    """Probe this machine and save what was read, plus the report, under ``dest``."""
    recorder = RecordingRunner(runner or SubprocessRunner())
    ev = gather(Path(root), recorder, qemu, ovmf_code, ovmf_vars, qmp or query_sev_capabilities)
    meta = {"description": description, "qemu": qemu, "ovmf_code": ovmf_code, "ovmf_vars": ovmf_vars}
    save_recording(ev, recorder.log, dest, meta)
    report = build_report(ev)
    (Path(dest) / "expected.txt").write_text(report.format_text())
    return report
