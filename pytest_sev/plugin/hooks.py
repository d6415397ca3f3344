"""pytest hooks of the core plugin: options, start-up validation, header,
markers that apply the mode table, outcome bookkeeping.

Markers (registered here, read here): ``@pytest.mark.sev_snp``,
``@pytest.mark.sev_es`` and ``@pytest.mark.sev`` say a test needs an SEV-SNP /
SEV-ES / SEV guest; before any
fixture is set up (so before any boot) the plugin applies design.md's mode
table to them (:mod:`.mode_table`), on every collected item: run, skip naming
the failing or unanswerable host check (auto), or fail naming it
(``--sev-snp``/``--sev-es``/``--sev``).  ``@pytest.mark.plain`` marks a test on
plain guests, which runs in every mode.  Suites never call the table by hand,
as qemu_test's ``require_accelerator`` and labgrid's ``lg_feature`` do it.

Signals (SIGTERM, pytest-timeout's thread method) are :mod:`.signals`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_sev.plugin import hookspecs, signals, sinks
from pytest_sev.plugin.mode_table import ModeTableRefusal, apply_to_item, fail_in_call_phase
from pytest_sev.plugin.options import add_options, read_config
from pytest_sev.plugin.state import RUN_CONFIG, max_guests, run_config, verdict_line
from pytest_sev.qemu.accel import choose_accel

MARKERS = (
    "qemu: boots a real guest under QEMU",
    "sev_snp: needs an SEV-SNP guest (the mode table decides run/skip/fail before any boot)",
    "sev_es: needs an SEV-ES guest (the mode table decides run/skip/fail before any boot)",
    "sev: needs an SEV guest (the mode table decides run/skip/fail before any boot)",
    "plain: runs on plain (unencrypted) guests, in every mode",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    hookspecs.register(pluginmanager)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUN_CONFIG] = read_config(config)
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if not config.pluginmanager.hasplugin("xdist"):  # suites group their guests for --dist loadgroup
        config.addinivalue_line("markers", "xdist_group(name): tests that share a guest run in one xdist worker")
    check_workers_fit(config)
    signals.install(config)


#: guests one xdist worker may hold at once: the session's shared guest and a test's own
GUESTS_PER_WORKER = 2


def workers_for(budget: int) -> int:
    """The most workers whose guests can never wait on each other for ever.

    A worker waiting for a slot holds at most ``GUESTS_PER_WORKER - 1``
    guests; while one slot is left over, some worker gets its last guest,
    finishes its test and gives it back. So ``workers * (GUESTS_PER_WORKER
    - 1) + 1 <= budget``: 3 workers on the 2-CPU budget of 4, where
    ``budget // GUESTS_PER_WORKER`` gave 2 and left a CPU idle while the DMA
    rows waited on their throttled disks (measured: the main job 52 s with
    2 workers, 43 s with 3; never more guests at once than the budget)."""
    return max(1, (budget - 1) // (GUESTS_PER_WORKER - 1))


def check_workers_fit(config: pytest.Config) -> None:
    """An explicit ``-n N`` whose workers could wait on each other's guests
    for ever is a one-line error at start-up."""
    workers = getattr(config.option, "numprocesses", None)
    if not isinstance(workers, int) or workers < 2 or hasattr(config, "workerinput"):
        return
    budget = max_guests(config)
    if workers > workers_for(budget):
        raise pytest.UsageError(
            f"pytest-sev: -n {workers} workers holding up to {GUESTS_PER_WORKER} guests each could wait on "
            f"each other for ever with a guest budget of {budget} (--max-guests; at most "
            f"{workers_for(budget)} workers): use -n auto, or fewer workers")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own CPU count (firstresult)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: as many workers as the host's guest budget can serve."""
    return workers_for(max_guests(config))


def pytest_unconfigure(config: pytest.Config) -> None:
    signals.uninstall(config)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for line in sinks.summary_lines(config):
        terminalreporter.write_line(line, yellow=True, bold=True)


def pytest_report_header(config: pytest.Config) -> list[str]:
    cfg = run_config(config)
    accel = choose_accel(cfg.accel)
    return [verdict_line(config), f"pytest-sev: accelerator {accel.name} ({accel.reason})"]


@pytest.hookimpl(wrapper=True, trylast=True)  # inside pytest's own wrappers (logging, capture), before any fixture
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    """Apply the mode table to ``sev_es``/``sev`` markers (and the guest
    fixtures) before any fixture; a fixture whose SEV guest the table refused
    makes the test fail in its call phase, as a marked test does."""
    apply_to_item(item)
    try:
        return (yield)
    except ModeTableRefusal as refusal:
        fail_in_call_phase(item, refusal.decision.reason)
        return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """``guest_factory`` refused an SEV guest in the test body: the same failure."""
    try:
        return (yield)
    except ModeTableRefusal as refusal:
        reason = refusal.decision.reason
    pytest.fail(reason, pytrace=False)  # outside the except: the refusal is the whole story


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report so fixtures can keep logs of failures."""
    report = yield
    setattr(item, f"sev_rep_{report.when}", report)
    return report
