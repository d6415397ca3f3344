"""How a run stops when told to: SIGTERM and pytest-timeout's thread method.

SIGTERM (what CI systems send on cancel) is handled like Ctrl-C: pytest
stops at the next point, tears every fixture down (so every guest is stopped
and its work directory cleaned), prints the summary and exits 2. A second
SIGTERM during that teardown is logged and ignored (the teardown is bounded
anyway).  pytest-timeout's ``thread`` method would ``os._exit`` from its
timer thread (no teardown, no summary): the plugin takes that timer over and
turns its expiry into the same SIGTERM, falling back to pytest-timeout's own
exit only if the run does not end within :data:`THREAD_TIMEOUT_GRACE`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import pytest

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


def install(config: pytest.Config) -> None:
    """SIGTERM stops the run like Ctrl-C (main thread only; a handler already set is kept)."""
    if threading.current_thread() is not threading.main_thread():
        return
    _CONFIG[:] = [config]
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        config.stash[PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _on_sigterm)


def uninstall(config: pytest.Config) -> None:
    """Cancel pending backstops and put the previous SIGTERM handler back."""
    for timer in config.stash.get(BACKSTOPS, []):
        timer.cancel()
    if PREVIOUS_SIGTERM in config.stash and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, config.stash[PREVIOUS_SIGTERM] or signal.SIG_DFL)
        del config.stash[PREVIOUS_SIGTERM]
        _CONFIG.clear()


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
