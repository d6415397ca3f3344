"""The disk-image guest: how the image is built (fast checks), and a real boot
OVMF -> GRUB -> the entry a pattern picks -> login -> shell, all over serial."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

from pytest_sev.guest.guest import Guest
from pytest_sev.guest.specs import disk_guest_spec, ovmf_firmware
from pytest_sev.images.diskimage import (
    ENTRY_MARKER,
    ESP_START,
    SECTOR,
    DiskImage,
    MenuEntry,
    default_disk_image,
    default_entries,
    grub_config,
    image_format,
    overlay,
)
from pytest_sev.images.provision import provisioned_kernel
from pytest_sev.model.spec import Disk, Firmware, GuestSpec, Login


@pytest.fixture(scope="module")
def image() -> DiskImage:
    if provisioned_kernel() is None:
        pytest.skip("default guest kernel not provisioned (scripts/setup.sh)")
    return default_disk_image()


# -- pure -------------------------------------------------------------------

def test_grub_config_serial_menu_and_markers():
    entries = default_entries("6.1.0-9-cloud-amd64")
    cfg = grub_config(entries, user="root", password="pw", timeout=7)
    lines = cfg.splitlines()
    # output straight to the UART; keys through OVMF's console (see diskimage.py)
    assert lines[:4] == ["serial --unit=0 --speed=115200", "terminal_input console",
                         "terminal_output serial", "set timeout=7"]
    assert [e.title for e in entries] == [
        "Debian GNU/Linux, with Linux 6.1.0-9-cloud-amd64",
        "Debian GNU/Linux, with Linux 6.1.0-9-cloud-amd64 (recovery mode)",
        "Debian GNU/Linux, with Linux 6.1.0-9-cloud-amd64-sev-es"]
    linux = [ln.strip() for ln in lines if ln.strip().startswith("linux ")]
    assert len(linux) == 3
    for line, e in zip(linux, entries, strict=True):
        assert f"{ENTRY_MARKER}={e.name}" in line.split()
        assert "console=ttyS0" in line and "sev.login=root:pw" in line


def test_menu_entry_and_credentials_are_validated():
    with pytest.raises(ValueError):
        MenuEntry("it's", "x")
    with pytest.raises(ValueError):
        MenuEntry("ok", "two words")
    from pytest_sev.images.diskimage import build_disk_image
    with pytest.raises(ValueError, match="password"):
        build_disk_image(None, user="root", password="a b")  # type: ignore[arg-type]


def test_image_format_by_magic_then_name(tmp_path):
    q = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "1M"], check=True)
    r = tmp_path / "x.qcow2.raw"
    r.write_bytes(b"\0" * 512)
    assert image_format(q) == "qcow2" and image_format(r) == "raw"
    assert image_format(tmp_path / "missing.qcow2") == "qcow2"


# -- the built image ----------------------------------------------------------

def test_image_layout_gpt_esp_grub_kernel(image):
    out = subprocess.run(["sgdisk", "-p", str(image.raw)], capture_output=True, text=True,
                         check=True).stdout
    part = [ln.split() for ln in out.splitlines() if ln.strip().startswith("1 ")]
    assert part and part[0][1] == str(ESP_START) and part[0][5] == "EF00", out
    esp = f"{image.raw}@@{ESP_START * SECTOR}"
    listing = subprocess.run(["mdir", "-i", esp, "-b", "-/", "::/"], capture_output=True,
                             text=True, check=True).stdout.split()
    for f in ("::/EFI/BOOT/BOOTX64.EFI", "::/vmlinuz", "::/initrd.img"):
        assert f in listing, listing
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image.qcow2)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == image.size_bytes


def test_second_build_is_a_cache_hit(image):
    stamp = image.raw.stat().st_mtime_ns
    again = default_disk_image()
    assert again.key == image.key and again.raw == image.raw
    assert again.raw.stat().st_mtime_ns == stamp  # nothing was rebuilt


def test_instances_are_private_and_cheap(image, tmp_path):
    a = image.instance(tmp_path / "a", "qcow2")
    b = image.instance(tmp_path / "b", "raw")
    assert image_format(a) == "qcow2" and a.stat().st_size < 1 << 20
    assert b.stat().st_size == image.size_bytes
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(a)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(image.qcow2)
    o = overlay(b, tmp_path / "c", name="over")
    assert o.name == "over.qcow2" and image_format(o) == "qcow2"


def test_disk_guest_spec_shape(image, tmp_path):
    img = image.instance(tmp_path, "qcow2")
    spec = disk_guest_spec(img, ovmf=ovmf_firmware(), user="root", password="pw",
                           boot_entry="sev-es", vars_path=tmp_path / "IMAGE.fd")
    assert spec.kernel is None and spec.boot_entry == "sev-es"
    assert spec.disks == (Disk(img, bus="virtio-scsi", format="qcow2"),)
    assert spec.firmware.vars_path == tmp_path / "IMAGE.fd"
    assert spec.login == Login("root", "pw")


# -- the real boot ---------------------------------------------------------------

@pytest.mark.qemu
@pytest.mark.parametrize("fmt, bus", [("qcow2", "virtio-scsi"), ("raw", "virtio-blk")])
def test_boot_chosen_grub_entry_login_shell(image, tmp_path, qemu_processes, fmt, bus):
    """OVMF -> GRUB -> the '-sev-es' entry (third, not the default) -> login -> shell."""
    token = "dimg" + secrets.token_hex(4)
    img = image.instance(tmp_path, fmt, name="IMAGE")
    vars_path = tmp_path / "IMAGE.fd"  # launch-qemu.sh's IMAGE.fd, beside the image
    fw = ovmf_firmware()
    spec = GuestSpec(
        name=token, kernel=None,
        disks=(Disk(img, bus=bus, format=fmt),),
        firmware=Firmware("ovmf", fw.code, fw.vars_template, vars_path=vars_path),
        boot_entry=r"-sev-es$", login=Login(image.user, image.password), boot_timeout=240)
    with Guest(spec, workdir=tmp_path / "run", keep_workdir=True) as g:
        cmdline = g.check("cat /proc/cmdline").split()
        assert f"{ENTRY_MARKER}=sev-es" in cmdline, cmdline
        assert f"{ENTRY_MARKER}=default" not in cmdline
        assert g.check("uname -r").strip() == image.kernel_release
        # the disk GRUB booted from is the guest's SCSI disk, ESP included
        part = "sda1" if bus == "virtio-scsi" else "vda1"
        assert part in g.check("cat /proc/partitions")
        boot = g.boot_seconds
    assert vars_path.exists()  # made once beside the image, reused next time
    log = (tmp_path / "run" / "console.log").read_bytes()
    assert b"GNU GRUB" in log and b"Loading Linux sev-es" in log
    assert qemu_processes(token) == []
    print(f"boot OVMF -> GRUB -> login -> shell: {boot:.1f}s")


@pytest.mark.qemu
def test_boot_entry_not_found_lists_entries(image, tmp_path, qemu_processes):
    from pytest_sev.console.grub import BootEntryNotFound
    token = "dimg" + secrets.token_hex(4)
    img = image.instance(tmp_path, "qcow2")
    spec = disk_guest_spec(img, ovmf=ovmf_firmware(), user=image.user, password=image.password,
                           boot_entry=r"Windows Boot Manager", name=token, boot_timeout=120)
    with pytest.raises(BootEntryNotFound) as err, Guest(spec, workdir=tmp_path / "run"):
        pass
    msg = str(err.value)
    assert "no GRUB menu entry matches /Windows Boot Manager/" in msg
    for e in image.entries:
        assert e.title in msg
    assert "qemu command line:" in msg
    assert qemu_processes(token) == []
