"""The argv builder, element by element (pure: no QEMU runs)."""

from pathlib import Path

import pytest

from pytest_sev.model.spec import Disk, Firmware, GuestSpec, SevLaunch, SpecError
from pytest_sev.qemu.argv import build_argv


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    return k


def _argv(spec, version=(7, 2), accel="tcg"):
    return build_argv(spec, qemu="qemu-system-x86_64", accel=accel, qemu_version=version,
                      serial_fd=5, qmp_fd=6, vars_path=Path("/run/g/VARS.fd"))


def _after(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_plain_guest(kernel):
    argv = _argv(GuestSpec(kernel=kernel, append="console=ttyS0", memory_mib=512, vcpus=3))
    assert argv[0] == "qemu-system-x86_64"
    assert _after(argv, "-accel") == ["tcg"] and _after(argv, "-cpu") == ["max"]
    assert _after(argv, "-m") == ["512"] and _after(argv, "-smp") == ["3"]
    assert _after(argv, "-machine") == ["q35"]
    assert _after(argv, "-append") == ["console=ttyS0"]
    assert "socket,id=serial0,fd=5" in argv and "socket,id=qmp0,fd=6" in argv
    assert "chardev=qmp0,mode=control" in argv
    assert not any("pflash" in a for a in argv)


def test_kvm_uses_host_cpu(kernel):
    assert _after(_argv(GuestSpec(kernel=kernel), accel="kvm"), "-cpu") == ["host"]


def test_disks_and_iommu_flags(kernel, tmp_path):
    disks = (Disk(tmp_path / "a.img", bus="virtio-blk", iommu_platform=True, disable_legacy=True, num_queues=4),
             Disk(tmp_path / "b.qcow2", bus="virtio-scsi", format="qcow2"))
    argv = _argv(GuestSpec(kernel=kernel, disks=disks))
    devices = _after(argv, "-device")
    assert devices[0] == "virtio-blk-pci,drive=disk0,id=vblk0,num-queues=4,disable-legacy=on,iommu_platform=on"
    assert devices[1:] == ["virtio-scsi-pci,id=scsi1", "scsi-hd,drive=disk1,bus=scsi1.0"]
    drives = _after(argv, "-drive")
    assert drives[0].startswith(f"file={tmp_path / 'a.img'},if=none,id=disk0,format=raw")
    assert "format=qcow2" in drives[1]


def _sev_spec(kernel, mode="sev-es", policy=0x5):
    fw = Firmware(kind="ovmf", code=Path("/x/CODE.fd"), vars_template=Path("/x/VARS.fd"))
    return GuestSpec(kernel=kernel, firmware=fw, sev=SevLaunch(mode=mode, policy=policy, cbitpos=51),
                     disks=(Disk(Path("/d.img"), bus="virtio-scsi"),))


def test_sev_es_guest_matches_launch_script_shape(kernel):
    argv = _argv(_sev_spec(kernel))
    assert _after(argv, "-cpu") == ["EPYC"]
    assert _after(argv, "-machine") == ["q35,confidential-guest-support=sev0"]
    assert "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1" in _after(argv, "-object")
    assert "-no-reboot" in argv
    assert _after(argv, "-drive")[:2] == ["if=pflash,format=raw,unit=0,file=/x/CODE.fd,readonly=on",
                                         "if=pflash,format=raw,unit=1,file=/run/g/VARS.fd"]
    # an SEV guest's virtio devices must use the DMA API
    assert "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=on" in _after(argv, "-device")


def test_old_qemu_uses_memory_encryption(kernel):
    assert _after(_argv(_sev_spec(kernel), version=(5, 2)), "-machine") == ["q35,memory-encryption=sev0"]


@pytest.mark.parametrize("mode,policy", [("sev", 0x5), ("sev-es", 0x1)])
def test_policy_contradicting_mode_is_refused(kernel, mode, policy):
    with pytest.raises(SpecError, match="ES bit"):
        _sev_spec(kernel, mode, policy)


def test_sev_needs_ovmf(kernel):
    with pytest.raises(SpecError, match="OVMF"):
        GuestSpec(kernel=kernel, sev=SevLaunch(mode="sev", policy=1, cbitpos=47))


@pytest.mark.parametrize("fields,msg", [
    ({"memory_mib": 16}, "too small"), ({"vcpus": 0}, "vcpus"), ({"kernel": None}, "kernel or a disk"),
    ({"kernel": Path("/nonexistent/vmlinuz")}, "no such file"),
])
def test_impossible_specs_fail_in_one_line(kernel, fields, msg):
    base = {"kernel": kernel}
    base.update(fields)
    with pytest.raises(SpecError, match=msg) as err:
        GuestSpec(**base)
    assert "\n" not in str(err.value)


def test_attested_launch_renders_session_files_and_paused_start(kernel, tmp_path):
    """The owner's files go on the sev-guest object (QEMU reads them at LAUNCH_START)
    and -S keeps the guest in state launch-secret until the owner says cont."""
    sev = SevLaunch("sev-es", 0x5, 51).with_session(tmp_path / "godh.b64", tmp_path / "session.b64")
    spec = GuestSpec(kernel=kernel, sev=sev, paused=True,
                     firmware=Firmware("ovmf", Path("/fw/CODE.fd"), Path("/fw/VARS.fd")))
    argv = _argv(spec)
    assert "-S" in argv
    obj = argv[argv.index("-object") + 1]
    assert obj == (f"sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1,"
                   f"dh-cert-file={tmp_path / 'godh.b64'},session-file={tmp_path / 'session.b64'}")
