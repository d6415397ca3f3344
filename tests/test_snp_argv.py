"""SEV-SNP as QEMU argv (upstream semantics), both shapes, and its validation (pure: no QEMU runs)."""

from __future__ import annotations

import base64
import shlex
from pathlib import Path

import pytest

from pytest_sev.build.components import Choice, parse_components
from pytest_sev.build.errors import SourcesError
from pytest_sev.cli.launch import main as launch_main
from pytest_sev.model.spec import Disk, Firmware, GuestSpec, SevLaunch, SnpLaunch, SpecError
from pytest_sev.qemu.argv import build_argv, launch_argv

ROOT = Path(__file__).resolve().parents[1]
SNP_READY = ROOT / "fixtures" / "hosts" / "epyc-milan-snp-ready"


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    return k


@pytest.fixture
def ovmf_fd(tmp_path):
    f = tmp_path / "OVMF.fd"
    f.write_bytes(b"\0" * 4096)
    return Firmware("bios", code=f)


def _snp_spec(kernel, fw, **snp):
    return GuestSpec(kernel=kernel, memory_mib=2048, vcpus=2, firmware=fw, snp=SnpLaunch(cbitpos=51, **snp))


def _harness(spec, version=(10, 0)):
    return build_argv(spec, qemu="qemu-system-x86_64", accel="kvm", qemu_version=version,
                      serial_fd=5, qmp_fd=6)


def _after(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


# -- rendering -------------------------------------------------------------------------

def test_harness_shape_renders_upstream_snp_launch(kernel, ovmf_fd, tmp_path):
    spec = _snp_spec(kernel, ovmf_fd).with_(disks=(Disk(tmp_path / "d.img"),))
    argv = _harness(spec)
    assert _after(argv, "-machine") == ["q35,confidential-guest-support=sev0,memory-backend=ram1"]
    assert _after(argv, "-object") == [
        "memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false",
        "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1"]
    assert _after(argv, "-bios") == [str(ovmf_fd.code)]
    assert not any("pflash" in a for a in argv)
    assert _after(argv, "-cpu") == ["EPYC-v4"]
    assert _after(argv, "-device")[0].endswith(",disable-legacy=on,iommu_platform=on")


def test_optional_properties_are_base64_in_upstream_names(kernel, ovmf_fd):
    host_data, id_block, id_auth = b"\x01" * 32, b"\x02" * 96, b"\x03" * 4096
    amdsev = Firmware("amdsev", code=ovmf_fd.code)
    argv = _harness(_snp_spec(kernel, amdsev, policy=0x1B0000, kernel_hashes=True, host_data=host_data,
                              id_block=id_block, id_auth=id_auth, author_key_enabled=True))
    props = _after(argv, "-object")[1].split(",")
    assert props[:5] == ["sev-snp-guest", "id=sev0", "policy=0x1b0000", "cbitpos=51", "reduced-phys-bits=1"]
    assert props[5:] == ["kernel-hashes=on", f"host-data={base64.b64encode(host_data).decode()}",
                         f"id-block={base64.b64encode(id_block).decode()}",
                         f"id-auth={base64.b64encode(id_auth).decode()}", "author-key-enabled=on"]


def test_launch_shape_follows_snp_latest_script(kernel, ovmf_fd):
    argv = launch_argv(_snp_spec(kernel, ovmf_fd).with_(cpu="EPYC-v4"), qemu="q", accel="kvm",
                       qemu_version=(10, 0))
    joined = shlex.join(argv)
    assert ("-machine confidential-guest-support=sev0,vmport=off "
            "-object memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false "
            "-machine memory-backend=ram1 "
            "-object sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1") in joined
    assert _after(argv, "-bios") == [str(ovmf_fd.code)] and "sev-guest" not in joined
    assert argv[1] == "-enable-kvm"


def test_amdsev_firmware_is_one_bios_image_too(kernel, tmp_path):
    image = tmp_path / "OVMF.amdsev.fd"
    image.write_bytes(b"\0")
    argv = _harness(_snp_spec(kernel, Firmware("amdsev", code=image), kernel_hashes=True))
    assert _after(argv, "-bios") == [str(image)]


# -- validation ---------------------------------------------------------------------------

def test_split_pflash_firmware_is_refused_naming_why(kernel, tmp_path):
    code, vars_ = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    with pytest.raises(SpecError, match=r"one -bios image.*refuses pflash.*split CODE/VARS"):
        _snp_spec(kernel, Firmware("ovmf", code=code, vars_template=vars_))


def test_kernel_hashes_need_the_amdsev_build(kernel, ovmf_fd):
    with pytest.raises(SpecError, match="kernel-hashes=on needs the AmdSev OVMF"):
        _snp_spec(kernel, ovmf_fd, kernel_hashes=True)


def test_seabios_is_refused(kernel):
    with pytest.raises(SpecError, match="not UEFI"):
        _snp_spec(kernel, Firmware())


def test_sev_and_snp_together_are_refused(kernel, ovmf_fd):
    with pytest.raises(SpecError, match="not both"):
        GuestSpec(kernel=kernel, firmware=Firmware("amdsev", code=ovmf_fd.code),
                  sev=SevLaunch("sev-es", 0x5, 51), snp=SnpLaunch(cbitpos=51))


@pytest.mark.parametrize("policy, words", [
    (0x10000, ["lacks bit 17", "SMT allowed", "debug off", "single socket off"]),
    (0x0, ["lacks bit 17", "SMT not allowed"]),
    (0x90000, ["lacks bit 17", "debug on"]),
    (0x130000 | (1 << 40), ["unknown bits 0x10000000000", "single socket on"]),
    (1 << 64, ["not a 64-bit value"]),
])
def test_policy_is_validated_naming_the_bits(policy, words):
    with pytest.raises(SpecError) as info:
        SnpLaunch(cbitpos=51, policy=policy)
    for word in words:
        assert word in str(info.value)


def test_describe_names_smt_debug_and_single_socket():
    text = SnpLaunch(cbitpos=51, policy=0x1B0000).describe()
    assert text == "sev-snp, policy 0x1b0000: SMT allowed, debug on, single socket on, ABI >= 0.0"


@pytest.mark.parametrize("field, size", [("host_data", 32), ("id_block", 96), ("id_auth", 4096)])
def test_byte_properties_need_their_exact_size(field, size):
    other = {"id_block": b"\0" * 96, "id_auth": b"\0" * 4096}
    other.pop(field, None)
    if field == "host_data":
        other = {}
    with pytest.raises(SpecError, match=rf"is {size - 1} bytes; .* exactly {size}"):
        SnpLaunch(cbitpos=51, **{field: b"\0" * (size - 1)}, **other)


def test_id_block_needs_its_auth_and_author_key_needs_both():
    with pytest.raises(SpecError, match="go together"):
        SnpLaunch(cbitpos=51, id_block=b"\0" * 96)
    with pytest.raises(SpecError, match="author-key-enabled needs"):
        SnpLaunch(cbitpos=51, author_key_enabled=True)


@pytest.mark.parametrize("version, shown", [((7, 2), "7.2"), ((9, 0), "9.0"), ((0, 0), "of unknown version")])
def test_qemu_older_than_9_1_is_one_startup_line(kernel, ovmf_fd, version, shown):
    spec = _snp_spec(kernel, ovmf_fd)
    for render in (_harness, lambda s, v: launch_argv(s, qemu="q", accel="kvm", qemu_version=v)):
        with pytest.raises(SpecError) as info:
            render(spec, version)
        assert str(info.value) == f"SEV-SNP needs QEMU >= 9.1 (this one is {shown})"


def test_qemu_9_1_is_enough(kernel, ovmf_fd):
    assert "sev-snp-guest" in " ".join(_harness(_snp_spec(kernel, ovmf_fd), (9, 1)))


# -- the backports component source ------------------------------------------------------

def test_backports_is_a_qemu_source_only():
    assert parse_components("qemu=backports")["qemu"] == Choice("backports")
    with pytest.raises(SourcesError, match="only qemu has a backports source"):
        parse_components("kernel=backports")
    with pytest.raises(SourcesError, match="only qemu has a backports source"):
        parse_components("backports")


def test_backports_qemu_not_provisioned_names_the_command(tmp_path, monkeypatch):
    from pytest_sev.build.components import _locate_qemu
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path))
    with pytest.raises(SourcesError, match=r"provision qemu-snp"):
        _locate_qemu(Choice("backports"))


# -- launch -sev-snp -------------------------------------------------------------------------

def _prefix(tmp_path, version):
    p = tmp_path / "prefix"
    (p / "bin").mkdir(parents=True)
    (p / "share" / "qemu").mkdir(parents=True)
    qemu = p / "bin" / "qemu-system-x86_64"
    qemu.write_text(f"#!/bin/sh\necho 'QEMU emulator version {version}'\n")
    qemu.chmod(0o755)
    for f in ("OVMF_CODE.fd", "OVMF_VARS.fd", "OVMF.fd"):
        (p / "share" / "qemu" / f).write_bytes(b"\0" * 4096)
    return p


def test_launch_sev_snp_prints_the_snp_argv(tmp_path, kernel, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prefix = _prefix(tmp_path, "10.0.2")
    rc = launch_main(["-sev-snp", "-kernel", str(kernel), "-mem", "1024", "-execpath", str(prefix),
                      "--host-recorded", str(SNP_READY), "--print-argv"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    argv = shlex.split(out)
    assert argv[0] == str(prefix / "bin" / "qemu-system-x86_64")
    assert _after(argv, "-bios") == [str(prefix / "share" / "qemu" / "OVMF.fd")]
    assert "sev-snp-guest,id=sev0,policy=0x30000,cbitpos=51,reduced-phys-bits=1" in argv
    assert "memory-backend-memfd,id=ram1,size=1024M,share=true,prealloc=false" in argv
    assert "-no-reboot" in argv and not any("pflash" in a for a in argv)


def test_launch_sev_snp_allow_debug_sets_bit_19(tmp_path, kernel, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prefix = _prefix(tmp_path, "9.1.0")
    assert launch_main(["-sev-snp", "-allow-debug", "-kernel", str(kernel), "-execpath", str(prefix),
                        "--host-recorded", str(SNP_READY), "--print-argv"]) == 0
    assert "policy=0xb0000" in capsys.readouterr().out


def test_launch_sev_snp_on_old_qemu_is_one_line(tmp_path, kernel, capsys, monkeypatch):
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "empty-cache"))
    prefix = _prefix(tmp_path, "8.2.2")
    rc = launch_main(["-sev-snp", "-kernel", str(kernel), "-execpath", str(prefix),
                      "--host-recorded", str(SNP_READY), "--print-argv"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("launch: SEV-SNP needs QEMU >= 9.1 (this one is 8.2)")
    assert "provision qemu-snp" in err


def test_launch_refuses_amd_fork_only_certs_path(tmp_path, kernel, capsys):
    rc = launch_main(["-sev-snp", "-certs-path", "/x", "-kernel", str(kernel), "--print-argv"])
    err = capsys.readouterr().err
    assert rc == 1 and "certs-path exists only in AMD's QEMU fork" in err


def test_launch_sev_snp_on_an_unready_host_names_the_check(tmp_path, kernel, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prefix = _prefix(tmp_path, "10.0.2")
    rc = launch_main(["-sev-snp", "-kernel", str(kernel), "-execpath", str(prefix), "--host-recorded",
                      str(ROOT / "fixtures" / "hosts" / "epyc-milan-6.8-ready"), "--print-argv"])
    assert rc == 1 and "host not ready for sev-snp" in capsys.readouterr().err
