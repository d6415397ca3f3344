"""The QEMU >= 9.1 for SEV-SNP: provisioned beside the host's (private apt), and
the SNP argv run for real under TCG, where every option parses and QEMU stops
only because SNP needs KVM."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import pytest_sev.images.qemu_snp as qemu_snp
from pytest_sev.errors import ProvisionError
from pytest_sev.model.spec import Disk, Firmware, GuestSpec, SnpLaunch
from pytest_sev.qemu.argv import build_argv, launch_argv
from pytest_sev.qemu.binary import qemu_version
from pytest_sev.qemu.firmware import find_snp_firmware
from pytest_sev.qemu.process import QemuProcess

KVM_REQUIRED = "cannot set up private guest memory for sev-snp-guest: KVM required"


# -- private apt configuration (pure) ----------------------------------------------------

def test_host_mirror_is_read_from_deb822_and_one_line_sources(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n")
    assert qemu_snp.host_mirror("bookworm", etc) == "http://mirror.example/debian"
    (etc / "sources.list.d" / "debian.sources").unlink()
    (etc / "sources.list").write_text("# x\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert qemu_snp.host_mirror("bookworm", etc) == "http://other.example/debian"


def test_without_host_sources_the_debian_default_is_used(tmp_path):
    assert qemu_snp.host_mirror("bookworm", tmp_path) == qemu_snp.DEBIAN_DEFAULT_MIRROR


def test_apt_is_confined_to_private_directories(tmp_path):
    sources = qemu_snp.write_private_sources(tmp_path, "http://m.example/debian", "bookworm-backports")
    assert "Suites: bookworm-backports\n" in sources.read_text()
    opts = qemu_snp.apt_options(tmp_path / "apt", sources)
    values = dict(o.split("=", 1) for o in opts if "=" in o)
    assert values["Dir::Etc::SourceList"] == str(sources)
    for key in ("Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::Cache"):
        assert values[key].startswith(str(tmp_path)), key


def test_unreachable_mirror_is_one_provision_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path))
    monkeypatch.setattr(qemu_snp, "host_mirror", lambda codename: "http://127.0.0.1:9/debian")
    with pytest.raises(ProvisionError) as info:
        qemu_snp.provision_snp_qemu()
    text = str(info.value)
    assert "\n" not in text and text.startswith("qemu-snp: apt-get update of ")
    assert "127.0.0.1:9" in text


def test_offline_without_cache_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path))
    with pytest.raises(ProvisionError, match=r"run `python -m pytest_sev provision qemu-snp` online"):
        qemu_snp.provision_snp_qemu(offline=True)


# -- the provisioned QEMU, for real -------------------------------------------------------

@pytest.fixture(scope="module")
def snp_qemu() -> qemu_snp.SnpQemu:
    found = qemu_snp.provisioned_snp_qemu()
    if found is None:
        pytest.skip(f"no QEMU >= 9.1 in the cache: run `{qemu_snp.PROVISION_COMMAND}`")
    return found


@pytest.fixture
def snp_spec(tmp_path) -> GuestSpec:
    found = find_snp_firmware()
    if found is None:
        pytest.skip("no one-file OVMF (OVMF.fd / OVMF.amdsev.fd) installed")
    kind, image = found
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"not booted: QEMU stops before")
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 1024 * 1024)
    snp = SnpLaunch(cbitpos=51, policy=0x30000, host_data=b"\x11" * 32,
                    id_block=b"\x22" * 96, id_auth=b"\x33" * 4096, author_key_enabled=True)
    return GuestSpec(name="snp-tcg", kernel=kernel, memory_mib=256, vcpus=1, disks=(Disk(disk),),
                     firmware=Firmware("amdsev" if kind == "amdsev" else "bios", code=image), snp=snp)


def _stops_with(argv: list[str], log: Path, pass_fds: tuple[int, ...] = ()) -> str:
    """Start QEMU (argv list, no shell), wait for it to exit, tear it down on every path."""
    proc = QemuProcess(argv, name="snp-tcg", output=log, pass_fds=pass_fds)
    try:
        proc.start()
        assert proc.wait(60), "QEMU kept running with an SNP guest under TCG"
        return log.read_text().strip()
    finally:
        proc.stop()


def test_provisioned_qemu_is_new_enough_and_knows_snp(snp_qemu):
    assert snp_qemu.binary.is_file() and snp_qemu.datadir.is_dir()
    assert qemu_version(str(snp_qemu.binary))[:2] >= (9, 1)


def test_harness_snp_argv_parses_and_stops_only_at_kvm_required(snp_qemu, snp_spec, tmp_path):
    serial, serial_peer = socket.socketpair()
    qmp, qmp_peer = socket.socketpair()
    with serial, serial_peer, qmp, qmp_peer:
        argv = build_argv(snp_spec, qemu=str(snp_qemu.binary), accel="tcg",
                          qemu_version=qemu_version(str(snp_qemu.binary))[:2],
                          serial_fd=serial_peer.fileno(), qmp_fd=qmp_peer.fileno())
        said = _stops_with(argv, tmp_path / "qemu.log", (serial_peer.fileno(), qmp_peer.fileno()))
    print(f"harness shape: {said}")
    assert said == f"qemu-system-x86_64: {KVM_REQUIRED}"


def test_launch_shape_snp_argv_parses_and_stops_only_at_kvm_required(snp_qemu, snp_spec, tmp_path,
                                                                     monkeypatch):
    for name, value in snp_qemu.environment().items():  # its own modules (the shape loads audio/UI ones)
        monkeypatch.setenv(name, value)
    argv = launch_argv(snp_spec.with_(cpu="EPYC-v4"), qemu=str(snp_qemu.binary), accel="tcg",
                       qemu_version=qemu_version(str(snp_qemu.binary))[:2],
                       qmp_socket=tmp_path / "g.qmp")
    said = _stops_with(argv, tmp_path / "qemu.log")
    print(f"launch shape: {said}")
    assert said == f"qemu-system-x86_64: {KVM_REQUIRED}"
