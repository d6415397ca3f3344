"""Upstream checks: the kernel's own KVM SEV selftests, one item per program.

``sev_smoke_test``, ``sev_init2_tests`` and ``sev_migrate_tests`` are built
from the pinned kernel tree (the sources file's ``[kvm-selftests]`` table,
else its ``[kernel]`` one; fixtures/sources/local.toml pins Debian's
linux-source 6.12, made a local repo by ``bash scripts/local-sources.sh
linux-6.12``), only those programs, cached by commit and recipe
(pytest_sev.build.selftests).  They test the *running host kernel*, so every
item names the host kernel and the tree's commit side by side.

Items are collected from the recipe's program list, so collection needs no
build.  Each is marked ``sev``: the mode table decides before anything runs
(auto: skip naming the failing host check; ``--sev``/``--sev-es``: fail
naming it); under ``--sev-es`` the host must also be ready for SEV-ES (the
programs test SEV-ES where KVM offers it, and a pass without it proves
nothing there).  A program's own skip (exit 4) skips in auto with its reason
line and fails in a mode that demands it, as any SEV item's skip does; a
subtest it skipped or an "SEV-ES not supported" line fails there too.

Why one item per program, with each TAP/KTAP subtest as an Allure step of
its own (pass / skipped / failed, with its reason): the subtests are only
known once the program has run (the SEV programs print none when they pass,
kselftest_harness ones print their plan), so they cannot be collected; a
step per subtest under the program's item keeps them beside the program's
raw output (attached) and the provenance, which Allure shows on one page.

``test_kvm_selftests_build`` is not marked: the build runs on every runner
(here too), so a broken tree or recipe shows up before an SEV runner needs it.

``test_kvm_unit_tests_amd_sev[plain|sev|sev-es]``: kvm-unit-tests'
``x86/amd_sev`` (pytest_sev.build.kut, from the sources file's
``[kvm-unit-tests]`` tree: none is assumed, no registry carries it) booted
by OVMF as a guest of each kind (pytest_sev.guest.efi_app); its check lines
and QEMU's exit status are the verdict (pytest_sev.sev.kut), checked against
the launch: the plain control must say "AMD SEV not enabled", an SEV-ES guest
"SEV-ES is enabled.", an SEV guest "SEV-ES is not enabled.".
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import allure
import pytest

from pytest_sev.build import kut
from pytest_sev.build.errors import BuildError, SourcesError
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.selftests import (
    COMPONENT,
    PROGRAMS,
    build_selftests,
    local_tree_missing,
    programs_of,
    timeout_of,
)
from pytest_sev.build.sources import Source, default_sources_file, load_sources
from pytest_sev.guest.budget import acquire_for, slot_dir
from pytest_sev.guest.efi_app import esp_disk, make_esp, run_efi_program
from pytest_sev.guest.specs import cbitpos_of, efi_program_spec
from pytest_sev.host import selftests as runner
from pytest_sev.host.decide import DEMANDS
from pytest_sev.plugin.mode_table import guard_guest
from pytest_sev.plugin.state import guest_budget, host_report, run_config
from pytest_sev.qemu.accel import choose_accel
from pytest_sev.sev import kut as kutout

log = logging.getLogger(__name__)

pytestmark = [allure.epic("pytest-sev"), allure.feature("upstream checks"),
              pytest.mark.xdist_group("upstream-selftests")]

PARAMS = [pytest.param(p, id=p, marks=pytest.mark.sev) for p in PROGRAMS]


#: build key -> seconds this session waited for the build (a cache hit: well under one)
_WALL: dict[str, float] = {}


class Unavailable(Exception):
    """The selftests are not built: why, and how to fix it.  ``broken`` when
    the build was tried and failed, or the sources file is wrong (a failure
    in every mode); else the tree is simply not there (a skip in auto)."""

    def __init__(self, why: str, *, broken: bool = False) -> None:
        super().__init__(why)
        self.broken = broken


def _demanding_flag(config: pytest.Config) -> str | None:
    """``--sev-es`` (or ``--sev``) when the run's mode demands SEV, else None."""
    mode = str(run_config(config).mode)
    return f"--{mode}" if "sev" in DEMANDS.get(mode, ()) else None


def _sources_file(config: pytest.Config) -> Path:
    value = config.getoption("sev_sources", None) or config.getini("sources") or None
    if value is None:
        return default_sources_file()
    path = Path(value)
    return path if path.is_absolute() else Path(config.rootpath) / path


def _table(config: pytest.Config, *names: str) -> tuple[Path, Source | None]:
    """The sources file and the first of its *names* tables it has (None: none);
    a file that cannot be read is a broken run."""
    path = _sources_file(config)
    try:
        sources = load_sources(path)
    except SourcesError as exc:
        raise Unavailable(str(exc), broken=True) from None
    return path, next((sources[n] for n in names if n in sources), None)


def _build_options(config: pytest.Config) -> BuildOptions:
    """The run's ``--build-jobs`` (ini ``build_jobs``, default 2), at the lowest priority."""
    jobs = config.getoption("sev_build_jobs", None) or config.getini("build_jobs") or 2
    return BuildOptions(jobs=int(jobs), nice=19)


def _source(config: pytest.Config) -> Source:
    path, source = _table(config, COMPONENT, "kernel")
    if source is None:
        raise Unavailable(f"{path} has neither a [{COMPONENT}] nor a [kernel] table", broken=True)
    missing = local_tree_missing(source)
    if missing:
        raise Unavailable(missing)
    return source


@pytest.fixture(scope="session")
def kvm_selftests(pytestconfig) -> Manifest | Unavailable:
    """The built SEV selftests (a cache hit after the first build), or why not."""
    try:
        source = _source(pytestconfig)
    except Unavailable as exc:
        return exc
    start = time.monotonic()
    try:
        manifest = build_selftests(source, _build_options(pytestconfig))
    except BuildError as exc:
        return Unavailable(str(exc), broken=True)
    _WALL[manifest.key] = time.monotonic() - start
    return manifest


def _require(config: pytest.Config, built: Manifest | Unavailable) -> Manifest:
    """The manifest, or the item ends: a failure when the build broke or the
    mode demands SEV, a skip when the tree is just not there (auto)."""
    if isinstance(built, Manifest):
        return built
    if built.broken:
        pytest.fail(f"the kernel's SEV selftests did not build: {built}", pytrace=False)
    flag = _demanding_flag(config)
    if flag:
        pytest.fail(f"{flag} demands the kernel's SEV selftests, but they cannot be built: {built}", pytrace=False)
    pytest.skip(f"kernel SEV selftests not built: {built}")


def _provenance(m: Manifest) -> dict:
    return {"host kernel (what is tested)": runner.host_kernel(),
            "selftests tree": f"{m.source} {m.ref}".strip(), "tree commit": m.commit,
            "tree version": m.version, "build key": m.key[:12], "entry": m.entry}


def _side_by_side(m: Manifest) -> str:
    return f"host kernel {runner.host_kernel()}, selftests from {m.version} tree commit {m.commit[:12]}"


def test_kvm_selftests_build(pytestconfig, kvm_selftests):
    """The SEV programs build from the pinned tree (or come from the cache)."""
    m = _require(pytestconfig, kvm_selftests)
    allure.attach(m.to_json(), name=f"{COMPONENT} manifest", attachment_type=allure.attachment_type.JSON)
    allure.attach(json.dumps(_provenance(m), indent=1), name="provenance",
                  attachment_type=allure.attachment_type.JSON)
    built = programs_of(m)
    assert built, f"no SEV program was built: {m.notes}"
    for prog, path in built.items():
        assert path.is_file() and path.stat().st_mode & 0o111, f"{prog}: {path} is not an executable"
    wall = _WALL.get(m.key)
    this_run = "" if wall is None else f"; this session waited {wall:.1f} s"
    print(f"{COMPONENT}: {', '.join(built)} ({_side_by_side(m)}; built in {m.build_seconds} s{this_run}; "
          f"entry {m.entry})")


@contextlib.contextmanager
def _host_to_itself(config: pytest.Config):
    """Every SEV and SEV-ES slot of the guest budget (and one plain), held while
    a program runs: the programs create several SEV VMs at once, behind the
    budget's back otherwise, and a guest of another worker would find its
    ASIDs gone ("SEV ASIDs exhausted")."""
    from pytest_sev.guest.budget import SlotPool, slot_dir
    held = []
    timeout = run_config(config).guest_timeout
    try:
        for kind in ("plain", "sev", "sev-es"):
            budget = guest_budget(config, kind)
            size = budget.size(kind)
            pool = SlotPool(slot_dir(), kind, size, budget.describe(kind))
            for _ in range(1 if kind == "plain" else size):
                held.append(pool.acquire(timeout))
        yield
    finally:
        for slot in held:
            slot.release()


def _report_subtests(run: runner.ProgramRun) -> None:
    """One Allure step per TAP/KTAP result (passed, skipped or failed with its reason)."""
    results = run.verdict.parsed.results
    if not results:
        with contextlib.suppress(AssertionError, pytest.skip.Exception), \
                allure.step(f"{run.program}: {run.verdict.outcome} ({run.verdict.reason})"):
            _raise_for(run.verdict.outcome, run.verdict.reason)
        return
    for r in results:
        why = r.reason or r.detail
        with contextlib.suppress(AssertionError, pytest.skip.Exception), \
                allure.step(f"{r.title}: {r.status}" + (f" ({why})" if why else "")):
            _raise_for({"pass": "pass", "xfail": "pass", "todo": "skip"}.get(r.status, r.status), why)


def _raise_for(outcome: str, why: str) -> None:
    """Give an Allure step its status: a skip or an assertion inside it."""
    if outcome == "skip":
        pytest.skip(why)
    if outcome != "pass":
        raise AssertionError(why)


@pytest.mark.parametrize("program", PARAMS)
def test_kvm_sev_selftest(program, request, kvm_selftests):
    """Run one SEV selftest on the host kernel; its verdict, subtests and output."""
    config = request.config
    if "sev-es" in DEMANDS.get(str(run_config(config).mode), ()):
        guard_guest(config, "sev-es")  # --sev-es: the host must be ready for SEV-ES too
    m = _require(config, kvm_selftests)
    # shown, not part of the test's identity: history stays one line across kernel upgrades
    allure.dynamic.parameter("host kernel", runner.host_kernel(), excluded=True)
    allure.dynamic.parameter("tree commit", m.commit[:12], excluded=True)
    binary = programs_of(m).get(program)
    flag = _demanding_flag(config)
    if binary is None:
        why = f"{program} is not in the selftests tree ({_side_by_side(m)}; {'; '.join(m.notes)})"
        if flag:
            pytest.fail(f"{flag} demands it, but {why}", pytrace=False)
        pytest.skip(why)
    with _host_to_itself(config):
        run = runner.run_program(binary, timeout=timeout_of(m))
    allure.attach(run.output or "(no output)", name=f"{program} output", attachment_type=allure.attachment_type.TEXT)
    allure.attach(json.dumps({**_provenance(m), "argv": list(run.argv), "exit": run.exit_code,
                              "timed out": run.timed_out, "seconds": run.seconds, "limit": run.timeout},
                             indent=1), name=f"{program} run", attachment_type=allure.attachment_type.JSON)
    print(run.output)  # the raw output, in pytest's report of a failed item too
    _report_subtests(run)
    judged = runner.demanded(run.verdict, demanding_flag=flag)
    reason = f"{program}: {judged.reason} ({_side_by_side(m)})"
    if judged.action == "skip":
        pytest.skip(reason)
    if judged.action == "fail":
        pytest.fail(reason, pytrace=False)
    log.info("%s", reason)


# -- kvm-unit-tests' amd_sev ---------------------------------------------------------

#: the guest kinds amd_sev runs as: the plain control and the two SEV launches
#: (SEV-SNP boots -bios firmware only; kvm-unit-tests' EFI programs take pflash)
KUT_KINDS = [pytest.param("plain", id="plain"),
             pytest.param("sev", id="sev", marks=pytest.mark.sev),
             pytest.param("sev-es", id="sev-es", marks=pytest.mark.sev_es)]
#: seconds amd_sev.efi may take from QEMU's start to its exit (about 4 s here under TCG)
KUT_TIMEOUT = 120.0


def _kut_source(config: pytest.Config) -> Source:
    path, source = _table(config, kut.COMPONENT)
    if source is None:
        raise Unavailable(f"no kvm-unit-tests tree given: add a [{kut.COMPONENT}] table (url, ref) to {path} "
                          "(no package registry carries kvm-unit-tests)")
    missing = kut.tree_missing(source)
    if missing:
        raise Unavailable(missing, broken=True)
    return source


@pytest.fixture(scope="session")
def kvm_unit_tests(pytestconfig) -> Manifest | Unavailable:
    """``amd_sev.efi`` built from the given kvm-unit-tests tree (cached), or why not."""
    try:
        source = _kut_source(pytestconfig)
    except Unavailable as exc:
        return exc
    try:
        return kut.build_amd_sev(source, _build_options(pytestconfig))
    except BuildError as exc:
        return Unavailable(str(exc), broken=True)


@pytest.mark.qemu
@pytest.mark.parametrize("kind", KUT_KINDS)
def test_kvm_unit_tests_amd_sev(kind, request, kvm_unit_tests):
    """kvm-unit-tests' x86/amd_sev booted by OVMF as *kind*; the plain run is the
    control (it must say "AMD SEV not enabled"), an SEV/SEV-ES run must pass and
    say which of the two it found itself in."""
    config = request.config
    if isinstance(kvm_unit_tests, Unavailable):
        if kvm_unit_tests.broken:
            pytest.fail(f"kvm-unit-tests' amd_sev did not build: {kvm_unit_tests}", pytrace=False)
        pytest.skip(str(kvm_unit_tests))  # optional: only where a runner names a tree
    m = kvm_unit_tests
    cfg = run_config(config)
    allure.dynamic.parameter("tree commit", m.commit[:12], excluded=True)
    flag = _demanding_flag(config) if kind != "plain" else None
    cbitpos = cbitpos_of(host_report(config)) if kind != "plain" else None
    workdir = Path(tempfile.mkdtemp(prefix=f"sev-kut-{kind}-"))
    slots = []
    try:
        esp = make_esp(workdir, kut.program_of(m))
        spec = efi_program_spec(cfg, kind, esp_disk(esp), cbitpos)
        slots = acquire_for(guest_budget(config, kind), kind, slot_dir(), timeout=cfg.guest_timeout)
        run = run_efi_program(spec, program=kut.PROGRAM, workdir=workdir / "run", qemu=cfg.qemu,
                              accel=choose_accel(cfg.accel), timeout=KUT_TIMEOUT)
    finally:
        for slot in slots:
            slot.release()
        shutil.rmtree(workdir, ignore_errors=True)
    allure.attach(run.output or "(nothing printed)", name="amd_sev console",
                  attachment_type=allure.attachment_type.TEXT)
    allure.attach(json.dumps({"argv": list(run.argv), "qemu exit": run.exit_code, "timed out": run.timed_out,
                              "frozen": run.frozen, "seconds": run.seconds, "limit": run.timeout,
                              "qemu stderr": run.stderr, "tree": f"{m.source} {m.ref}".strip(),
                              "tree commit": m.commit, "entry": m.entry}, indent=1),
                  name="amd_sev run", attachment_type=allure.attachment_type.JSON)
    print(run.output)
    if run.frozen:
        pytest.fail(f"amd_sev ({kind}): {run.frozen}", pytrace=False)
    verdict = kutout.against_launch(kutout.judge(run.output, run.exit_code, timed_out=run.timed_out,
                                                 timeout=run.timeout, stderr=run.stderr), kind)
    for r in verdict.parsed.results:
        with contextlib.suppress(AssertionError, pytest.skip.Exception), \
                allure.step(f"{r.title}: {r.status}"):
            _raise_for({"pass": "pass", "xfail": "pass"}.get(r.status, r.status), r.reason or r.title)
    judged = runner.demanded(verdict, demanding_flag=flag)
    reason = f"amd_sev as {kind}: {judged.reason} (kvm-unit-tests {m.commit[:12]}, QEMU exit {run.exit_code})"
    if judged.action == "skip":
        pytest.skip(reason)
    if judged.action == "fail":
        pytest.fail(reason, pytrace=False)
    log.info("%s", reason)
