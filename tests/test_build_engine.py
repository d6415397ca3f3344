"""The recipe engine on a small real project: a C program in a local git repo.

Clone, checkout of a pinned ref, patch directory, real gcc build, cache hit,
rebuild when a patch or the branch changes, a failing build that names its
step and shows the log tail, and concurrent builders of one key.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_sev.build.engine import build, build_or_find
from pytest_sev.build.errors import BuildError
from pytest_sev.build.recipes import BuildOptions, Built, Recipe
from pytest_sev.build.sources import load_sources
from pytest_sev.build.steps import step
from pytest_sev.cache import ContentCache

HELLO = '#include <stdio.h>\nint main(void) { puts(GREETING); return 0; }\n'
MAKEFILE = 'GREETING ?= "hello"\nhello: hello.c\n\t$(CC) -DGREETING=\'$(GREETING)\' -o $@ hello.c\n'


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


class HelloRecipe(Recipe):
    """A build.sh-shaped recipe: make, make install into the staged prefix."""

    component = "hello"
    version = 1

    def inputs(self, source, opts):
        return {"prefix": opts.prefix}

    def steps(self, source, tree, out, opts):
        counter = out.parent / "builds.count"  # outside the entry: counts real builds
        return [step("make", "make", f"-j{opts.jobs}", cwd=tree),
                step("count", "sh", "-c", 'echo built >> "$1"', "count", counter),
                step("make install", "install", "-D", "hello", out / "root/usr/local/bin/hello", cwd=tree)]

    def collect(self, source, tree, out, opts):
        binary = out / "root/usr/local/bin/hello"
        version = subprocess.run([str(binary)], capture_output=True, text=True).stdout.strip()
        return Built({"hello": binary}, version)


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> dict:
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "cache"))
    repo = tmp_path / "hello"
    repo.mkdir()
    (repo / "hello.c").write_text(HELLO)
    (repo / "Makefile").write_text(MAKEFILE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "hello 1.0")
    git(repo, "tag", "-a", "v1.0", "-m", "release 1.0")
    patches = tmp_path / "hello-patches"
    patches.mkdir()
    sources = tmp_path / "sources.toml"
    sources.write_text('[qemu]\nurl = "file://%s"\nref = "v1.0"\npatches = "hello-patches"\n' % repo)
    return {"repo": repo, "patches": patches, "sources": sources, "cache": tmp_path / "cache"}


def _patch(text_from: str, text_to: str) -> str:
    return ("--- a/Makefile\n+++ b/Makefile\n@@ -1,3 +1,3 @@\n"
            f"-GREETING ?= \"{text_from}\"\n+GREETING ?= \"{text_to}\"\n"
            " hello: hello.c\n \t$(CC) -DGREETING='$(GREETING)' -o $@ hello.c\n")


def _build(project, **kw):
    src = load_sources(project["sources"])["qemu"]
    return build(src, BuildOptions(jobs=2), recipe=HelloRecipe(), **kw)


def _count(project) -> int:
    f = project["cache"] / "builds" / "builds.count"
    return len(f.read_text().splitlines()) if f.exists() else 0


def test_clone_patch_build_manifest_and_hit(project):
    (project["patches"] / "0001-greet.patch").write_text(_patch("hello", "hello, SEV-ES"))
    m = _build(project)
    assert m.version == "hello, SEV-ES"  # the patch was applied before the build
    # the annotated tag resolved to the commit it points at, and is recorded
    assert m.commit == git(project["repo"], "rev-parse", "v1.0^{commit}")
    assert m.ref == "v1.0" and m.source == f"file://{project['repo']}"
    binary = m.artifact("hello")
    assert m.artifacts["hello"]["sha256"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    entry = Path(m.entry)
    assert json.loads((entry / "manifest.json").read_text())["commit"] == m.commit
    log = (entry / "build.log").read_text()
    assert "=== step patch 0001-greet.patch" in log and "=== step make:" in log
    assert m.build_seconds > 0 and [s[0] for s in m.steps][-3:] == ["make", "count", "make install"]

    start = time.monotonic()
    again = _build(project)
    assert time.monotonic() - start < 1.0
    assert again.entry == m.entry and _count(project) == 1


def test_patch_change_and_new_commit_rebuild(project):
    patch = project["patches"] / "0001-greet.patch"
    patch.write_text(_patch("hello", "one"))
    first = _build(project)
    patch.write_text(_patch("hello", "two"))
    second = _build(project)
    assert (first.version, second.version) == ("one", "two")
    assert first.key != second.key and _count(project) == 2
    # patches apply in name order: 0002 sees 0001's result
    (project["patches"] / "0002-again.patch").write_text(_patch("two", "three"))
    assert _build(project).version == "three"
    # renaming the ref to a branch at a new commit rebuilds
    for p in project["patches"].iterdir():
        p.unlink()
    (project["repo"] / "Makefile").write_text(MAKEFILE.replace('"hello"', '"main"'))
    git(project["repo"], "commit", "-qam", "greet main")
    project["sources"].write_text(project["sources"].read_text().replace('"v1.0"', '"main"'))
    m = _build(project)
    assert m.version == "main" and m.commit == git(project["repo"], "rev-parse", "main")


def test_failing_build_names_step_keeps_log_leaves_no_entry(project):
    (project["repo"] / "hello.c").write_text("int main(void) { return syntax error; }\n")
    git(project["repo"], "commit", "-qam", "break it")
    project["sources"].write_text(project["sources"].read_text().replace('"v1.0"', '"main"'))
    with pytest.raises(BuildError) as info:
        _build(project)
    err = info.value
    assert err.step == "make" and "exit status 2" in str(err)
    assert "error" in err.log_tail and "hello.c" in err.log_tail  # gcc's message, in the tail
    assert err.log.exists() and "=== step make:" in err.log.read_text()
    entries = [p for p in (project["cache"] / "builds").iterdir() if not p.name.endswith((".lock", ".count"))]
    assert entries == []  # no half-written entry


def test_bad_patch_names_the_patch_step(project):
    (project["patches"] / "0001-bad.patch").write_text(_patch("not there", "x"))
    with pytest.raises(BuildError, match=r"'patch 0001-bad.patch' failed"):
        _build(project)


def test_unknown_ref_is_a_resolve_error(project):
    project["sources"].write_text(project["sources"].read_text().replace('"v1.0"', '"v9.9"'))
    with pytest.raises(BuildError, match="resolve ref.*v9.9"):
        _build(project)


def test_tarball_source_pinned_by_sha256(project, tmp_path):
    tarball = tmp_path / "hello-1.0.tar.gz"
    git(project["repo"], "archive", "--prefix=hello-1.0/", "-o", str(tarball), "v1.0")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    project["sources"].write_text(f'[qemu]\ntarball = "{tarball.name}"\nsha256 = "{digest}"\n')
    m = _build(project)
    assert m.version == "hello" and m.commit == f"sha256:{digest}"
    project["sources"].write_text(f'[qemu]\ntarball = "{tarball.name}"\nsha256 = "{"0" * 64}"\n')
    with pytest.raises(BuildError, match="verify tarball"):
        _build(project)


class ExtractRecipe(HelloRecipe):
    """Takes its tree its own way: the commit's files, the Makefile changed, a fixed date."""

    component = "extract"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path, Path]] = []

    def extract(self, source, commit, tree, work, runner):
        self.calls.append((commit, tree, work))
        tree.mkdir(parents=True)
        for name in ("hello.c", "Makefile"):
            text = git(Path(source.url.removeprefix("file://")), "show", f"{commit}:{name}")
            (tree / name).write_text(text.replace('"hello"', '"extracted"') + "\n")
        runner.note("=== extracted by the recipe")
        return 1234567890


def test_the_engine_builds_in_the_tree_the_recipes_extract_hook_made(project):
    recipe = ExtractRecipe()
    m, hit = build_or_find(load_sources(project["sources"])["qemu"], BuildOptions(jobs=2), recipe=recipe)
    assert not hit and m.version == "extracted"  # built from what extract wrote, not a checkout
    commit = git(project["repo"], "rev-parse", "v1.0^{commit}")
    [(got_commit, tree, work)] = recipe.calls
    assert got_commit == m.commit == commit
    assert tree == work / "src" and str(tree) == m.build_dir and work.name == f"qemu-{m.key[:12]}"
    assert m.source_date_epoch == 1234567890  # the hook's epoch, not the commit's date
    log = (Path(m.entry) / "build.log").read_text()
    assert "=== extracted by the recipe" in log and "=== step checkout" not in log
    assert "SOURCE_DATE_EPOCH=1234567890" in log
    again, hit = build_or_find(load_sources(project["sources"])["qemu"], BuildOptions(), recipe=recipe)
    assert hit and again.entry == m.entry and len(recipe.calls) == 1


def test_the_default_extract_hook_is_a_checkout_dated_by_the_commit(project, tmp_path):
    from pytest_sev.build.steps import StepRunner
    src = load_sources(project["sources"])["qemu"]
    commit = git(project["repo"], "rev-parse", "v1.0^{commit}")
    runner = StepRunner("qemu", tmp_path / "log")
    epoch = Recipe().extract(src, commit, tmp_path / "w" / "src", tmp_path / "w", runner)
    assert (tmp_path / "w" / "src" / "hello.c").read_text() == HELLO
    assert epoch == int(git(project["repo"], "show", "-s", "--format=%ct", commit))
    assert "=== step checkout" in (tmp_path / "log").read_text()


def test_an_extract_hook_that_raises_is_a_build_error_with_the_log_and_no_entry(project):
    class Broken(HelloRecipe):
        def extract(self, source, commit, tree, work, runner):
            raise OSError("disk on fire")

    with pytest.raises(BuildError) as info:
        build(load_sources(project["sources"])["qemu"], BuildOptions(), recipe=Broken())
    assert "OSError: disk on fire" in str(info.value) and info.value.log.exists()
    assert [p for p in (project["cache"] / "builds").iterdir() if not p.name.endswith(".lock")] == []


CONCURRENT = """
import sys
sys.path.insert(0, {tests!r})
from test_build_engine import HelloRecipe
from pytest_sev.build.engine import build, build_or_find
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import load_sources
m = build(load_sources({sources!r})["qemu"], BuildOptions(jobs=1), recipe=HelloRecipe())
print(m.entry)
"""


def test_concurrent_builders_of_one_key_build_once(project):
    code = CONCURRENT.format(tests=str(Path(__file__).parent), sources=str(project["sources"]))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    entries = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(entries) == 1 and _count(project) == 1


def test_cache_namespace_is_content_cache(project):
    m = _build(project)
    assert ContentCache("builds").get(m.key) == Path(m.entry)


# -- reproducibility: the build environment, pins, verify ----------------------------

class StampRecipe(HelloRecipe):
    """Writes what a build would take from the moment and the machine."""

    component = "stamp"

    def steps(self, source, tree, out, opts):
        script = ('printf "%s|%s|%s|%s|%s\\n" "$SOURCE_DATE_EPOCH" "$(date +%s)" "$TZ" "$PWD" '
                  '"$(umask)" > stamp.txt; echo x > f; gzip -c f > f.gz')
        return [step("stamp", "sh", "-c", script, cwd=tree)]

    def collect(self, source, tree, out, opts):
        import shutil
        for name in ("stamp.txt", "f.gz"):
            shutil.copy2(tree / name, out / name)
        return Built({"stamp.txt": out / "stamp.txt", "f.gz": out / "f.gz"}, "1")

    def environment(self, source, tree, work, epoch):
        from pytest_sev.build.reproducible import write_shims
        return {"PATH": f"{write_shims(work / 'shims')}:/usr/bin:/bin"}


def test_steps_see_the_commit_date_and_a_key_named_work_dir(project, monkeypatch):
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2001-02-03T04:05:06Z")
    git(project["repo"], "commit", "-q", "--allow-empty", "-m", "dated")
    project["sources"].write_text(project["sources"].read_text().replace('"v1.0"', '"main"'))
    src = load_sources(project["sources"])["qemu"]
    m = build(src, BuildOptions(), recipe=StampRecipe())
    epoch = 981173106
    sde, now, tz, pwd, umask = m.artifact("stamp.txt").read_text().strip().split("|")
    assert (int(sde), int(now), tz, umask) == (epoch, epoch, "UTC", "0022")  # date(1) answers the commit's date
    assert pwd == str(project["cache"] / "work" / f"qemu-{m.key[:12]}" / "src") == m.build_dir
    assert m.source_date_epoch == epoch and m.toolchain["gcc"]
    assert m.artifact("f.gz").read_bytes()[3] == 0  # gzip -n: no name, no mtime in the header


def test_pinned_hash_mismatch_fails_naming_artifact_and_both_hashes(project):
    m = _build(project)
    good = m.artifacts["hello"]["sha256"]
    text = project["sources"].read_text()
    project["sources"].write_text(text + f'[qemu.expect]\nhello = "{good}"\n')
    assert _build(project).entry == m.entry  # a matching pin: the cache hit stands
    project["sources"].write_text(text + f'[qemu.expect]\nhello = "{"0" * 64}"\n')
    with pytest.raises(BuildError) as info:
        _build(project)  # the cached entry does not match the pin: fails too
    assert f"hello: built sha256 {good}, pinned {'0' * 64}" in str(info.value)
    assert info.value.step == "verify artifacts"
    # a fresh build that differs fails and leaves no entry
    (project["patches"] / "0001-greet.patch").write_text(_patch("hello", "changed"))
    with pytest.raises(BuildError, match=r"hello: built sha256 [0-9a-f]{64}, pinned 0{64}"):
        _build(project)
    assert ContentCache("builds").get(build_key_of(project)) is None


def build_key_of(project) -> str:
    from pytest_sev.build.engine import build_key
    from pytest_sev.build.fetch import resolve
    src = load_sources(project["sources"])["qemu"]
    return build_key(src, resolve(src), HelloRecipe(), BuildOptions(jobs=2))


def test_verify_rebuilds_and_compares(project):
    from pytest_sev.build.engine import verify
    src = load_sources(project["sources"])["qemu"]
    ref, again, rows = verify(src, BuildOptions(jobs=2), recipe=HelloRecipe())
    assert rows == [("hello", ref.artifacts["hello"]["sha256"], again.artifacts["hello"]["sha256"], True)]
    assert again.entry != ref.entry and not Path(again.entry).exists()  # rebuilt outside the cache, removed
    assert len(list((project["cache"] / "build-logs").glob("qemu-*.log"))) == 2  # really built twice


class ClockRecipe(HelloRecipe):
    """Not reproducible on purpose: embeds the real clock."""

    component = "clock"

    def steps(self, source, tree, out, opts):
        return [step("clock", "sh", "-c", '/usr/bin/date +%s%N > "$1"', "clock", out / "clock.txt")]

    def collect(self, source, tree, out, opts):
        return Built({"clock.txt": out / "clock.txt"}, "1")


def test_verify_cli_reports_a_difference(project, capsys, monkeypatch):
    from pytest_sev.build import engine
    from pytest_sev.cli import build as cli
    monkeypatch.setattr(engine, "RECIPES", {"qemu": ClockRecipe()})
    assert cli.main(["qemu", "--sources", str(project["sources"]), "--verify"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS  clock.txt: reference sha256 " in out and "1 artifact(s) differ" in out
    # against another runner's manifest of the same key
    entry = next(p for p in (project["cache"] / "builds").iterdir() if (p / "manifest.json").exists())
    assert cli.main(["qemu", "--sources", str(project["sources"]), "--verify", "--against",
                     str(entry / "manifest.json")]) == 1
    assert f"reference {entry / 'manifest.json'}" in capsys.readouterr().out
    # --against alone: this cache's entry against the other manifest, no rebuild
    assert cli.main(["qemu", "--sources", str(project["sources"]), "--against",
                     str(entry / "manifest.json")]) == 0
    out = capsys.readouterr().out
    assert f"entry {entry}" in out and "all artifacts bit-identical" in out
