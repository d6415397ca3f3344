"""Sources files, --components specs, the plugin's usage errors, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sev.build.components import Choice, kernel_in, parse_components, resolve_components
from pytest_sev.build.errors import SourcesError
from pytest_sev.build.manifest import Manifest, clear_session, session_manifests
from pytest_sev.build.sources import COMPONENTS, load_sources
from pytest_sev.cli import build as cli

SOURCES = Path(__file__).parents[1] / "fixtures" / "sources"


def test_upstream_pins_like_amd_stable_commits():
    src = load_sources(SOURCES / "upstream.toml")
    assert (src["qemu"].ref, src["ovmf"].ref, src["kernel"].ref) == ("v6.0.0", "edk2-stable202102", "v5.11")
    assert src["kernel"].url.startswith("https://") and src["kernel"].patches == SOURCES / "linux-patches"


def test_local_sources_expand_src_root(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTEST_SEV_SRC", str(tmp_path))
    src = load_sources(SOURCES / "local.toml")
    assert src["kernel"].url == f"file://{tmp_path}/linux"
    assert src["kernel"].base_config == "make:tinyconfig"
    assert [f.name for f in src["kernel"].fragments] == ["kvm-guest.config", "sev-es-guest.config",
                                                         "efi-secret.config"]
    assert all(f.is_file() for f in src["kernel"].fragments)
    # Debian's trees carry their submodules; its QEMU source carries no firmware
    assert not src["qemu"].submodules and not src["ovmf"].submodules and not src["ovmf-amdsev"].submodules
    assert any(a.startswith("--firmwarepath=share/qemu:") for a in src["qemu"].configure_args)
    # Debian's edk2 needs one of its patches reverted for AMD's non-Secure-Boot build
    assert [p.name for p in src["ovmf"].patches.glob("*.patch")] == ["0001-revert-debian-shell-secureboot.patch"]


def test_qemu_configure_args_follow_build_sh(tmp_path):
    from pytest_sev.build.recipes import BuildOptions, QemuRecipe
    f = tmp_path / "s.toml"
    f.write_text('[qemu]\nurl="x"\nref="y"\nconfigure_args=["--firmwarepath=/fw"]\n')
    src = load_sources(f)["qemu"]
    opts = BuildOptions(prefix="/opt/q")
    configure = QemuRecipe().steps(src, tmp_path, tmp_path / "out", opts)[0]
    # build.sh's arguments, the source's, then the prefix map (reproducible builds)
    assert configure.argv == ("./configure", "--target-list=x86_64-softmmu", "--prefix=/opt/q",
                              "--disable-werror", "--firmwarepath=/fw", f"--extra-cflags=-ffile-prefix-map={tmp_path}/=")
    # the build path is not an input: two paths, one key
    assert QemuRecipe().inputs(src, opts) == QemuRecipe().inputs(src, opts)
    assert QemuRecipe().inputs(src, opts)["configure_args"] == ["--firmwarepath=/fw"]


@pytest.mark.parametrize("text, message", [
    ('[kernal]\nurl="x"\nref="y"\n', "unknown component"),
    ('[qemu]\nurl="x"\n', "needs a ref"),
    ('[qemu]\nref="y"\n', "exactly one of url"),
    ('[qemu]\ntarball="q.tar.xz"\n', "needs sha256"),
    ('[qemu]\nurl="x"\nref="y"\npatchs="p"\n', "unknown key"),
    ('[qemu]\nurl="x"\nref="y"\nconfigure_args="--x"\n', "list of strings"),
    ('[ovmf]\nurl="x"\nref="y"\nconfigure_args=["--x"]\n', "qemu key"),
    ('[qemu\n', "sources file"),
    ('[kernel]\nurl="x"\nref="y"\n[kernel.expect]\nvmlinuz="abc"\n', "expect must map artifact names to sha256"),
    ('[kernel]\nurl="x"\nref="y"\nexpect="abc"\n', "expect must map"),
])
def test_bad_sources_one_line(tmp_path, text, message):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(SourcesError, match=message) as info:
        load_sources(f)
    assert "\n" not in str(info.value)


def test_parse_components():
    plan = parse_components("qemu=system, ovmf=prefix:/usr/local ,kernel=build")
    assert plan == {"qemu": Choice("system"), "ovmf": Choice("prefix", Path("/usr/local")),
                    "kernel": Choice("build")}
    assert parse_components("build") == {c: Choice("build") for c in COMPONENTS}
    assert parse_components(None) == {c: Choice("system") for c in COMPONENTS}
    for bad in ("qemu=built", "kernal=build", "ovmf=prefix:"):
        with pytest.raises(SourcesError):
            parse_components(bad)


def test_system_components_resolve_with_manifests():
    pytest.importorskip("pytest_sev.images.provision")
    import shutil

    from pytest_sev.images.provision import provisioned_kernel
    from pytest_sev.qemu.firmware import find_ovmf
    if not (shutil.which("qemu-system-x86_64") and find_ovmf() and provisioned_kernel()):
        pytest.skip("needs qemu, OVMF and the provisioned kernel (scripts/setup.sh)")
    clear_session()
    comps = resolve_components(parse_components("system"), None)
    assert comps.qemu.name == "qemu-system-x86_64" and comps.ovmf_code.is_file()
    assert comps.kernel == provisioned_kernel().vmlinuz
    assert comps.manifest("qemu").version.startswith("QEMU emulator version")
    assert [m.component for m in session_manifests()] == list(COMPONENTS)


def test_prefix_components(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "qemu-system-x86_64").write_text("#!/bin/sh\necho QEMU emulator version 9.9\n")
    (tmp_path / "bin" / "qemu-system-x86_64").chmod(0o755)
    share = tmp_path / "share" / "qemu"
    share.mkdir(parents=True)
    (share / "OVMF_CODE.fd").write_bytes(b"c")
    (share / "OVMF_VARS.fd").write_bytes(b"v")
    (tmp_path / "arch/x86/boot").mkdir(parents=True)
    (tmp_path / "arch/x86/boot/bzImage").write_bytes(b"k")
    plan = {c: Choice("prefix", tmp_path) for c in COMPONENTS}
    comps = resolve_components(plan, None)
    assert comps.qemu == tmp_path / "bin" / "qemu-system-x86_64"
    assert comps.ovmf_vars == share / "OVMF_VARS.fd"
    assert comps.kernel == kernel_in(tmp_path) == tmp_path / "arch/x86/boot/bzImage"
    assert comps.manifest("qemu").version == "QEMU emulator version 9.9"
    assert comps.manifest("ovmf").source == f"prefix:{tmp_path}"
    with pytest.raises(SourcesError, match="not found"):
        resolve_components({**plan, "ovmf": Choice("prefix", tmp_path / "nope")}, None)


def test_plugin_usage_errors(pytester):
    pytester.makepyfile("def test_x(components):\n    pass\n")
    for args, message in ((["--components", "qemu=fast"], "expected system, build or prefix:PATH"),
                          (["--components", "kernel=build", "--sources", "nope.toml"], "does not exist"),
                          (["--components", "ovmf=prefix:/no/such"], "no such path"),
                          (["--build-jobs", "0"], "positive integer")):
        result = pytester.runpytest(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*pytest-sev: *{message}*"])


def test_plugin_ini_and_fixture(pytester, tmp_path):
    prefix = tmp_path / "p"
    (prefix / "bin").mkdir(parents=True)
    q = prefix / "bin" / "qemu-system-x86_64"
    q.write_text("#!/bin/sh\necho QEMU emulator version 1.2.3\n")
    q.chmod(0o755)
    (prefix / "share/qemu").mkdir(parents=True)
    for n in ("OVMF_CODE.fd", "OVMF_VARS.fd", "../../vmlinuz"):
        (prefix / "share/qemu" / n).write_bytes(b"x")
    pytester.makeini(f"[pytest]\ncomponents = prefix:{prefix}\n")
    pytester.makepyfile(
        "def test_x(components):\n"
        f"    assert str(components.qemu) == {str(q)!r}\n"
        "    assert components.manifest('qemu').version == 'QEMU emulator version 1.2.3'\n"
        f"    assert str(components.kernel) == {str(prefix / 'vmlinuz')!r}\n")
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=1)


def test_cli_install_dir_must_exist(tmp_path, capsys):
    assert cli.main(["qemu", "--install", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_builds_all_three_in_build_sh_order(tmp_path, monkeypatch, capsys):
    built = []

    def fake_build(source, opts):
        built.append(source.component)
        entry = tmp_path / source.component
        staged = entry / "root" / str(tmp_path / "prefix").lstrip("/") / "share/qemu"
        staged.mkdir(parents=True, exist_ok=True)
        (staged / f"{source.component}.bin").write_bytes(b"x")
        pkg = entry / "linux-image.deb"
        pkg.write_bytes(b"deb")
        arts = {"linux-image.deb": {"path": str(pkg), "sha256": "0" * 64}} if source.component == "kernel" else {}
        return Manifest(component=source.component, source="s", ref="r", commit="c" * 40, version="v",
                        artifacts=arts, entry=str(entry), inputs={"prefix": opts.prefix})

    monkeypatch.setattr(cli, "build", fake_build)
    monkeypatch.setenv("PYTEST_SEV_SRC", str(tmp_path))
    (tmp_path / "prefix").mkdir()
    (tmp_path / "out").mkdir()
    rc = cli.main(["--install", str(tmp_path / "prefix"), "--output", str(tmp_path / "out")])
    assert rc == 0 and built == ["qemu", "ovmf", "kernel"]
    assert (tmp_path / "prefix/share/qemu/qemu.bin").exists()
    assert (tmp_path / "prefix/share/qemu/ovmf.bin").exists()
    assert (tmp_path / "out/linux-image.deb").exists()
    built.clear()
    assert cli.main(["kernel", "ovmf", "--no-install"]) == 0 and built == ["ovmf", "kernel"]


def test_run_config_overrides_only_for_non_system(tmp_path):
    import dataclasses

    from pytest_sev.build.components import Components, run_config_overrides
    from pytest_sev.config import RunConfig
    comps = Components(qemu=tmp_path / "q", ovmf_code=tmp_path / "c", ovmf_vars=tmp_path / "v",
                       kernel=tmp_path / "k")
    assert run_config_overrides(parse_components("system"), comps) == {}
    over = run_config_overrides(parse_components(f"qemu=prefix:{tmp_path},ovmf=prefix:{tmp_path}"), comps)
    assert over == {"qemu": str(tmp_path / "q"), "ovmf_code": tmp_path / "c", "ovmf_vars": tmp_path / "v"}
    assert {f.name for f in dataclasses.fields(RunConfig)} >= set(over) | {"guest_kernel", "guest_initrd"}


def test_expected_hashes_are_pins_not_key_inputs(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[kernel]\nurl="x"\nref="y"\n[kernel.expect]\nvmlinuz="%s"\n' % ("ab" * 32))
    pinned = load_sources(f)["kernel"]
    assert pinned.expect == {"vmlinuz": "ab" * 32}
    f.write_text('[kernel]\nurl="x"\nref="y"\n')
    assert load_sources(f)["kernel"] == pinned  # a pin does not change what is built


def test_snp_pins_are_new_enough_for_snp_and_carry_no_sev_es_patches():
    """The SNP generation's upstream pins: QEMU >= SNP_MIN_QEMU, a guest kernel with
    configfs-tsm (>= 6.7), and none of AMD's v6.0.0 SEV-ES QEMU patches."""
    from pytest_sev.model.spec import SNP_MIN_QEMU
    src = load_sources(SOURCES / "upstream-snp.toml")
    qemu = tuple(int(x) for x in src["qemu"].ref.lstrip("v").split(".")[:2])
    kernel = tuple(int(x) for x in src["kernel"].ref.lstrip("v").split(".")[:2])
    assert qemu >= SNP_MIN_QEMU and kernel >= (6, 7)
    assert src["qemu"].patches is None or not any(src["qemu"].patches.glob("*.patch"))
    assert src["ovmf-amdsev"].url == src["ovmf"].url
    assert src["kvm-selftests"].ref == "v6.12"
