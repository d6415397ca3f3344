"""Bad values of issue 15 (rows 7-10): each is one line at start-up (rc 4),
before any guest boots, naming the option, the value and what is wrong.
Plus the pure checks behind them, on crafted files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pytest_sev import config as cfgmod
from pytest_sev.errors import ConfigError
from pytest_sev.qemu.accel import choose_accel


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def fake_kernel(d: Path) -> Path:
    data = bytearray(8192)
    data[0x202:0x206] = b"HdrS"
    return _bytes(d / "bzImage", bytes(data))


def raw_disk(d: Path, mbr_type: int | None = None) -> Path:
    data = bytearray(64 * 1024)
    if mbr_type is not None:
        data[446 + 4] = mbr_type
        data[510:512] = b"\x55\xaa"
    return _bytes(d / "disk.raw", bytes(data))


def gpt_disk(d: Path, esp: bool) -> Path:
    path = d / ("esp.raw" if esp else "noesp.raw")
    subprocess.run(["truncate", "-s", "4M", str(path)], check=True)
    kind = "ef00" if esp else "8300"
    subprocess.run(["sgdisk", "-n", "1:2048:6000", "-t", f"1:{kind}", str(path)], check=True,
                   capture_output=True)
    return path


def passwd_size_is_not_flash() -> bool:
    size = Path("/etc/passwd").stat().st_size
    return size % 4096 != 0


KVM_UNUSABLE = choose_accel("auto").name != "kvm"

# (args, expected fragment of the one ERROR line); "{d}" is a scratch directory
BAD = [
    # row 7
    (["--guest-image=/etc/passwd"], "--guest-image /etc/passwd: raw file without a partition table"),
    # row 8
    (["--qemu=/bin/true"], "--qemu /bin/true: not QEMU ('/bin/true --version' printed "),
    (["--guest-kernel=/etc/passwd"], "--guest-kernel /etc/passwd: not a Linux kernel (no bzImage 'HdrS' header"),
    pytest.param(["--accel=kvm"], "--accel kvm: KVM cannot run guests on this host",
                 marks=pytest.mark.skipif(not KVM_UNUSABLE, reason="KVM can run guests here")),
    (["--guest-timeout=inf"], "--guest-timeout inf: must be a finite number of seconds"),
    (["--guest-boot-entry=(", "--guest-image=/etc/passwd"], "--guest-boot-entry '(' is not a valid regex"),
    (["--guest-log-dir=/dev/full"], "--guest-log-dir /dev/full: not a directory"),
    # row 9
    pytest.param(["--ovmf-code=/etc/passwd"], "--ovmf-code /etc/passwd: ",
                 marks=pytest.mark.skipif(not passwd_size_is_not_flash(), reason="/etc/passwd is 4 KiB-sized")),
    pytest.param(["--ovmf-vars=/etc/passwd"], "--ovmf-vars /etc/passwd: ",
                 marks=pytest.mark.skipif(not passwd_size_is_not_flash(), reason="/etc/passwd is 4 KiB-sized")),
    (["--ovmf-code={d}/empty.fd"], "is not a flash image size"),
    (["--guest-boot-entry=("], "--guest-boot-entry '(' is not a valid regex"),
    (["--guest-boot-entry=sev-es"], "--guest-boot-entry needs --guest-image"),
    (["--guest-timeout=nan"], "--guest-timeout nan: must be a finite number of seconds"),
    (["--guest-timeout=1e-9"], "--guest-timeout 1e-09: must be at least 1 second"),
    # initrd with a kernel that passes its check
    (["--guest-kernel={d}/bzImage", "--guest-initrd=/etc/passwd"], "--guest-initrd /etc/passwd: not an initrd"),
    # disks that are not bootable by OVMF
    (["--guest-image={d}/disk.raw"], "raw file without a partition table"),
    (["--guest-image={d}/noesp.raw"], "raw disk (gpt) without an EFI system partition"),
]


@pytest.mark.parametrize("args,message", BAD, ids=lambda v: str(v))
def test_bad_value_is_one_line_at_start_up(pytester, tmp_path, args, message):
    fake_kernel(tmp_path)
    raw_disk(tmp_path)
    (tmp_path / "empty.fd").write_bytes(b"")
    if any("noesp" in a for a in args):
        gpt_disk(tmp_path, esp=False)
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess("-o", "sev_allure=false",
                                           *[a.replace("{d}", str(tmp_path)) for a in args])
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.errlines
    assert message.replace("{d}", str(tmp_path)) in errors[0]
    assert "Traceback" not in result.stderr.str()
    assert "must not run" not in result.stdout.str()


# -- the checks themselves ---------------------------------------------------------

def test_kernel_header(tmp_path):
    cfgmod.check_kernel(fake_kernel(tmp_path))
    with pytest.raises(ConfigError, match="not a Linux kernel"):
        cfgmod.check_kernel(_bytes(tmp_path / "x", b"\0" * 4096))


@pytest.mark.parametrize("head,kind", [(b"070701" + b"0" * 10, "cpio"), (b"\x1f\x8b\x08\0", "gzip"),
                                       (b"\xfd7zXZ\0", "xz"), (b"\x28\xb5\x2f\xfd", "zstd")])
def test_initrd_magic(tmp_path, head, kind):
    assert cfgmod.check_initrd(_bytes(tmp_path / "i", head + b"\0" * 64)) == kind


def test_real_ovmf_files_pass_the_flash_check():
    from pytest_sev.qemu.firmware import find_ovmf
    found = find_ovmf()
    if found is None:
        pytest.skip("no OVMF installed")
    for path in found:
        cfgmod.check_flash(path, "--ovmf-code")


def test_partition_tables(tmp_path):
    assert cfgmod.partitions_summary(raw_disk(tmp_path).read_bytes()) == (None, False)
    assert cfgmod.partitions_summary(raw_disk(tmp_path, 0xEF).read_bytes()) == ("mbr", True)
    assert cfgmod.partitions_summary(raw_disk(tmp_path, 0x83).read_bytes()) == ("mbr", False)
    assert cfgmod.partitions_summary(gpt_disk(tmp_path, esp=True).read_bytes()[:34 * 512]) == ("gpt", True)
    assert cfgmod.partitions_summary(gpt_disk(tmp_path, esp=False).read_bytes()[:34 * 512]) == ("gpt", False)


def test_qcow2_with_esp_passes_and_without_fails(tmp_path):
    good = tmp_path / "good.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(gpt_disk(tmp_path, esp=True)), str(good)], check=True)
    assert cfgmod.check_disk_image(good) == "qcow2"
    bad = tmp_path / "bad.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(gpt_disk(tmp_path, esp=False)), str(bad)], check=True)
    with pytest.raises(ConfigError, match="qcow2 disk \\(gpt\\) without an EFI system partition"):
        cfgmod.check_disk_image(bad)


def test_the_default_disk_image_passes(tmp_path):
    from pytest_sev.images.provision import provisioned_kernel
    if provisioned_kernel() is None:
        pytest.skip("default guest kernel not provisioned")
    from pytest_sev.images.diskimage import default_disk_image
    image = default_disk_image()
    assert cfgmod.check_disk_image(image.instance(tmp_path, "qcow2", name="x")) == "qcow2"


@pytest.mark.parametrize("text,value", [("300", 300.0), ("1", 1.0), (None, 300.0)])
def test_good_timeouts(text, value):
    assert cfgmod.parse_seconds("--guest-timeout", text, 300.0) == value


def test_real_qemu_reports_its_version():
    import shutil
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("no QEMU")
    assert cfgmod.check_qemu(qemu)[0] >= 2
