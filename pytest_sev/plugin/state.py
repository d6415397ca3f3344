"""Per-run state shared by hooks and fixtures (kept in ``config.stash``).

The host is probed once per process and the mode decision derives from that
one report, so the header line and every skip/fail reason agree.
"""

from __future__ import annotations

import pytest

from pytest_sev.config import RunConfig

RUN_CONFIG = pytest.StashKey[RunConfig]()
HOST_REPORT = pytest.StashKey[object]()


def run_config(config: pytest.Config) -> RunConfig:
    return config.stash[RUN_CONFIG]


def host_report(config: pytest.Config):
    """The HostReport of this machine, probed on first use."""
    if HOST_REPORT not in config.stash:
        from pytest_sev.host import probe_host  # QEMU capability probe: only when asked
        cfg = run_config(config)
        ovmf = cfg.ovmf_code, cfg.ovmf_vars
        if ovmf[0] is None:
            from pytest_sev.qemu.firmware import find_ovmf
            ovmf = find_ovmf() or (None, None)
        config.stash[HOST_REPORT] = probe_host(qemu=cfg.qemu, ovmf_code=ovmf[0], ovmf_vars=ovmf[1])
    return config.stash[HOST_REPORT]


def verdict_line(config: pytest.Config) -> str:
    cfg = run_config(config)
    if cfg.mode == "off":
        return "pytest-sev: mode off (plain guests only; host not probed for SEV)"
    report = host_report(config)
    parts = [f"pytest-sev: mode {cfg.mode}"]
    for wants in ("sev-es", "sev"):
        first = report.first_failure(wants)
        parts.append(f"{wants}: " + ("READY" if first is None else f"NOT READY ({first.name}: {first.value})"))
    return "; ".join(parts)
