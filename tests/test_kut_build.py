"""kvm-unit-tests' amd_sev as a build and a guest disk: the recipe's refusals,
the CLI's routing of host checks, the FAT-disk spec and its argv (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.build import kut
from pytest_sev.build.errors import BuildError, SourcesError
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import parse_source
from pytest_sev.cli import build as cli
from pytest_sev.errors import SpecError
from pytest_sev.model.spec import Disk, Firmware, GuestSpec
from pytest_sev.qemu.argv import TEST_DEVICES, build_argv, efi_app_argv


def _source(url: str, component: str = kut.COMPONENT):
    return parse_source(component, {"url": url, "ref": "main"}, Path("/"))


def test_a_tree_without_amd_sev_is_refused_by_name(tmp_path):
    with pytest.raises(BuildError, match="no x86/amd_sev.c"):
        kut.RECIPE.steps(_source(str(tmp_path)), tmp_path, tmp_path / "out", BuildOptions())


def test_the_recipe_builds_only_the_one_efi_target(tmp_path):
    (tmp_path / "x86").mkdir()
    (tmp_path / "x86" / "amd_sev.c").write_text("")
    steps = kut.RECIPE.steps(_source(str(tmp_path)), tmp_path, tmp_path / "out", BuildOptions(jobs=3))
    assert [s.argv[0] for s in steps] == ["./configure", "make"]
    assert "--enable-efi" in steps[0].argv and steps[1].argv[-2:] == ("-j3", "x86/amd_sev.efi")


def test_collect_without_the_program_fails(tmp_path):
    with pytest.raises(BuildError, match="make left no"):
        kut.RECIPE.collect(_source(str(tmp_path)), tmp_path, tmp_path, BuildOptions())


def test_a_local_path_that_is_no_repository(tmp_path):
    assert "no kvm-unit-tests repository" in (kut.tree_missing(_source(str(tmp_path))) or "")
    (tmp_path / ".git").mkdir()
    assert kut.tree_missing(_source(str(tmp_path))) is None
    assert kut.tree_missing(_source("https://example.invalid/kvm-unit-tests.git")) is None


def test_host_check_sources_and_fallback():
    kernel = _source("/k", "kernel")
    assert cli._host_check_source("kvm-selftests", {"kernel": kernel}) is kernel
    with pytest.raises(SourcesError, match=r"no \[kvm-unit-tests\] table"):
        cli._host_check_source("kvm-unit-tests", {"kernel": kernel})
    with pytest.raises(SourcesError, match=r"\[kvm-selftests\] or \[kernel\]"):
        cli._host_check_source("kvm-selftests", {})


def test_host_checks_are_built_on_their_own(capsys):
    assert cli.main(["kvm-unit-tests", "qemu"]) == 2
    assert cli.main(["kvm-selftests", "--verify"]) == 2
    assert "built into the cache on their own" in capsys.readouterr().err


def test_a_sources_file_without_the_tree_is_one_line(tmp_path, capsys):
    sources = tmp_path / "s.toml"
    sources.write_text('[kernel]\nurl = "/nowhere"\nref = "x"\n')
    assert cli.main(["kvm-unit-tests", "--sources", str(sources)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "build: the sources file has no [kvm-unit-tests] table"


def test_unknown_names_list_the_host_checks(capsys):
    with pytest.raises(SystemExit):
        cli.main(["kvm-unit-test"])
    assert "kvm-unit-tests" in capsys.readouterr().err


def test_vvfat_disk_argv_and_refusals(tmp_path):
    esp = Disk(tmp_path, format="vvfat", readonly=True, iommu_platform=True, disable_legacy=True)
    fw = Firmware("ovmf", code=tmp_path / "CODE.fd", vars_template=tmp_path / "VARS.fd")
    spec = GuestSpec(name="efi", memory_mib=256, vcpus=1, firmware=fw, disks=(esp,))
    argv = efi_app_argv(spec, qemu="qemu", accel="tcg", qemu_version=(7, 2), serial_log=tmp_path / "c.log",
                        vars_path=tmp_path / "v.fd")
    drive = f"file.driver=vvfat,file.dir={tmp_path},if=none,id=disk0,format=raw,readonly=on"
    assert drive in argv
    assert "virtio-blk-pci,drive=disk0,id=vblk0,disable-legacy=on,iommu_platform=on" in argv
    assert f"file,id=serial0,path={tmp_path / 'c.log'}" in argv
    assert argv[-len(TEST_DEVICES):] == list(TEST_DEVICES) and "-mon" not in argv
    # the same machine as a harness-driven guest: only the console and monitor differ
    full = build_argv(spec, qemu="qemu", accel="tcg", qemu_version=(7, 2), serial_fd=3, qmp_fd=4,
                      vars_path=tmp_path / "v.fd")
    assert full[:full.index("-chardev")] == argv[:argv.index("-chardev")]
    with pytest.raises(SpecError, match="read-only"):
        Disk(tmp_path, format="vvfat")
    with pytest.raises(SpecError, match="cannot take a ','"):
        Disk(tmp_path / "a,b")


def test_libvirt_refuses_a_directory_disk(tmp_path):
    import xml.etree.ElementTree as ET

    from pytest_sev.libvirt.domain_xml import _disk
    with pytest.raises(SpecError, match="vvfat"):
        _disk(ET.Element("devices"), Disk(tmp_path, format="vvfat", readonly=True), 0, False)
