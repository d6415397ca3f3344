"""pytest11 entry point ``sev-report``: the Allure side of pytest-sev.

Separate from :mod:`pytest_sev.plugin` so reporting can be switched off
(``-p no:sev-report``) or changed without touching guest control. Hooks:

- ``pytest_configure`` (tryfirst, before allure-pytest's): default results
  directory (see :mod:`.resultsdir`);
- ``pytest_collection_modifyitems`` (tryfirst, before allure-pytest's label
  selection): default labels (see :mod:`.labels`);
- ``pytest_runtest_setup``: the runner as a test parameter, so the same test
  from two runners has two history ids instead of looking like retries;
- ``pytest_runtest_call``: the host report on host-suite tests;
- ``pytest_sessionfinish``: ``environment.properties`` and
  ``categories.json`` (controller only under xdist); the guests' provenance
  (what each guest's argv ran, :mod:`pytest_sev.reporting.provenance`) is
  merged into the environment: an xdist worker writes its guests' records to
  ``<results>/.sev-provenance/<worker>.json``, the controller reads and
  removes them.

The results directory is a sink that never stops the run: one that cannot
be written is a one-line usage error at start-up; one that fills up mid-run
is reported once (:mod:`.sinks`) and allure-pytest's writes to it are
skipped from then on, so the tests keep running and every guest is torn down.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pytest_sev.config import ConfigError, check_writable_dir
from pytest_sev.plugin import hookspecs, labels, sinks
from pytest_sev.plugin.host_attach import attach_host_report
from pytest_sev.reporting import categories, environment, provenance, resultsdir
from pytest_sev.reporting.runner_name import runner_name

INI_ENABLE = "sev_allure"
RESULTS = pytest.StashKey[Path | None]()
CHOSE_DEFAULT = pytest.StashKey[bool]()
#: per-worker guest provenance files, under the results directory
PROVENANCE_DIR = ".sev-provenance"
RUNNER = pytest.StashKey[str]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    hookspecs.register(pluginmanager)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(INI_ENABLE, "pytest-sev: without --alluredir, write Allure results (with environment "
                  "and categories) to reports/allure-results when the rootdir has reports/ (default true)",
                  type="bool", default=True)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def results_dir(config: pytest.Config) -> Path | None:
    """The Allure results directory of this run, or None when Allure is off."""
    return config.stash.get(RESULTS, None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.stash[RUNNER] = runner_name()
    option = config.option
    if not hasattr(option, "allure_report_dir"):  # allure-pytest not loaded
        config.stash[RESULTS] = None
        return
    chose = False
    if not option.allure_report_dir:
        default = resultsdir.default_results_dir(config.rootpath, bool(config.getini(INI_ENABLE)))
        if default is not None:
            option.allure_report_dir = str(default)
            chose = True
            if not _is_worker(config) and not option.collectonly:
                _check_results_dir(default, "the default Allure results directory")
                try:
                    resultsdir.empty_results_dir(default)
                except OSError as exc:
                    raise pytest.UsageError(f"pytest-sev: the default Allure results directory {default}: "
                                            f"{sinks.why(exc)} (--alluredir elsewhere, or -o sev_allure=false)"
                                            ) from None
    config.stash[CHOSE_DEFAULT] = chose
    directory = option.allure_report_dir
    config.stash[RESULTS] = Path(os.path.abspath(directory)) if directory else None
    if directory and not chose and not option.collectonly:
        _check_results_dir(Path(os.path.abspath(directory)), "--alluredir")
    if directory and not _is_worker(config):  # records of an earlier run that died
        shutil.rmtree(Path(directory) / PROVENANCE_DIR, ignore_errors=True)


def _check_results_dir(directory: Path, what: str) -> None:
    try:
        check_writable_dir(directory, what)
    except ConfigError as exc:
        hint = " (--alluredir elsewhere, or -o sev_allure=false)" if what != "--alluredir" else ""
        raise pytest.UsageError(f"pytest-sev: {exc}{hint}") from None


#: allure-commons hooks that write into the results directory
_WRITING_HOOKS = ("report_result", "report_container", "report_attached_file",
                  "report_attached_data", "report_globals")


def _guard_allure_writes(config: pytest.Config, directory: Path) -> None:
    """Make allure-pytest's file logger report a failing write once instead
    of raising it into pytest (INTERNALERROR, the rest of the run lost)."""
    import allure_commons
    from allure_commons.logger import AllureFileLogger

    for name in _WRITING_HOOKS:
        caller = getattr(allure_commons.plugin_manager.hook, name, None)
        if caller is None:
            continue
        for impl in caller.get_hookimpls():
            if not isinstance(impl.plugin, AllureFileLogger) or getattr(impl.function, "_sev_guarded", False):
                continue

            def guarded(*args, _write=impl.function, **kwargs):
                if sinks.SINK_FAILURES in config.stash and str(directory) in config.stash[sinks.SINK_FAILURES]:
                    return None  # already failed: skip quietly
                try:
                    return _write(*args, **kwargs)
                except OSError as exc:
                    sinks.sink_failed(config, directory, sinks.why(exc))
                    return None

            guarded._sev_guarded = True  # type: ignore[attr-defined]
            impl.function = guarded


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    directory = results_dir(session.config)
    if directory is not None:
        _guard_allure_writes(session.config, directory)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    runner = config.stash[RUNNER]
    for item in items:
        labels.apply_labels(item, config.rootpath, runner)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if results_dir(item.config) is None:
        return
    import allure
    allure.dynamic.parameter("runner", item.config.stash[RUNNER])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    # tryfirst: runs after allure-pytest's wrapper made the test the current
    # result, before the test body (whose failure would skip later impls).
    if results_dir(item.config) is None:
        return
    if labels.suite_of(item.path, item.config.rootpath) == "host":
        attach_host_report(item.config)


def _write_worker_provenance(config: pytest.Config, directory: Path) -> None:
    records = provenance.session_records()
    if not records:
        return
    out = directory / PROVENANCE_DIR
    out.mkdir(parents=True, exist_ok=True)
    worker = config.workerinput.get("workerid", str(os.getpid()))  # type: ignore[attr-defined]
    (out / f"{worker}.json").write_text(json.dumps(records))


def _merged_provenance(directory: Path) -> list[dict]:
    """This process's guests, then every worker's (in worker order)."""
    records = provenance.session_records()
    merged = directory / PROVENANCE_DIR
    for path in sorted(merged.glob("*.json")):
        try:
            records.extend(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    shutil.rmtree(merged, ignore_errors=True)
    return records


def _environment(config: pytest.Config, ran: list[dict] | None = None) -> dict[str, object]:
    from pytest_sev.plugin.state import RUN_CONFIG, host_report
    from pytest_sev.qemu.accel import choose_accel
    cfg = config.stash.get(RUN_CONFIG, None)  # None with -p no:sev
    report = accel = None
    extra: list = []
    if cfg is not None:
        try:
            report = host_report(config)
        except Exception as exc:  # noqa: BLE001 - say so in the file, keep the rest
            extra.append({"host.probe": f"failed: {type(exc).__name__}: {exc}"})
        accel = choose_accel(cfg.accel)
    extra.extend(config.pluginmanager.hook.pytest_sev_report_environment(config=config))
    return environment.collect(cfg, report, config.stash[RUNNER], accel, extra, ran or [])


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    directory = results_dir(config)
    if directory is None or config.option.collectonly:
        return
    if _is_worker(config):
        try:
            _write_worker_provenance(config, directory)
        except OSError as exc:
            sinks.sink_failed(config, directory, sinks.why(exc))
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        categories.write_categories(directory)
        environment.write_environment(directory, _environment(config, _merged_provenance(directory)))
    except OSError as exc:
        sinks.sink_failed(config, directory, sinks.why(exc))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    directory = results_dir(config)
    if directory is None or _is_worker(config):
        return
    how = " (default; --alluredir to change, sev_allure=false to turn off)" if config.stash.get(
        CHOSE_DEFAULT, False) else ""
    terminalreporter.write_line(f"pytest-sev: Allure results in {directory}{how}; "
                                "HTML report: scripts/report.sh")
