"""The DMA guests' static fio (pytest_sev.build.fio, FioRecipe): the recipe, the
lookup's fallbacks, and the real build in the initramfs of a booted guest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_sev.build import fio as fio_build
from pytest_sev.build.recipes import RECIPES, BuildOptions, FioRecipe
from pytest_sev.build.sources import parse_source
from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.images.default_kernel import default_kernel
from pytest_sev.images.initramfs import build_initramfs


def test_the_recipe_builds_fio_alone_static_without_network_engines(tmp_path):
    recipe = RECIPES["fio"]
    assert isinstance(recipe, FioRecipe)
    source = parse_source("fio", {"url": str(tmp_path), "ref": "x"}, Path("/"))
    configure, make = recipe.steps(source, tmp_path, tmp_path / "out", BuildOptions(jobs=3))
    assert configure.argv[:2] == ("./configure", "--build-static")
    assert {"--disable-rbd", "--disable-rados", "--disable-gfapi", "--disable-rdma", "--disable-http"} <= set(configure.argv)
    assert f"--extra-cflags=-ffile-prefix-map={tmp_path}/=" in configure.argv
    assert make.argv == ("make", "-j3", "fio")
    assert recipe.inputs(source, BuildOptions(jobs=1)) == recipe.inputs(source, BuildOptions(jobs=8))  # jobs: no new key


def _sources(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text)
    return path


def test_no_fio_table_means_the_hosts_fio(tmp_path):
    fio, why = fio_build.static_fio(_sources(tmp_path, '[kernel]\nurl = "/k"\nref = "x"\n'))
    assert fio is None and why.endswith("has no [fio] table")


def test_a_missing_tree_names_how_to_make_it(tmp_path):
    fio, why = fio_build.static_fio(_sources(tmp_path, f'[fio]\nurl = "{tmp_path}/none"\nref = "x"\n'))
    assert fio is None and "bash scripts/local-sources.sh fio" in why and f"{tmp_path}/none" in why


def test_a_broken_sources_file_is_said(tmp_path):
    fio, why = fio_build.static_fio(_sources(tmp_path, "[fio\n"))
    assert fio is None and "sources.toml" in why


def test_a_failing_build_falls_back_saying_why(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "README").write_text("no configure here\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   check=True)
    fio, why = fio_build.static_fio(_sources(tmp_path, f'[fio]\nurl = "{repo}"\nref = "main"\n'))
    assert fio is None and why.startswith("the static fio did not build: ")


@pytest.fixture(scope="module")
def built_fio() -> Path:
    fio, why = fio_build.static_fio()
    if fio is None:
        pytest.skip(f"no static fio here: {why}")
    return fio


def test_the_built_fio_is_static_with_the_libaio_engine(built_fio):
    ldd = subprocess.run(["ldd", str(built_fio)], capture_output=True, text=True)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr
    engines = subprocess.run([str(built_fio), "--enghelp"], capture_output=True, text=True).stdout.split()
    assert "libaio" in engines and "rbd" not in engines


def test_the_guest_initramfs_carries_it_without_libraries(built_fio):
    with_static = build_initramfs(default_kernel(), with_fio=True, fio_binary=built_fio)
    with_host = build_initramfs(default_kernel(), with_fio=True)
    assert with_static.has_fio and with_static.key != with_host.key
    # the 88 MB of the host fio's libraries are gone
    assert with_static.path.stat().st_size * 4 < with_host.path.stat().st_size


@pytest.mark.qemu
def test_a_dma_guest_runs_the_static_fio(built_fio):
    spec = default_guest_spec(with_fio=True, memory_mib=512, name="static-fio")
    with Guest(spec) as guest:
        out = guest.check("fio --version; echo LD=${LD_LIBRARY_PATH:-none}; fio --enghelp | grep -c '^\\s*libaio$'")
    version, ld, libaio = out.split()
    assert version.startswith("fio-3") and ld == "LD=none" and libaio == "1"
