"""Pure pieces of the foundation on recorded real inputs."""

import threading
from pathlib import Path

import pytest

from pytest_sev.cache import ContentCache
from pytest_sev.errors import MissingModule
from pytest_sev.images import modules
from pytest_sev.images.bzimage import kernel_version_string
from pytest_sev.qemu import accel
from pytest_sev.qemu.binary import parse_version

# excerpt of the real modules.dep of linux-image-6.1.0-56-cloud-amd64
MODULES_DEP = """\
kernel/arch/x86/kernel/msr.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
"""


def test_load_order_puts_dependencies_first_once():
    order = modules.load_order(["virtio_blk", "virtio_scsi", "virtio_pci"], MODULES_DEP)
    names = [modules.module_name(p) for p in order]
    assert len(names) == len(set(names))
    for mod, deps in modules.parse_modules_dep(MODULES_DEP).items():
        if mod in names:
            for dep in deps[1]:
                assert names.index(modules.module_name(dep)) < names.index(mod)
    assert names[-1] == "virtio_pci"


def test_builtin_modules_are_skipped_and_unknown_ones_named():
    assert modules.load_order(["crc32c_generic"], MODULES_DEP, "kernel/crypto/crc32c_generic.ko\n") == []
    with pytest.raises(modules.MissingModule, match="nvme"):
        modules.load_order(["nvme"], MODULES_DEP)


def test_compressed_module_names():
    assert modules.module_name("kernel/drivers/block/virtio_blk.ko.xz") == "virtio_blk"
    assert modules.module_name("kernel/crypto/crc32c-generic.ko.zst") == "crc32c_generic"


@pytest.mark.parametrize("flags,dev,expected", [
    ("fpu vme svm", True, "kvm"), ("fpu vmx", True, "kvm"), ("fpu vme", True, "tcg"), ("fpu svm", False, "tcg"),
])
def test_accel_choice(tmp_path, flags, dev, expected):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    (tmp_path / "dev").mkdir()
    if dev:
        (tmp_path / "dev" / "kvm").write_text("")
    choice = accel.choose_accel("auto", root=tmp_path)
    assert choice.name == expected, choice.reason


def test_qemu_version_strings():
    assert parse_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)\n") == (7, 2, 19)
    assert parse_version("QEMU emulator version 6.0.0\nCopyright") == (6, 0, 0)
    with pytest.raises(ValueError):
        parse_version("qemu-kvm")


def test_bzimage_header_parse():
    data = bytearray(0x400)
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = (0x100).to_bytes(2, "little")
    version = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0"
    data[0x300:0x300 + len(version)] = version
    assert kernel_version_string(bytes(data)).split()[0] == "6.1.0-56-cloud-amd64"
    with pytest.raises(ValueError):
        kernel_version_string(b"\0" * 0x400)


def test_cache_builds_once_even_when_raced(tmp_path):
    cache = ContentCache("t", root=tmp_path)
    calls = []

    def build(out: Path):
        calls.append(1)
        (out / "f").write_text("x")

    threads = [threading.Thread(target=cache.get_or_build, args=("k", build)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert cache.get_or_build("k", build).joinpath("f").read_text() == "x"
    assert len(calls) == 1


def test_cache_failed_build_leaves_nothing(tmp_path):
    cache = ContentCache("t", root=tmp_path)

    def bad(out: Path):
        (out / "half").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get_or_build("k", bad)
    assert cache.get("k") is None
    assert [p.name for p in cache.dir.iterdir() if not p.name.endswith(".lock")] == []


def test_cache_sweeps_what_a_killed_builder_left(tmp_path):
    cache = ContentCache("t", root=tmp_path)
    stale = cache.dir / ".kkkkkkkkkkkk-dead"
    stale.mkdir()
    (stale / "half").write_text("x")
    cache.get_or_build("kkkkkkkkkkkk" + "0" * 52, lambda out: (out / "f").write_text("y"))
    assert not stale.exists()


def test_optional_modules_load_when_present_and_are_skipped_when_absent():
    dep = MODULES_DEP + "kernel/fs/configfs/configfs.ko:\nkernel/virt/coco/tsm.ko: kernel/fs/configfs/configfs.ko\n"
    order = modules.load_order(["msr"], dep, optional=["tsm", "sev-guest"])
    assert order == ["kernel/arch/x86/kernel/msr.ko", "kernel/fs/configfs/configfs.ko", "kernel/virt/coco/tsm.ko"]
    assert modules.load_order(["msr"], MODULES_DEP, optional=modules.OPTIONAL_GUEST_MODULES) == [
        "kernel/arch/x86/kernel/msr.ko"]
    with pytest.raises(MissingModule):
        modules.load_order(["tsm"], MODULES_DEP)  # wanted, not optional: still refused by name
