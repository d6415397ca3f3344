"""Per-run state shared by hooks and fixtures (kept in ``config.stash``).

The host is probed once per process and the mode decision derives from that
one report, so the header line and every skip/fail reason agree.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pytest_sev.config import RunConfig
from pytest_sev.host.report import Readiness, names

if TYPE_CHECKING:
    from pytest_sev.guest.budget import Budget

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
    for wants in ("sev-es", "sev", "sev-snp"):  # every kind, whichever the mode demands
        parts.append(f"{wants}: {readiness_word(report.readiness(wants))}")
    return "; ".join(parts)


def readiness_word(readiness: Readiness) -> str:
    """The header's word for one mode: READY only when every needed check passed."""
    if readiness.failed:
        first = readiness.failed[0]
        return f"NOT READY ({first.name}: {first.value})"
    if readiness.unanswered:
        return f"UNDETERMINED (could not answer: {names(readiness.unanswered)})"
    return "READY"


def max_guests(config: pytest.Config) -> int:
    """``--max-guests``, else what this host's CPUs and memory hold."""
    from pytest_sev.config import ConfigError, parse_max_guests
    from pytest_sev.guest.budget import default_max_guests
    if RUN_CONFIG in config.stash:
        given = run_config(config).max_guests
    else:  # xdist asks for -n auto before pytest_configure made the RunConfig
        try:
            given = parse_max_guests(config.getoption("max_guests", None) or config.getini("max_guests") or None)
        except ConfigError:
            given = None  # pytest_configure stops the run with this error
    if given is not None:
        return given
    mem_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    return default_max_guests(os.cpu_count() or 1, mem_mib)


def guest_budget(config: pytest.Config, kind: str) -> Budget:
    """The host's guest budget; SEV kinds read ASID counts from the host report."""
    from pytest_sev.guest.budget import budget_for, read_misc_current
    facts = host_report(config).facts if kind != "plain" else {}
    return budget_for(facts, max_guests=max_guests(config),
                      in_use=read_misc_current() if kind != "plain" else None)
