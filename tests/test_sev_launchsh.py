"""launch-qemu.sh (sev-es branch) argv reference and the parity comparison."""

import pytest

from pytest_sev.sev import launchsh as L

# What the sev-es branch script prints for the README's SEV-ES launch
# (launch-qemu.sh -hda IMAGE.qcow2 -vnc 1 -console serial -sev-es), with
# /usr/local prefix, no br0 and C-bit 51, written out by hand from the script.
README_SEV_ES = ["/usr/local/bin/qemu-system-x86_64", "-enable-kvm", "-cpu", "EPYC", "-machine", "q35", "-smp", "4,maxcpus=64", "-m", "4096M,slots=5,maxmem=30G", "-no-reboot", "-drive", "if=pflash,format=raw,unit=0,file=/usr/local/share/qemu/OVMF_CODE.fd,readonly", "-drive", "if=pflash,format=raw,unit=1,file=/root/IMAGE.fd", "-netdev", "user,id=vmnic", "-device", "e1000,netdev=vmnic,romfile=", "-drive", "file=/root/IMAGE.qcow2,if=none,id=disk0,format=qcow2", "-device", "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=true", "-device", "scsi-hd,drive=disk0", "-object", "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1", "-machine", "memory-encryption=sev0,vmport=off", "-nographic", "-vnc", ":1", "-monitor", "pty", "-monitor", "unix:monitor,server,nowait"]


def argv(args, cbit=51, **kw):
    opts = L.parse_launch_args(args)
    if kw:
        opts = L.LaunchOptions(**{**opts.__dict__, **kw})
    return L.launch_sh_argv(opts, cbit)


def test_readme_sev_es_launch():
    got = argv(["-hda", "/root/IMAGE.qcow2", "-vnc", "1", "-console", "serial", "-sev-es"],
               workdir="/root")
    assert got == README_SEV_ES


def test_install_from_cdrom_plain():
    got = argv(["-hda", "/root/g.qcow2", "-cdrom", "/iso/distro.iso", "-vnc", "1"], cbit=None)
    assert "-no-reboot" not in got and "-object" not in got
    i = got.index("file=/iso/distro.iso,media=cdrom")
    assert got[i - 1] == "-drive" and got[i + 1:i + 3] == ["-boot", "d"]
    assert "./g.fd" in got[got.index("-drive") + 3]


@pytest.mark.parametrize("args,obj", [
    (["-sev"], "sev-guest,id=sev0,cbitpos=51,reduced-phys-bits=1"),
    (["-sev", "-allow-debug"], "sev-guest,id=sev0,policy=0,cbitpos=51,reduced-phys-bits=1"),
    (["-sev-es"], "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1"),
    (["-sev-es", "-allow-debug"], "sev-guest,id=sev0,policy=0x4,cbitpos=51,reduced-phys-bits=1"),
])
def test_sev_object_policy_formatting(args, obj):
    got = argv(["-hda", "/g.raw"] + args)
    assert got[got.index("-object") + 1] == obj
    assert got[got.index("-object") + 3] == "memory-encryption=sev0,vmport=off"
    assert ("-no-reboot" in got) == ("-sev-es" in args)


def test_novirtio_raw_disk_and_order():
    got = argv(["-hda", "/g.img", "-novirtio", "-smp", "2", "-mem", "1024", "-console", "std",
                "-gdb", "-execpath", "/opt/sev"], cbit=None)
    assert got[0] == "/opt/sev/bin/qemu-system-x86_64"
    assert got[got.index("-smp") + 1] == "2,maxcpus=64"
    assert got[got.index("-m") + 1] == "1024M,slots=5,maxmem=30G"
    assert "file=/g.img,format=raw" in got and "virtio-scsi-pci" not in " ".join(got)
    assert got[-6:] == ["-vga", "std", "-monitor", "pty", "-monitor", "unix:monitor,server,nowait"] \
        or got[-1] == "-s"
    assert got[-1] == "-s" and "-nographic" not in got
    assert "/opt/sev/share/qemu/OVMF_CODE.fd" in " ".join(got)


def test_bridge_network():
    tap = L.BridgeTap("tap2", "52:54:00:aa:bb:02")
    got = argv(["-hda", "/g.qcow2"], bridge=tap)
    assert got[got.index("-netdev") + 1] == "type=tap,script=no,downscript=no,id=net0,ifname=tap2"
    assert got[got.index("-netdev") + 3].startswith("virtio-net-pci,mac=52:54:00:aa:bb:02,")
    got = argv(["-hda", "/g.qcow2", "-novirtio"], bridge=tap)
    assert got[got.index("-netdev") + 3] == "e1000,mac=52:54:00:aa:bb:02,netdev=net0,romfile="


def test_kernel_initrd_append_other_branches():
    got = argv(["-sev-es", "-kernel", "/k", "-initrd", "/i"])
    i = got.index("-kernel")
    assert got[i:i + 6] == ["-kernel", "/k", "-append",
                            "console=ttyS0 earlyprintk=serial root=/dev/sda2", "-initrd", "/i"]
    assert i > got.index("-object")
    got = argv(["-kernel", "/k", "-append", "console=ttyS0 swiotlb=262144"], cbit=None)
    assert got[got.index("-append") + 1] == "console=ttyS0 swiotlb=262144"


def test_parse_errors_and_cbit():
    for bad in (["-bogus"], ["-hda"], ["-mem", "lots"], ["-smp", "0"]):
        with pytest.raises(ValueError):
            L.parse_launch_args(bad)
    with pytest.raises(ValueError):
        L.launch_sh_argv(L.parse_launch_args(["-sev"]), None)
    assert L.cbitpos_from_cpuid_ebx(0x16F) == 47
    assert L.parse_launch_args(["-sev-es"]).sev is True


# ---- parity

OURS_SEV_ES = [
    "qemu-system-x86_64", "-accel", "kvm", "-cpu", "EPYC", "-machine", "q35,confidential-guest-support=sev0,vmport=off",
    "-smp", "4,maxcpus=64", "-m", "4096M,slots=5,maxmem=30G", "-no-reboot",
    "-drive", "if=pflash,format=raw,unit=0,file=/usr/local/share/qemu/OVMF_CODE.fd,readonly=on",
    "-drive", "if=pflash,format=raw,unit=1,file=/root/IMAGE.fd",
    "-netdev", "user,id=vmnic", "-device", "e1000,netdev=vmnic,romfile=",
    "-drive", "file=/root/IMAGE.qcow2,if=none,id=disk0,format=qcow2",
    "-device", "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=on",
    "-device", "scsi-hd,drive=disk0",
    "-object", "sev-guest,id=sev0,policy=5,cbitpos=51,reduced-phys-bits=1",
    "-display", "none", "-vnc", ":1",
    "-chardev", "socket,id=serial0,fd=4", "-serial", "chardev:serial0",
    "-chardev", "socket,id=mon,fd=3", "-mon", "chardev=mon,mode=control",
]


def test_documented_differences_normalise_to_parity():
    assert L.compare_argv(OURS_SEV_ES, README_SEV_ES) == []
    assert {d.topic for d in L.DOCUMENTED_DIFFERENCES} == {
        "monitor", "memory-encryption", "pflash-readonly", "console", "accel"}


def test_real_differences_are_reported():
    ours = list(OURS_SEV_ES)
    ours[ours.index("-no-reboot")] = "-S"
    ours[ours.index("sev-guest,id=sev0,policy=5,cbitpos=51,reduced-phys-bits=1")] = \
        "sev-guest,id=sev0,policy=1,cbitpos=51,reduced-phys-bits=1"
    i = ours.index("scsi-hd,drive=disk0")
    del ours[i - 1:i + 1]
    ours += ["-device", "virtio-blk-pci,drive=disk1"]
    diffs = L.compare_argv(ours, README_SEV_ES)
    text = "\n".join(diffs)
    assert "missing in ours: -no-reboot" in text
    assert "extra in ours: -S" in text
    assert "-object id=sev0: policy ours '1', reference '0x5'" in text
    assert "missing in ours: -device scsi-hd drive=disk0" in text
    assert "extra in ours: -device virtio-blk-pci drive=disk1" in text
    assert len(diffs) == 5


def test_ignore_paths():
    ours = [a.replace("/root/", "/var/cache/") for a in OURS_SEV_ES]
    assert L.compare_argv(ours, README_SEV_ES) != []
    assert L.compare_argv(ours, README_SEV_ES, ignore_paths=True) == []


def test_machine_memory_encryption_missing_is_reported():
    ours = [a if a != "q35,confidential-guest-support=sev0,vmport=off" else "q35,vmport=off"
            for a in OURS_SEV_ES]
    assert L.compare_argv(ours, README_SEV_ES) == ["-machine: missing confidential-guest-support=sev0"]


def test_harness_style_argv_reports_only_undocumented_differences():
    """The shape pytest_sev.qemu.argv builds: -name/-nodefaults and cache options are real differences."""
    ours = ["qemu-system-x86_64", "-name", "g", "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", "kvm", "-cpu", "EPYC", "-machine", "q35,confidential-guest-support=sev0",
            "-smp", "4", "-m", "4096", "-no-reboot",
            "-drive", "if=pflash,format=raw,unit=0,file=/usr/local/share/qemu/OVMF_CODE.fd,readonly=on",
            "-drive", "if=pflash,format=raw,unit=1,file=/root/IMAGE.fd",
            "-drive", "file=/root/IMAGE.qcow2,if=none,id=disk0,format=qcow2,cache=none,aio=threads",
            "-device", "virtio-scsi-pci,id=scsi0,disable-legacy=on,iommu_platform=on",
            "-device", "scsi-hd,drive=disk0,bus=scsi0.0",
            "-object", "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1",
            "-chardev", "socket,id=serial0,fd=4", "-serial", "chardev:serial0",
            "-chardev", "socket,id=qmp0,fd=5", "-mon", "chardev=qmp0,mode=control"]
    diffs = L.compare_argv(ours, README_SEV_ES)
    assert "extra in ours: -name g" in diffs
    assert "-smp: ours '4', reference '4'" not in diffs
    assert "-smp: missing maxcpus=64" in diffs
    assert not any(d.startswith("-m: ours") for d in diffs)  # 4096 == 4096M
    assert "-m: missing slots=5" in diffs
    assert "-drive id=disk0: extra cache=none" in diffs
    assert "-machine: missing vmport=off" in diffs
    assert not any("serial0" in d or "qmp0" in d or "readonly" in d or "accel" in d for d in diffs)


@pytest.mark.parametrize("ours,same", [("4096", True), ("4G", True), ("size=4096M", True), ("2048", False)])
def test_memory_sizes_compare_by_value(ours, same):
    a = ["-m", ours + ",slots=5,maxmem=30G"]
    b = ["-m", "4096M,slots=5,maxmem=30G"]
    assert (L.compare_argv(a, b) == []) is same
