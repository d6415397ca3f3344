"""The AmdSev OVMF (OvmfPkg/AmdSev/AmdSevX64.dsc) through every layer, without
building it: the recipe, the optional ``ovmf-amdsev`` component, ``--ovmf-amdsev``,
the ``amdsev`` firmware kind (``-bios``), preloads (QEMU's generic loader),
``kernel-hashes=on``, libvirt's rendering and the spec assemblers.

The real build, boot and secret read run in tests/test_build_real.py
(``--run-builds``) and suites/test_attestation.py::test_secret_reaches_guest.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_sev.build.components import Choice, Components, parse_components, run_config_overrides
from pytest_sev.build.errors import SourcesError
from pytest_sev.build.kconfig import secret_notes
from pytest_sev.build.recipes import AMDSEV_BUILD_SCRIPT, RECIPES, BuildOptions
from pytest_sev.build.sources import COMPONENTS, default_sources_file, load_sources
from pytest_sev.cli import build as build_cli
from pytest_sev.config import RunConfig, build_config
from pytest_sev.errors import ConfigError, SpecError
from pytest_sev.guest.specs import amdsev_firmware, attested_spec
from pytest_sev.kconfig import parse_config
from pytest_sev.libvirt.domain_xml import DomainOptions, domain_xml
from pytest_sev.model.spec import Firmware, GuestSpec, Preload, SevLaunch
from pytest_sev.qemu.argv import build_argv

ROOT = Path(__file__).resolve().parents[1]
KAT_AMDSEV = ROOT / "fixtures" / "sev-kat" / "sev-crate" / "measurement" / "ovmf_AmdSev_suffix.bin"
KAT_OVMFX64 = ROOT / "fixtures" / "sev-kat" / "sev-crate" / "measurement" / "ovmf_OvmfX64_suffix.bin"
FRAGMENT = ROOT / "fixtures" / "kernel" / "efi-secret.config"
QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    return k


def _argv(spec: GuestSpec) -> list[str]:
    return build_argv(spec, qemu="qemu-system-x86_64", accel="tcg", qemu_version=(7, 2),
                      serial_fd=5, qmp_fd=6, vars_path=Path("/run/g/VARS.fd"))


# -- the recipe and the optional component ---------------------------------------------

def test_recipe_builds_amdsevx64_with_an_empty_grub(tmp_path):
    recipe = RECIPES["ovmf-amdsev"]
    src = load_sources(default_sources_file())["ovmf-amdsev"]
    steps = recipe.steps(src, tmp_path, tmp_path / "out", BuildOptions(jobs=3))
    assert [s.name for s in steps] == ["make BaseTools", "edk2 build (AmdSev)"]
    # grub.sh needs GRUB's sevsecret module, which Debian's GRUB lacks: an empty
    # grub.efi newer than grub.sh stands in (AMD's build.sh does the same)
    assert AMDSEV_BUILD_SCRIPT.index("touch OvmfPkg/AmdSev/Grub/grub.efi") < AMDSEV_BUILD_SCRIPT.index("build ")
    assert "-p OvmfPkg/AmdSev/AmdSevX64.dsc" in AMDSEV_BUILD_SCRIPT
    assert recipe.inputs(src, BuildOptions())["dsc"] == "OvmfPkg/AmdSev/AmdSevX64.dsc"


@pytest.mark.parametrize("name", ["local.toml", "upstream.toml", "upstream-snp.toml"])
def test_sources_files_pin_the_amdsev_ovmf_to_the_ovmf_tree(name):
    sources = load_sources(ROOT / "fixtures" / "sources" / name)
    assert sources["ovmf-amdsev"].url == sources["ovmf"].url
    assert FRAGMENT in sources["kernel"].fragments


def test_ovmf_amdsev_is_in_the_plan_only_when_named():
    assert set(parse_components("build")) == set(COMPONENTS)
    plan = parse_components("kernel=build,ovmf-amdsev=build")
    assert plan["ovmf-amdsev"] == Choice("build") and plan["qemu"] == Choice("system")
    with pytest.raises(SourcesError, match="unknown component 'ovmf-sev'"):
        parse_components("ovmf-sev=build")


def test_built_amdsev_overrides_the_run_config(tmp_path):
    fd = tmp_path / "OVMF.amdsev.fd"
    comps = Components(qemu=Path("q"), ovmf_code=None, ovmf_vars=None, kernel=None, ovmf_amdsev=fd)
    plan = parse_components("ovmf-amdsev=build")
    assert run_config_overrides(plan, comps) == {"ovmf_amdsev": fd}
    # a distribution's (system) one is found by the assembler, not forced on the config
    assert run_config_overrides(parse_components(None), comps) == {}


def test_build_cli_names_ovmf_amdsev_but_builds_it_only_when_asked(capsys):
    assert build_cli._component("ovmf-amdsev") == "ovmf-amdsev"
    with pytest.raises(SystemExit):
        build_cli._parser().parse_args(["ovmf-sev"])
    assert "ovmf-amdsev" in capsys.readouterr().err


# -- the kernel recipe's secret fragment ------------------------------------------------

def test_efi_secret_fragment_and_notes():
    frag = parse_config(FRAGMENT.read_text())
    assert frag == {"VIRT_DRIVERS": "y", "EFI_COCO_SECRET": "y", "SECURITYFS": "y", "EFI_SECRET": "y"}
    assert secret_notes(frag) == []
    # Debian 12's kernels (cloud and generic, 6.1.0-57): the bool in the core kernel is off
    debian = "CONFIG_EFI=y\n# CONFIG_EFI_COCO_SECRET is not set\n# CONFIG_EFI_SECRET is not set\n"
    notes = secret_notes(parse_config(debian))
    assert len(notes) == 1 and "CONFIG_EFI_SECRET=n" in notes[0] and "EFI_COCO_SECRET=n" in notes[0]
    assert "module" in secret_notes(parse_config("CONFIG_EFI_COCO_SECRET=y\nCONFIG_EFI_SECRET=m\n"))[0]


# -- --ovmf-amdsev -----------------------------------------------------------------------

def _get(values):
    return lambda name: values.get(name)


def test_ovmf_amdsev_option_takes_an_amdsev_image():
    cfg = build_config(_get({"ovmf_amdsev": str(KAT_AMDSEV)}))
    assert cfg.ovmf_amdsev == KAT_AMDSEV


@pytest.mark.parametrize("path,msg", [
    (KAT_OVMFX64, "not an AmdSev OVMF .*no launch-secret area and no kernel-hashes table.*build ovmf-amdsev"),
    (Path("/nonexistent/OVMF.amdsev.fd"), "--ovmf-amdsev"),
])
def test_ovmf_amdsev_option_refuses_other_files_in_one_line(path, msg):
    with pytest.raises(ConfigError, match=msg) as err:
        build_config(_get({"ovmf_amdsev": str(path)}))
    assert "\n" not in str(err.value)


# -- firmware kind, preloads, kernel hashes ------------------------------------------------

def test_amdsev_firmware_is_bios_and_boots_sev_guests(kernel):
    fw = Firmware("amdsev", code=Path("/fw/OVMF.amdsev.fd"))
    argv = _argv(GuestSpec(kernel=kernel, firmware=fw, sev=SevLaunch("sev-es", 0x5, 51)))
    assert argv[argv.index("-bios") + 1] == "/fw/OVMF.amdsev.fd"
    assert not any("pflash" in a for a in argv)


@pytest.mark.parametrize("fields,msg", [
    ({"kind": "amdsev"}, "needs its image"),
    ({"kind": "coreboot", "code": Path("/x")}, "unknown firmware kind 'coreboot'"),
])
def test_firmware_refuses_bad_kinds(fields, msg):
    with pytest.raises(SpecError, match=msg):
        Firmware(**fields)


def test_preload_is_the_generic_loader_at_its_address(kernel, tmp_path):
    table = tmp_path / "secret.bin"
    table.write_bytes(b"\0" * 16)
    argv = _argv(GuestSpec(kernel=kernel, preloads=(Preload(table, 0x80C000),)))
    assert argv[argv.index("-device") + 1] == f"loader,file={table},addr=0x80c000,force-raw=on"


@pytest.mark.parametrize("address,exists,msg", [(-1, True, "not a guest-physical"), (0x80C000, False, "no such file")])
def test_preload_refuses_bad_values(tmp_path, address, exists, msg):
    f = tmp_path / "t.bin"
    if exists:
        f.write_bytes(b"x")
    with pytest.raises(SpecError, match=msg):
        Preload(f, address)


def test_kernel_hashes_on_the_sev_object(kernel):
    sev = replace(SevLaunch("sev-es", 0x5, 51), kernel_hashes=True)
    argv = _argv(GuestSpec(kernel=kernel, sev=sev, firmware=Firmware("amdsev", code=Path("/fw/A.fd"))))
    assert argv[argv.index("-object") + 1].endswith(",reduced-phys-bits=1,kernel-hashes=on")


# -- libvirt ---------------------------------------------------------------------------

def _domain(spec: GuestSpec, tmp_path: Path) -> str:
    return domain_xml(spec, DomainOptions("amdsev-t", nvram=None, kernel_hashes=True, owner_pid=1))


def test_libvirt_renders_amdsev_as_rom_loader_and_preloads_as_qemu_args(kernel, tmp_path):
    table = tmp_path / "secret.bin"
    table.write_bytes(b"\0" * 16)
    spec = GuestSpec(kernel=kernel, firmware=Firmware("amdsev", code=Path("/fw/OVMF.amdsev.fd")),
                     sev=SevLaunch("sev-es", 0x5, 51), preloads=(Preload(table, 0x80C000),))
    text = _domain(spec, tmp_path)
    root = ET.fromstring(text)
    loader = root.find("os/loader")
    assert loader is not None and loader.get("type") == "rom" and loader.text == "/fw/OVMF.amdsev.fd"
    assert root.find("os/nvram") is None
    assert [a.get("value") for a in root.iter(f"{QEMU_NS}arg")] == [
        "-device", f"loader,file={table},addr=0x80c000,force-raw=on"]
    ls = root.find("launchSecurity")
    assert ls is not None and ls.get("kernelHashes") == "yes"
    if shutil.which("virt-xml-validate") and shutil.which("xmllint"):
        path = tmp_path / "domain.xml"
        path.write_text(text)
        res = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


# -- the assemblers ----------------------------------------------------------------------

def test_attested_spec_uses_the_amdsev_ovmf_with_kernel_hashes(kernel):
    cfg = RunConfig(guest_kernel=kernel, ovmf_code=Path("/fw/CODE.fd"), ovmf_vars=Path("/fw/VARS.fd"))
    amdsev = Firmware("amdsev", code=Path("/fw/OVMF.amdsev.fd"))
    spec = attested_spec(cfg, "sev-es", 51, amdsev)
    assert spec.paused and spec.firmware == amdsev
    assert spec.sev is not None and spec.sev.kernel_hashes and spec.sev.mode == "sev-es"
    # without one: the run's OVMF, and no kernel hashes (it has no table for them)
    plain = attested_spec(cfg, "sev", 51, None)
    assert plain.firmware.kind == "ovmf" and plain.sev is not None and not plain.sev.kernel_hashes


def test_amdsev_firmware_prefers_the_configured_file(monkeypatch):
    monkeypatch.setattr("pytest_sev.guest.specs.find_amdsev_ovmf", lambda: None)
    assert amdsev_firmware(RunConfig()) is None
    assert amdsev_firmware(RunConfig(ovmf_amdsev=KAT_AMDSEV)) == Firmware("amdsev", code=KAT_AMDSEV)


def test_secret_delivery_spec_preloads_the_table_and_never_writes_the_image(monkeypatch, tmp_path, kernel):
    from types import SimpleNamespace

    import pytest_sev.guest.specs as specs
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    built = []
    monkeypatch.setattr(specs, "other_kernel", lambda k: SimpleNamespace(vmlinuz=k))
    monkeypatch.setattr(specs, "build_disk_image", lambda k: built.append(k) or SimpleNamespace(
        raw=image, user="root", password="sev-es"))
    table = tmp_path / "secret.bin"
    table.write_bytes(b"\0" * 64)
    amdsev = Firmware("amdsev", code=KAT_AMDSEV)
    spec = specs.secret_delivery_spec(RunConfig(guest_kernel=kernel), amdsev, table, 0x80C000)
    assert built[0].vmlinuz == kernel  # the run's guest kernel, booted from the image
    assert spec.firmware == amdsev and spec.kernel is None and spec.login is not None
    assert spec.preloads == (Preload(table, 0x80C000),)
    assert [(d.path, d.snapshot, d.bus) for d in spec.disks] == [(image, True, "virtio-blk")]
