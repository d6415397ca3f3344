"""Gather the SEV activation witnesses from a running guest.

Each function asks one independent party whether the guest's memory is
encrypted and returns its answer (True, False, or None for "cannot tell")
with the evidence, so a suite can record every answer and then check that
they all agree with what was requested.  The parsing lives in
:mod:`pytest_sev.sev`; this module only does the I/O.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pytest_sev.guest.protocol import GuestLike as Guest
from pytest_sev.qemu.qmp import ExecuteError
from pytest_sev.sev import guestlog, memview, msr, qmp_sev

log = logging.getLogger(__name__)


@dataclass
class Witness:
    name: str
    encrypted: bool | None  # memory encryption active per this witness
    es: bool | None  # SEV-ES (encrypted register state) per this witness
    evidence: str
    details: dict = field(default_factory=dict)


def _told(guest: Guest, witness: Witness) -> Witness:
    log.info("%s: witness %s: encrypted=%s es=%s (%s)", guest.spec.name, witness.name,
             witness.encrypted, witness.es, witness.evidence[:200])
    return witness


def kernel_log(guest: Guest) -> Witness:
    text = guest.kernel_log()
    result = guestlog.parse_guest_log(text)
    decisive = not result.disagreements
    return _told(guest, Witness("guest kernel log", result.sev if decisive else None,
                   result.sev_es if decisive else None, result.describe(),
                   {"features": sorted(result.features), "eras": sorted(result.eras)}))


def sev_status_msr(guest: Guest) -> Witness:
    out, _ = guest.run(msr.guest_read_command(load_module=True), timeout=60)
    w = msr.parse_guest_read_output(out, expected_cpus=guest.spec.vcpus)
    return _told(guest, Witness("MSR 0xC0010131", w.sev, w.sev_es, w.describe(),
                   {"per_cpu": {str(k): v for k, v in w.per_cpu.items()}, "raw": out}))


def query_sev(guest: Guest, expect: str, host_api: str | None) -> Witness:
    try:
        reply = guest.qmp.execute("query-sev")
    except ExecuteError as exc:  # QEMU without SEV support at all
        reply = exc
    v = qmp_sev.evaluate_query_sev(reply, expect=expect, host_api=host_api)
    es = None if v.enabled is None else bool(v.enabled and v.es_bit)
    return _told(guest, Witness("QMP query-sev", v.enabled, es, v.describe(),
                   {"reply": reply if isinstance(reply, dict) else str(reply), "problems": v.problems}))


def launch_measurement(guest: Guest) -> Witness:
    try:
        reply = guest.qmp.execute("query-sev-launch-measure")
    except ExecuteError as exc:
        reply = exc
    m = qmp_sev.evaluate_launch_measure(reply)
    return _told(guest, Witness("launch measurement", m.present, None,
                   f"present={m.present} length={m.length}" + (f" problem={m.problem}" if m.problem else ""),
                   {"present": m.present, "length": m.length}))


def host_memory_view(guest: Guest) -> Witness:
    """Write a random marker in guest RAM, dump guest memory from the host."""
    marker = memview.new_marker()
    out, _ = guest.run(memview.guest_marker_command(marker), timeout=120)
    written = memview.parse_marker_ack(out) is not None
    scratch = Path(tempfile.mkdtemp(prefix="sev-memdump-"))  # 0700
    dump = scratch / "guest-memory.bin"
    try:
        size = guest.spec.memory_mib << 20
        guest.qmp.execute("pmemsave", val=0, size=size, filename=str(dump))
        w = memview.evaluate_dump(dump, memview.marker_bytes(marker), marker_written=written)
    finally:
        if dump.exists():
            os.unlink(dump)
        scratch.rmdir()
        guest.run(memview.guest_marker_cleanup_command(), timeout=60)
    return _told(guest, Witness("host memory view", w.encrypted, None, w.evidence,
                   {"found": w.found, "entropy_at_marker": w.entropy_at_marker,
                    "sampled_entropy": w.sampled_entropy, "marker_written": written}))
