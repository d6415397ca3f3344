"""pytest hooks of the core plugin: options, start-up validation, header,
markers that apply the mode table, outcome bookkeeping.

Markers (registered here, read here): ``@pytest.mark.sev_es`` and
``@pytest.mark.sev`` say a test needs an SEV-ES / SEV guest; before any
fixture is set up (so before any boot) the plugin applies design.md's mode
table to them: run, skip naming the failing host check (auto), or fail
naming it (``--sev-es``/``--sev``).  ``@pytest.mark.plain`` marks a test on
plain guests, which runs in every mode.  Suites never call the table by hand,
as qemu_test's ``require_accelerator`` and labgrid's ``lg_feature`` do it.

Signals: SIGTERM (what CI systems send on cancel) is handled like Ctrl-C:
pytest stops at the next point, tears every fixture down (so every guest is
stopped and its work directory cleaned), prints the summary and exits 2. A
second SIGTERM during that teardown is logged and ignored (the teardown is
bounded anyway).  pytest-timeout's ``thread`` method would ``os._exit`` from
its timer thread (no teardown, no summary): the plugin takes that timer over
and turns its expiry into the same SIGTERM, falling back to pytest-timeout's
own exit only if the run does not end within :data:`THREAD_TIMEOUT_GRACE`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Generator
from typing import Any

import pytest

from pytest_sev.modes import SEV_KINDS
from pytest_sev.plugin import hookspecs, sinks
from pytest_sev.plugin.mode_table import apply_to_item
from pytest_sev.plugin.options import add_options, read_config
from pytest_sev.plugin.state import RUN_CONFIG, max_guests, run_config, verdict_line
from pytest_sev.qemu.accel import choose_accel

MARKERS = (
    "qemu: boots a real guest under QEMU",
    "sev_es: needs an SEV-ES guest (the mode table decides run/skip/fail before any boot)",
    "sev: needs an SEV guest (the mode table decides run/skip/fail before any boot)",
    "plain: runs on plain (unencrypted) guests, in every mode",
)
#: marker name -> the readiness it asks of the host
MARKER_WANTS = {kind.replace("-", "_"): kind for kind in SEV_KINDS}
#: after pytest-timeout's thread method fired, how long teardown may take before its os._exit
THREAD_TIMEOUT_GRACE = 30.0

log = logging.getLogger(__name__)
PREVIOUS_SIGTERM = pytest.StashKey[Any]()
BACKSTOPS = pytest.StashKey[list[threading.Timer]]()


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, _on_second_sigterm)  # let the teardown finish
    raise KeyboardInterrupt(SIGTERM_TEXT)


SIGTERM_TEXT = "SIGTERM"


def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> None:
    if excinfo.value.args[:1] == (SIGTERM_TEXT,):
        config = _CONFIG[0] if _CONFIG else None
        reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
        if reporter is not None:
            reporter.ensure_newline()
            for note in _NOTES:
                reporter.write_line(note, red=True, bold=True)
            reporter.write_line("pytest-sev: SIGTERM: stopping like Ctrl-C (every guest is torn down)",
                                yellow=True, bold=True)


def _on_second_sigterm(signum: int, frame: Any) -> None:
    log.warning("pytest-sev: SIGTERM again during teardown: ignored, the teardown is bounded")


_CONFIG: list[pytest.Config] = []
#: lines to print when the SIGTERM arrives (why it was sent)
_NOTES: list[str] = []


def _install_sigterm(config: pytest.Config) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    _CONFIG[:] = [config]
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        config.stash[PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)


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
    _install_sigterm(config)


#: guests one xdist worker may hold at once: the session's shared guest and a test's own
GUESTS_PER_WORKER = 2


def check_workers_fit(config: pytest.Config) -> None:
    """An explicit ``-n N`` whose workers could together need more guests than
    the budget allows would wait on itself: a one-line error at start-up."""
    workers = getattr(config.option, "numprocesses", None)
    if not isinstance(workers, int) or workers < 2 or hasattr(config, "workerinput"):
        return
    budget = max_guests(config)
    if workers * GUESTS_PER_WORKER > budget:
        raise pytest.UsageError(
            f"pytest-sev: -n {workers} workers may hold {workers * GUESTS_PER_WORKER} guests at once, "
            f"more than the guest budget of {budget} (--max-guests): use -n auto, or fewer workers")


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own CPU count (firstresult)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: as many workers as the host's guest budget can serve."""
    return max(1, max_guests(config) // GUESTS_PER_WORKER)


def pytest_unconfigure(config: pytest.Config) -> None:
    for timer in config.stash.get(BACKSTOPS, []):
        timer.cancel()
    if PREVIOUS_SIGTERM in config.stash and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, config.stash[PREVIOUS_SIGTERM] or signal.SIG_DFL)
        del config.stash[PREVIOUS_SIGTERM]
        _CONFIG.clear()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for line in sinks.summary_lines(config):
        terminalreporter.write_line(line, yellow=True, bold=True)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """pytest-timeout's thread method, with a teardown: see the module docstring."""
    if settings.method != "thread" or PREVIOUS_SIGTERM not in item.config.stash:
        return None  # signal method (or our SIGTERM handler not in place): pytest-timeout's own

    def expired() -> None:
        _NOTES.append(f"+++ Timeout (>{settings.timeout:g}s) in {item.nodeid} (pytest-timeout, thread "
                      "method): pytest-sev stops the run like SIGTERM (teardown, summary) +++")
        from pytest_timeout import timeout_timer  # its dump and os._exit, if we cannot stop
        backstop = threading.Timer(THREAD_TIMEOUT_GRACE, timeout_timer, (item, settings))
        backstop.daemon = True
        item.config.stash.setdefault(BACKSTOPS, []).append(backstop)
        backstop.start()
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(settings.timeout, expired)
    timer.name = f"pytest-sev timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    timer.start()
    return True


def pytest_report_header(config: pytest.Config) -> list[str]:
    cfg = run_config(config)
    accel = choose_accel(cfg.accel)
    return [verdict_line(config), f"pytest-sev: accelerator {accel.name} ({accel.reason})"]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply the mode table to ``sev_es``/``sev`` markers before any fixture."""
    for marker, wants in MARKER_WANTS.items():
        if item.get_closest_marker(marker) is not None:
            apply_to_item(item, wants)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report so fixtures can keep logs of failures."""
    report = yield
    setattr(item, f"sev_rep_{report.when}", report)
    return report
