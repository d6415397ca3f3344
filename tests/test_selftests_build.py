"""The KVM SEV selftests build (pytest_sev.build.selftests) and the suite's items.

Pure parts first (no build): the recipe's steps and targets, the tree
layout it reads, the settings file, the sources table, a missing local tree.

Then, where the local tree exists (``bash scripts/local-sources.sh
linux-6.12``; about 2 minutes once), the real thing: the programs build from
Debian's linux-source 6.12 (about 40 s here the first time), a second build
is a cache hit, the built ``sev_smoke_test`` prints on this machine what
fixtures/ktap/here-*.out captured, and suites/test_upstream.py runs its items
in an inner pytest against a recorded SEV-ES-ready host
(fixtures/hosts/epyc-milan-6.8-ready, reconstructed, see its meta.json), so
the mode table lets the items run and the *real* programs run here: they
skip for want of SEV in this CPU, which auto reports as a skip with the
program's reason line and ``--sev-es`` as a failure.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_sev.build.engine import build_key
from pytest_sev.build.errors import BuildError, SourcesError
from pytest_sev.build.fetch import resolve
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import BuildOptions, Built
from pytest_sev.build.selftests import (
    DEFAULT_TIMEOUT,
    KVM_DIR,
    LOCAL_SOURCES_HINT,
    PROGRAMS,
    RECIPE,
    TREE_PATHS,
    KvmSelftestsRecipe,
    arch_dir,
    build_selftests,
    local_tree_missing,
    programs_in,
    programs_of,
    settings_timeout,
    timeout_of,
)
from pytest_sev.build.sources import Source, load_sources, parse_source
from pytest_sev.build.steps import StepRunner, step
from pytest_sev.host import selftests as runner

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "fixtures" / "sources" / "local.toml"


def _tree(tmp_path: Path, arch: str, programs: tuple[str, ...]) -> Path:
    tree = tmp_path / "tree"
    sub = tree / KVM_DIR / arch
    sub.mkdir(parents=True)
    for p in programs:
        (sub / f"{p}.c").write_text("int main(void) { return 0; }\n")
    return tree


def _source(url: str = "file:///nonexistent/linux-6.12") -> Source:
    return parse_source("kvm-selftests", {"url": url, "ref": "debian/6.12.118-1_deb12u1"}, REPO)


# -- pure ------------------------------------------------------------------------------

def test_settings_timeout():
    assert settings_timeout("timeout=120\n") == 120.0
    assert settings_timeout("# none\n") is None


@pytest.mark.parametrize("arch", ["x86_64", "x86"])
def test_the_tree_decides_the_arch_directory_and_the_programs(tmp_path, arch):
    tree = _tree(tmp_path, arch, ("sev_migrate_tests",))
    assert arch_dir(tree) == arch
    assert programs_in(tree) == ["sev_migrate_tests"]  # a 6.1 tree: only this one


def test_steps_make_headers_then_only_the_sev_programs(tmp_path):
    tree = _tree(tmp_path, "x86_64", PROGRAMS)
    steps = RECIPE.steps(_source(), tree, tmp_path / "out", BuildOptions(jobs=3))
    assert [s.name for s in steps] == ["make headers", "make SEV selftests"]
    assert steps[0].argv == ("make", "-j3", "headers") and steps[0].cwd == tree
    kvm = tree / KVM_DIR
    assert steps[1].argv == ("make", "-C", str(kvm), "-j3", f"EXTRA_CFLAGS=-ffile-prefix-map={tree}/=",
                             *(str(kvm / "x86_64" / p) for p in PROGRAMS))


def test_a_tree_without_any_sev_program_is_a_named_build_error(tmp_path):
    tree = _tree(tmp_path, "x86_64", ())
    with pytest.raises(BuildError, match="the tree has none of sev_smoke_test"):
        RECIPE.steps(_source(), tree, tmp_path / "out", BuildOptions())


def test_the_tree_paths_are_what_the_build_was_found_to_need():
    # tools/lib: kvm/lib/rbtree.c includes ../../../../lib/rbtree.c (the build fails without it)
    for needed in ("Makefile", "scripts", "include", "arch/x86", "tools/lib", "tools/include", KVM_DIR):
        assert needed in TREE_PATHS


def test_the_key_follows_the_commit_and_the_recipe():
    src, opts = _source(), BuildOptions()
    a = build_key(src, "a" * 40, RECIPE, opts)
    assert a == build_key(src, "a" * 40, RECIPE, BuildOptions(jobs=8))  # -j is not an input
    assert a != build_key(src, "b" * 40, RECIPE, opts)
    assert RECIPE.inputs(src, opts)["programs"] == list(PROGRAMS)


def test_a_missing_local_tree_names_the_command_that_makes_it(tmp_path):
    assert local_tree_missing(_source()) == f"no kernel tree at /nonexistent/linux-6.12 (make it: {LOCAL_SOURCES_HINT})"
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    assert local_tree_missing(_source(f"file://{tmp_path / 'repo'}")) is None
    assert local_tree_missing(_source("https://git.kernel.org/x/linux.git")) is None


def test_local_toml_pins_the_6_12_tree_and_unknown_tables_stay_refused(tmp_path):
    src = load_sources(LOCAL)["kvm-selftests"]
    assert src.url.endswith("/linux-6.12") and src.ref == "debian/6.12.118-1_deb12u1"
    bad = tmp_path / "s.toml"
    bad.write_text('[kvm-selftest]\nurl = "x"\nref = "y"\n')
    with pytest.raises(SourcesError, match="unknown component"):
        load_sources(bad)


def test_timeout_from_the_entrys_settings(tmp_path):
    (tmp_path / "settings").write_text("timeout=45\n")
    m = Manifest(component="kvm-selftests", source="", ref="", commit="", version="",
                 artifacts={"settings": {"path": str(tmp_path / "settings"), "sha256": ""}})
    assert timeout_of(m) == 45.0
    assert timeout_of(Manifest(component="kvm-selftests", source="", ref="", commit="", version="")) == DEFAULT_TIMEOUT


# -- the engine with this recipe's extraction, on a tiny tree ---------------------------------

EPOCH = 1700000000


@pytest.fixture
def tiny_tree(tmp_path: Path, monkeypatch) -> Source:
    """A git repo shaped like a kernel tree: some of TREE_PATHS, and a directory outside them."""
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "linux"
    for rel in ("Makefile", "include/linux/x.h", f"{KVM_DIR}/x86_64/sev_smoke_test.c", f"{KVM_DIR}/settings",
                "drivers/gpu/huge.c", "Documentation/index.rst"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(f"{rel}\n")
    env = dict(os.environ, GIT_COMMITTER_DATE=f"@{EPOCH} +0000", GIT_AUTHOR_DATE=f"@{EPOCH} +0000")
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "tiny"], ["tag", "v1"]):
        subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True, env=env)
    return parse_source("kvm-selftests", {"url": f"file://{repo}", "ref": "v1"}, REPO)


class _ListingRecipe(KvmSelftestsRecipe):
    """The real extraction, then a listing of the tree instead of make."""

    def steps(self, source, tree, out, opts):
        return [step("list", "sh", "-c", 'find . -type f | sort > "$1"', "list", out / "files.txt", cwd=tree)]

    def collect(self, source, tree, out, opts):
        return Built({"files.txt": out / "files.txt"}, "6.12.0")


def test_the_extraction_takes_only_the_tree_paths_and_the_commits_date(tiny_tree, tmp_path):
    commit = resolve(tiny_tree)
    work = tmp_path / "work"
    work.mkdir()
    epoch = RECIPE.extract(tiny_tree, commit, work / "src", work, StepRunner("kvm-selftests", tmp_path / "log"))
    files = sorted(str(p.relative_to(work / "src")) for p in (work / "src").rglob("*") if p.is_file())
    assert files == ["Makefile", "include/linux/x.h", f"{KVM_DIR}/settings", f"{KVM_DIR}/x86_64/sev_smoke_test.c"]
    assert epoch == EPOCH and not (work / "tree.tar").exists()
    assert "=== paths taken from the tree: Makefile include " in (tmp_path / "log").read_text()


def test_build_selftests_is_the_engines_build_with_this_extraction(tiny_tree, monkeypatch, caplog):
    from pytest_sev.build import selftests
    monkeypatch.setattr(selftests, "RECIPE", _ListingRecipe())
    caplog.set_level(logging.INFO, "pytest_sev.build.selftests")
    m = build_selftests(tiny_tree)
    assert m.key == build_key(tiny_tree, m.commit, RECIPE, BuildOptions())  # the engine's key, the recipe's inputs
    assert m.component == "kvm-selftests" and m.source_date_epoch == EPOCH and m.inputs == RECIPE.inputs(tiny_tree, BuildOptions())
    assert m.artifact("files.txt").read_text().split() == [
        "./Makefile", "./include/linux/x.h", f"./{KVM_DIR}/settings", f"./{KVM_DIR}/x86_64/sev_smoke_test.c"]
    logs = list((Path(os.environ["PYTEST_SEV_CACHE"]) / "build-logs").glob(f"kvm-selftests-{m.key[:12]}-*.log"))
    assert len(logs) == 1 and "=== paths taken from the tree" in logs[0].read_text()
    assert not (Path(os.environ["PYTEST_SEV_CACHE"]) / "work" / f"kvm-selftests-{m.key[:12]}").exists()
    again = build_selftests(tiny_tree)
    assert again.entry == m.entry
    lines = [r.getMessage() for r in caplog.records if r.name == "pytest_sev.build.selftests"]
    assert [ln.rsplit("(", 1)[1] for ln in lines] == [f"built in {m.build_seconds} s)", "cache hit)"]
    assert lines[1] == f"kvm-selftests: {tiny_tree.url} v1 commit {m.commit[:12]} key {m.key[:12]} (cache hit)"


def test_pins_and_keep_work_hold_for_the_selftests_too(tiny_tree, monkeypatch):
    from pytest_sev.build import selftests
    monkeypatch.setattr(selftests, "RECIPE", _ListingRecipe())
    monkeypatch.setenv("PYTEST_SEV_KEEP_WORK", "1")
    m = build_selftests(tiny_tree)
    assert (Path(m.build_dir) / "Makefile").is_file()  # the work directory is kept
    tiny_tree.expect["files.txt"] = "0" * 64
    with pytest.raises(BuildError, match=r"verify artifacts.*files.txt: built sha256 [0-9a-f]{64}, pinned 0{64}"):
        build_selftests(tiny_tree)


# -- real: the local 6.12 tree ----------------------------------------------------------------

@pytest.fixture(scope="module")
def built() -> Manifest:
    src = load_sources(LOCAL)["kvm-selftests"]
    missing = local_tree_missing(src)
    if missing:
        pytest.skip(missing)
    return build_selftests(src, BuildOptions(jobs=2, nice=19))


@pytest.mark.timeout(900)
def test_the_sev_programs_build_and_a_second_build_is_a_cache_hit(built):
    assert set(programs_of(built)) == set(PROGRAMS)
    for path in programs_of(built).values():
        assert path.stat().st_mode & 0o111
    assert re.fullmatch(r"6\.12\.\d+", built.version) and re.fullmatch(r"[0-9a-f]{40}", built.commit)
    assert "programs from tools/testing/selftests/kvm/x86_64" in built.notes
    assert [s[0] for s in built.steps][-2:] == ["make headers", "make SEV selftests"]
    start = time.monotonic()
    again = build_selftests(load_sources(LOCAL)["kvm-selftests"])
    assert again.entry == built.entry and time.monotonic() - start < 5
    assert timeout_of(built) == 120.0  # the 6.12 tree's kvm/settings


def _cpu_has_sev() -> bool:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return "sev" in flags.split(":", 1)[1].split()


def test_the_built_program_prints_here_what_the_fixture_captured(built):
    if _cpu_has_sev():
        pytest.skip("this CPU has SEV: the captured no-SEV skip does not apply")
    run = runner.run_program(programs_of(built)["sev_smoke_test"], timeout=60)
    captured = (REPO / "fixtures" / "ktap" / "here-sev_smoke_test-skip.out").read_text()
    assert run.output == captured and run.exit_code == 4
    assert run.verdict.outcome == "skip"


_INNER_CONFTEST = '''
import os
import tempfile
from pathlib import Path

from pytest_sev.host.recorded import load_recorded
from pytest_sev.plugin.state import HOST_REPORT


def pytest_configure(config):
    """This machine's programs, a recorded SEV-ES-ready host's report (the mode table runs them)."""
    scratch = Path(tempfile.mkdtemp(prefix="replay-host-"))
    config.stash[HOST_REPORT] = load_recorded(Path(os.environ["REPLAY_HOST"]), scratch).probe()
'''


def _inner(tmp_path: Path, *args: str, sources: Path = LOCAL) -> subprocess.CompletedProcess:
    work = tmp_path / "suites"
    work.mkdir(parents=True)
    shutil.copy(REPO / "suites" / "test_upstream.py", work / "test_upstream.py")
    (work / "conftest.py").write_text(_INNER_CONFTEST)
    budget = tmp_path / "budget"
    budget.mkdir()
    env = dict(os.environ, REPLAY_HOST=str(REPO / "fixtures" / "hosts" / "epyc-milan-6.8-ready"),
               PYTEST_SEV_BUDGET_DIR=str(budget))
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(work), "-p", "no:cacheprovider", "-o", "sev_allure=false",
         f"--rootdir={tmp_path}", f"--sources={sources}", "-rA", "-q", "-n", "0",
         "-k", "test_kvm_selftests_build or test_kvm_sev_selftest", *args],  # the file's other suites: not these
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(900)
def test_items_on_a_ready_host_report_the_programs_own_skip_in_auto(built, tmp_path):
    if _cpu_has_sev():
        pytest.skip("this CPU has SEV: the programs would really run")
    proc = _inner(tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"\b1 passed, 3 skipped\b", out), out[-3000:]
    side = rf"\(host kernel {re.escape(runner.host_kernel())}, selftests from 6\.12\.\d+ tree commit {built.commit[:12]}\)"
    for prog, reason in (("sev_smoke_test", "kvm_cpu_has(X86_FEATURE_SEV)"),
                         ("sev_migrate_tests", "kvm_cpu_has(X86_FEATURE_SEV)"),
                         ("sev_init2_tests", "__kvm_has_device_attr(kvm_fd, KVM_X86_GRP_SEV")):
        assert re.search(rf"^SKIPPED .*{prog}: Requirement not met: {re.escape(reason)}.* {side}$", out, re.M), out


@pytest.mark.timeout(900)
def test_items_on_a_ready_host_fail_the_programs_own_skip_under_sev_es(built, tmp_path):
    if _cpu_has_sev():
        pytest.skip("this CPU has SEV: the programs would really run")
    proc = _inner(tmp_path, "--sev-es")
    out = proc.stdout
    assert proc.returncode == 1, out[-3000:]
    assert re.search(r"\b3 failed, 1 passed\b", out), out[-3000:]
    for prog in PROGRAMS:
        assert re.search(rf"^FAILED \S+\[{prog}\]", out, re.M), out
        assert re.search(rf"^{prog}: --sev-es demands it, but it skipped: Requirement not met", out, re.M), out
    assert "Random seed: 0x6b8b4567" in out  # the raw output is in the report of a failed item


def _sources_file(tmp_path: Path, url: str, ref: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(f'[kvm-selftests]\nurl = "{url}"\nref = "{ref}"\n')
    return path


@pytest.mark.timeout(600)
def test_a_missing_tree_skips_the_build_in_auto_naming_the_command_and_fails_under_sev_es(tmp_path):
    sources = _sources_file(tmp_path, "file:///nonexistent/linux-6.12", "debian/6.12.118-1_deb12u1")
    auto = _inner(tmp_path / "auto", sources=sources)
    assert auto.returncode == 0, auto.stdout[-3000:]
    assert re.search(rf"^SKIPPED .*no kernel tree at /nonexistent/linux-6.12 \(make it: {re.escape(LOCAL_SOURCES_HINT)}\)",
                     auto.stdout, re.M), auto.stdout[-3000:]
    strict = _inner(tmp_path / "strict", "--sev-es", sources=sources)
    assert strict.returncode == 1 and re.search(r"\b4 failed\b", strict.stdout), strict.stdout[-3000:]
    assert "--sev-es demands the kernel's SEV selftests, but they cannot be built: no kernel tree" in strict.stdout


@pytest.mark.timeout(600)
def test_a_broken_build_fails_even_in_auto(built, tmp_path):
    repo = load_sources(LOCAL)["kvm-selftests"].url
    auto = _inner(tmp_path, sources=_sources_file(tmp_path, repo, "no-such-tag"))
    assert auto.returncode == 1 and re.search(r"\b4 failed\b", auto.stdout), auto.stdout[-3000:]
    assert "the kernel's SEV selftests did not build: kvm-selftests: build step 'resolve ref' failed: " \
           "'no-such-tag' is neither a branch nor a tag" in auto.stdout
