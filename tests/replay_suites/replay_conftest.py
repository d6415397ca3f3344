"""Run the real suites against a recorded host and replay guests (no QEMU).

A conftest TEMPLATE (named so pytest never loads it from tests/).

Used by tests/test_sev_modes_recorded.py, which copies suites/test_activation.py,
suites/test_dma.py (and, for the SEV-SNP replays, suites/test_host.py) next
to this file in a scratch directory. The host report is the probe of a
recorded host (``REPLAY_HOST``, a directory under fixtures/hosts: the
epyc-*-ready ones are RECONSTRUCTED, see their meta.json); every guest the
suites ask for is a replay double answering with recorded witness replies
(tests/evidence_doubles.py: plain captured, SEV and SEV-ES reconstructed; the
SEV-SNP guest: fixtures/recorded/guest/snp-6.9-guest.log, its one-vCPU SEVMSR
read and its QEMU 9.1 query-sev reply, all reconstructed, see provenance.json)
or, for the DMA matrix, a finished load whose kernel lines follow the
recorded SEV guest logs' format (reconstructed).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, os.environ["REPLAY_TESTS_DIR"])

from evidence_doubles import ReplayGuest, plain_guest, qmp_reply, recorded, sev_guest  # noqa: E402

from pytest_sev.host.recorded import load_recorded  # noqa: E402
from pytest_sev.plugin.state import HOST_REPORT  # noqa: E402

WITH_AP = "VIRTIOFEAT virtio0 0x0002 " + "".join("1" if i in (1, 2, 32, 33) else "0" for i in range(64))
SEEN: list[str] = []
HOST_API: list[str] = []


def pytest_configure(config):
    scratch = Path(tempfile.mkdtemp(prefix="replay-host-"))
    report = load_recorded(Path(os.environ["REPLAY_HOST"]), scratch).probe()
    config.stash[HOST_REPORT] = report
    HOST_API[:] = [report.facts.get("sev_api", "")]


class DmaReplay:
    """A finished fio load in an SEV(-ES/-SNP) or forced plain guest (reconstructed kernel lines)."""

    def __init__(self, spec):
        self.spec, self.alive, self.console = spec, True, None
        m = [a for a in spec.append.split() if a.startswith("swiotlb=")]
        slabs = int(m[0].split("=")[1].split(",")[0]) if m and m[0].split("=")[1][0].isdigit() else 32768
        self.nslabs = slabs
        mb = slabs * 2048 >> 20
        lines = ["[    0.000000] Linux version 6.1.0-57-cloud-amd64",
                 f"[    0.612312] software IO TLB: mapped [mem 0x7b8ed000-{0x7b8ed000 + slabs * 2048:#x}] ({mb}MB)"]
        if spec.sev is not None or spec.snp is not None:
            lines.append("[    2.110093] software IO TLB: Memory encryption is active and system is using "
                         "DMA bounce buffers")
        if slabs <= 4096:
            lines += [f"[   30.1] virtio-pci 0000:00:03.0: swiotlb buffer is full (sz: 262144 bytes), "
                      f"total {slabs} (slots), used {slabs - 300} (slots)"] * 3
        self.dmesg = "\n".join(lines) + "\n"
        self.result = (Path(os.environ["REPLAY_TESTS_DIR"]).parent / "fixtures" / "recorded" / "dma"
                       / "loop-fio-write-verify.result.txt").read_text()

    def run(self, cmd, timeout=60.0):
        if cmd.startswith("command -v fio"):
            return "DMATOOL fio\n", 0
        if '"DMAPROG"' in cmd:  # load.progress_command's awk line
            return "DMAPROG|30.0 20.0|  10 0 800 4 10 0 800 4 0 40 40 0 0 0 0 0 0|17|20.0 10.0|0|END\n", 0
        if cmd == "dmesg":
            return self.dmesg, 0
        if "swiotlb/*" in cmd:
            return f"/sys/kernel/debug/swiotlb/io_tlb_nslabs:{self.nslabs}\n", 0
        if "VIRTIOFEAT" in cmd:
            return WITH_AP + "\nVIRTIOFEAT-END\n", 0
        if "@@DMA" in cmd:
            return self.result, 0
        return "", 0

    def check(self, cmd, timeout=60.0):
        return self.run(cmd, timeout)[0]


def snp_replay(spec) -> ReplayGuest:
    """The reconstructed SEV-SNP guest: one vCPU (its SEVMSR read has one), launched
    with the spec's own SNP policy, which its query-sev reply carries back."""
    reply = dict(qmp_reply("qmp/snp-qemu9.1-query-sev-running.json"), **{"snp-policy": spec.snp.policy})
    guest = ReplayGuest(dmesg=(recorded("snp-6.9-guest.log"), 0), msr=recorded("msr/guest-read-snp-debugswap-1cpu.txt"),
                        qmp={"query-sev": reply}, memory="encrypted", vcpus=1, name=spec.name)
    guest.spec.snp = spec.snp
    return guest


def replay_for(spec):
    launch = spec.snp if spec.snp is not None else spec.sev
    kind = launch.mode if launch is not None else "plain"
    SEEN.append(f"{kind}:{spec.name}:policy={launch.policy if launch is not None else '-'}")
    if spec.disks and any(d.throttle_bps for d in spec.disks):
        return DmaReplay(spec)
    if kind == "plain":
        return plain_guest()
    if kind == "sev-snp":
        return snp_replay(spec)
    guest = sev_guest(str(kind))
    # the reconstructed query-sev reply carries API 1.55; the same machine's QEMU
    # reports the recorded host's own firmware API
    api = HOST_API[0] if HOST_API else ""
    if "." in api:
        major, minor = api.split(".")[:2]
        reply = dict(guest.qmp.replies["query-sev"], **{"api-major": int(major), "api-minor": int(minor)})
        guest.qmp.replies["query-sev"] = reply
    return guest


@contextlib.contextmanager
def fake_scoped_guest(request, cfg, label, spec=None, **fields):
    yield replay_for(spec)


class ReplayFactory:
    def __init__(self, cfg):
        self.cfg = cfg

    def __call__(self, spec=None, **fields):
        return replay_for(spec)


@pytest.fixture
def guest_factory(run_config):
    return ReplayFactory(run_config)


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item.module, "scoped_guest"):
            item.module.scoped_guest = fake_scoped_guest


def pytest_sessionfinish(session):
    Path(os.environ["REPLAY_SEEN"]).write_text("\n".join(SEEN) + "\n")
