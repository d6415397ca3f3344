"""The embedded default guest: cached build, and boots with both firmwares."""


import pytest

from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import default_guest_spec
from pytest_sev.images.default_kernel import default_kernel
from pytest_sev.images.initramfs import build_initramfs
from pytest_sev.images.modules import DEFAULT_GUEST_MODULES


def test_second_initramfs_build_is_a_cache_hit(monkeypatch):
    kernel = default_kernel()
    first = build_initramfs(kernel, with_fio=False)
    stamp = first.path.stat().st_mtime_ns

    def no_rebuild(*a, **k):
        raise AssertionError("the cpio was written again for unchanged inputs")

    monkeypatch.setattr("pytest_sev.images.initramfs._write_cpio", no_rebuild)
    again = build_initramfs(kernel, with_fio=False)
    assert again.key == first.key and again.path.stat().st_mtime_ns == stamp


def test_different_inputs_make_a_different_entry():
    kernel = default_kernel()
    base = build_initramfs(kernel, with_fio=False)
    fewer = build_initramfs(kernel, modules=DEFAULT_GUEST_MODULES[:2], with_fio=False)
    assert fewer.key != base.key and fewer.path != base.path


@pytest.mark.qemu
@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_boots_to_a_shell_with_modules_loaded(firmware):
    with Guest(default_guest_spec(firmware=firmware, name=f"fw-{firmware}")) as guest:
        out = guest.check("cat /proc/modules | cut -d' ' -f1 | sort; ls /dev/cpu/0")
        for module in ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "msr"):
            assert module in out.split(), out
        assert "msr" in out.splitlines()[-1] or "msr" in out
        efi = guest.run("test -d /sys/firmware/efi")[1]
        assert (efi == 0) == (firmware == "ovmf")  # the firmware really is what was asked
