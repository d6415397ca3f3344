"""pytest11 entry point ``sev-build``: component options and the fixture.

Options (ini keys of the same name, underscores): ``--sources FILE`` (the
TOML pins, default fixtures/sources/local.toml or ``$PYTEST_SEV_SOURCES``),
``--components SPEC`` (``qemu=system,ovmf=system,kernel=build``), and
``--run-builds`` (let self-tests do real, slow component builds).  Bad values
are a one-line usage error at start-up, before any test or build runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_sev.build.components import (
    MAIN_ARTIFACTS,
    Choice,
    Components,
    parse_components,
    resolve_components,
    run_config_overrides,
)
from pytest_sev.build.errors import SourcesError
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import Source, default_sources_file, load_sources
from pytest_sev.plugin import hookspecs

_PLAN = pytest.StashKey[dict]()
_SOURCES = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sev-build", "pytest-sev: components (QEMU, OVMF, guest kernel)")
    group.addoption("--sources", dest="sev_sources", default=None,
                    help="TOML file pinning component sources (default fixtures/sources/local.toml)")
    group.addoption("--components", dest="sev_components", default=None,
                    help="where components come from: e.g. qemu=system,ovmf=prefix:/usr/local,kernel=build")
    group.addoption("--build-jobs", dest="sev_build_jobs", default=None,
                    help="make -jN for component builds (default 2)")
    group.addoption("--run-builds", dest="sev_run_builds", action="store_true", default=None,
                    help="run self-tests that do real (slow) component builds")
    parser.addini("sources", "TOML file pinning component sources", default=None)
    parser.addini("components", "where components come from (system | prefix:PATH | build)", default=None)
    parser.addini("build_jobs", "make -jN for component builds", default=None)
    parser.addini("run_builds", "run self-tests that do real component builds", type="bool", default=None)


def _get(config: pytest.Config, dest: str, ini: str):
    value = config.getoption(dest)
    if value is None:
        value = config.getini(ini)
    return value if value not in ("", None) else None


def _sources_path(config: pytest.Config) -> Path:
    value = _get(config, "sev_sources", "sources")
    if value is None:
        return default_sources_file()
    path = Path(value)
    return path if path.is_absolute() else Path(config.rootpath) / path


def build_options(config: pytest.Config) -> BuildOptions:
    jobs = _get(config, "sev_build_jobs", "build_jobs") or 2
    return BuildOptions(jobs=int(jobs), nice=19)


@pytest.hookimpl
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "builds: does a real component build (needs --run-builds)")
    try:
        plan = parse_components(_get(config, "sev_components", "components"))
        jobs = _get(config, "sev_build_jobs", "build_jobs")
        if jobs is not None and (not str(jobs).isdigit() or int(jobs) < 1):
            raise SourcesError(f"--build-jobs: {jobs!r} is not a positive integer")
        sources: dict[str, Source] = {}
        wants_build = any(c.kind == "build" for c in plan.values())
        explicit = _get(config, "sev_sources", "sources") is not None
        if wants_build or explicit:
            sources = load_sources(_sources_path(config))
        for comp, choice in plan.items():
            if choice.kind == "build" and comp not in sources:
                raise SourcesError(f"{comp}=build: {_sources_path(config)} has no [{comp}] table")
            if choice.kind == "prefix" and (choice.path is None or not choice.path.exists()):
                raise SourcesError(f"--components: {comp}=prefix:{choice.path}: no such path")
    except SourcesError as exc:
        raise pytest.UsageError(f"pytest-sev: {exc}") from None
    config.stash[_PLAN] = plan
    config.stash[_SOURCES] = sources


def component_plan(config: pytest.Config) -> dict[str, Choice]:
    return config.stash.get(_PLAN, None) or parse_components(None)


@pytest.fixture(scope="session")
def components(pytestconfig: pytest.Config) -> Components:
    """QEMU, OVMF (CODE, VARS) and guest kernel for the session, per ``--components``.

    ``.qemu``, ``.ovmf_code``, ``.ovmf_vars``, ``.kernel`` are paths;
    ``.manifests`` says where each came from (built ones: URL, ref, commit,
    artifact hashes, build time).
    """
    plan = component_plan(pytestconfig)
    sources = pytestconfig.stash.get(_SOURCES, None) or {}
    return resolve_components(plan, sources, build_options(pytestconfig))


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    hookspecs.register(pluginmanager)


def pytest_sev_config_overrides(request: pytest.FixtureRequest) -> dict[str, Any] | None:
    """QEMU, OVMF and guest kernel from ``--components`` where they are not ``system``."""
    components = request.getfixturevalue("components")
    return run_config_overrides(component_plan(request.config), components)


def pytest_sev_report_environment(config: pytest.Config) -> dict[str, str] | None:
    """Component sources, commits and artifact hashes for the Allure environment table
    (what was *built*; what each guest ran is in ``ran.*``, from the argv)."""
    from pytest_sev.build.manifest import session_manifests
    from pytest_sev.reporting.environment import component_entries
    used = [m for m in session_manifests() if m.commit]  # system components have no commit
    if not used:
        return None
    entries = component_entries({m.component: m.commit for m in used})
    entries.update({f"component.{m.component}.source": f"{m.source} {m.ref}".strip() for m in used})
    for m in used:
        entries[f"component.{m.component}.build"] = (f"{m.version} recipe {m.recipe_version} key {m.key[:12]} "
                                                     f"SOURCE_DATE_EPOCH={m.source_date_epoch}")
        for name in MAIN_ARTIFACTS.get(m.component, ()):
            if name in m.artifacts:
                entries[f"component.{m.component}.{name}"] = m.artifacts[name]["sha256"]
    return entries

