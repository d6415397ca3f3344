"""``python -m pytest_sev launch``: parity with launch-qemu.sh's argv, host
gating, errors, and a real interactive session on a pty."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_sev.cache import cache_root
from pytest_sev.cli.launch import main, socket_path, state_dir
from pytest_sev.sev.launchsh import LaunchOptions, _split_opts, compare_argv, launch_sh_argv

ROOT = Path(__file__).resolve().parent.parent
HOSTS = ROOT / "fixtures" / "hosts"
READY = HOSTS / "epyc-milan-6.8-ready"
MILAN_CBIT = 51


@pytest.fixture
def prefix(tmp_path) -> Path:
    """A build.sh install prefix: QEMU (answers --version) and OVMF in share/qemu."""
    p = tmp_path / "prefix"
    (p / "bin").mkdir(parents=True)
    (p / "share" / "qemu").mkdir(parents=True)
    qemu = p / "bin" / "qemu-system-x86_64"
    qemu.write_text("#!/bin/sh\necho 'QEMU emulator version 8.2.2'\n")
    qemu.chmod(0o755)
    for f in ("OVMF_CODE.fd", "OVMF_VARS.fd"):
        (p / "share" / "qemu" / f).write_bytes(b"\0" * 4096)
    return p


def esp_disk(d: Path, name: str = "x.qcow2") -> Path:
    """A qcow2 with a GPT and an EFI system partition: what -hda must be
    (the --guest-image check) when OVMF boots it."""
    raw = d / "esp.raw"
    subprocess.run(["truncate", "-s", "4M", str(raw)], check=True)
    subprocess.run(["sgdisk", "-n", "1:2048:6000", "-t", "1:ef00", str(raw)], check=True, capture_output=True)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(d / name)], check=True)
    raw.unlink()
    return d / name


def state_of(image: Path) -> Path:
    """The private directory launch keeps IMAGE's derived files in."""
    return state_dir(image.name.rsplit(".", 1)[0], image.resolve())


@pytest.fixture
def guestdir(tmp_path) -> Path:
    d = tmp_path / "guests"
    d.mkdir()
    esp_disk(d)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "blank.qcow2"), "1G"], check=True)
    (d / "x.iso").write_bytes(b"\0" * 2048)
    (d / "vmlinuz").write_bytes(b"k")
    (d / "initrd.img").write_bytes(b"i")
    return d


def printed_argv(capsys, args: list[str]) -> list[str]:
    rc = main([*args, "--print-argv"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return shlex.split(out)


def _documented(ref: list[str]) -> list[str]:
    """The reference with the documented differences applied (launch.py's docstring)."""
    out: list[str] = []
    i = 0
    while i < len(ref):
        a = ref[i]
        if a == "-monitor":  # HMP pty + unix socket -> our QMP socket (dropped on both sides)
            i += 2
            continue
        a = a.replace("memory-encryption=sev0", "confidential-guest-support=sev0")
        if a.endswith(",readonly"):
            a += "=on"
        out.append(a)
        i += 1
    return out


def _ours(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "-qmp":
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


CASES = {
    "sev-es": (["-sev-es"], {"sev": True, "sev_es": True}),
    "sev": (["-sev"], {"sev": True}),
    "sev-allow-debug": (["-sev", "-allow-debug"], {"sev": True, "allow_debug": True}),
    "sev-es-allow-debug": (["-sev-es", "-allow-debug"],
                           {"sev": True, "sev_es": True, "allow_debug": True}),
    "plain-novirtio": (["-novirtio", "--accel", "kvm"], {"novirtio": True}),
    "sizes": (["-sev-es", "-mem", "2048", "-smp", "2"], {"sev": True, "sev_es": True,
                                                         "mem": 2048, "smp": 2}),
    "install": (["-cdrom", "{d}/x.iso", "-vnc", "1", "-console", "std", "--accel", "kvm"],
                {"cdrom": "{d}/x.iso", "vnc": "1", "console": "std"}),
    "kernel-gdb": (["-sev-es", "-kernel", "{d}/vmlinuz", "-initrd", "{d}/initrd.img",
                    "-append", "console=ttyS0 root=/dev/sda1", "-gdb"],
                   {"sev": True, "sev_es": True, "kernel": "{d}/vmlinuz",
                    "initrd": "{d}/initrd.img", "append": "console=ttyS0 root=/dev/sda1",
                    "gdb": True}),
}


@pytest.mark.parametrize("case", CASES)
def test_argv_parity_with_launch_qemu_sh(case, capsys, prefix, guestdir, monkeypatch):
    args, ref_kw = CASES[case]
    fill = lambda v: v.format(d=guestdir) if isinstance(v, str) else v  # noqa: E731
    args = [fill(a) for a in args]
    ref_kw = {k: fill(v) for k, v in ref_kw.items()}
    monkeypatch.chdir(guestdir)  # the script keeps NAME.fd in its cwd; we in a private directory
    state = state_of(guestdir / "x.qcow2")
    ours = printed_argv(capsys, ["-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix),
                                 "--host-recorded", str(READY), *args])
    ref = launch_sh_argv(LaunchOptions(hda=str(guestdir / "x.qcow2"), execpath=str(prefix),
                                       workdir=str(state), **ref_kw), cbitpos=MILAN_CBIT)
    # 1. the colleague's normalising comparison: no difference at all
    assert compare_argv(ours, ref) == []
    # 2. element for element, in order, once the documented differences are applied
    assert _ours(ours) == _documented(ref)
    assert [o for o, _ in _split_opts(ours) if o != "-qmp"] == \
        [o for o, _ in _split_opts(ref) if o != "-monitor"]
    assert ours[0] == f"{prefix}/bin/qemu-system-x86_64"
    assert f"unix:{socket_path(state, 'x')},server=on,wait=off" in ours  # the QMP difference
    assert state.parent == cache_root() / "launch"  # in launch's private place
    assert sorted(p.name for p in guestdir.iterdir()) == ["blank.qcow2", "initrd.img", "vmlinuz", "x.iso", "x.qcow2"]
    assert not state.exists()  # --print-argv changes nothing


def test_cli_entry_point_prints_the_sev_es_argv(prefix, guestdir):
    """The command from the issue, through ``python -m pytest_sev``."""
    img = guestdir / "x.qcow2"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_sev", "launch", "-sev-es", "-hda", str(img),
         "-execpath", str(prefix), "--host-recorded", str(READY), "--print-argv"],
        capture_output=True, text=True, cwd=guestdir, timeout=60)
    assert proc.returncode == 0, proc.stderr
    ours = shlex.split(proc.stdout)
    ref = launch_sh_argv(LaunchOptions(sev=True, sev_es=True, hda=str(img), execpath=str(prefix),
                                       workdir=str(state_of(img))), cbitpos=MILAN_CBIT)
    assert compare_argv(ours, ref) == []
    assert "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1" in ours


def test_distro_firmware_and_qemu_when_prefix_is_empty(capsys, tmp_path, guestdir):
    ours = printed_argv(capsys, ["-hda", str(guestdir / "x.qcow2"), "-execpath",
                                 str(tmp_path / "nothing"), "--accel", "tcg"])
    assert ours[0] == subprocess.run(["sh", "-c", "command -v qemu-system-x86_64"],
                                     capture_output=True, text=True).stdout.strip()
    assert ours[1:3] == ["-accel", "tcg"]
    code = [a for a in ours if "unit=0" in a][0]
    assert "/usr/share/OVMF/" in code or "/usr/share/edk2/" in code or "/usr/local/" in code


@pytest.mark.parametrize("host, mode, check", [
    ("epyc-milan-sev-es-param-off", "-sev-es", "kvm_amd_sev_es"),
    ("intel-xeon-icelake", "-sev", "cpu_vendor"),
    ("epyc-rome-smee-off", "-sev-es", None),
])
def test_unready_host_stops_sev_launch_naming_the_check(host, mode, check, capsys, prefix,
                                                        guestdir):
    rc = main([mode, "-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix),
               "--host-recorded", str(HOSTS / host), "--print-argv"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert f"host not ready for {mode[1:]}: host check " in err
    if check:
        assert f"host check {check} failed" in err


def test_sev_only_host_may_launch_plain_sev(capsys, prefix, guestdir):
    ours = printed_argv(capsys, ["-sev", "-hda", str(guestdir / "x.qcow2"), "-execpath",
                                 str(prefix), "--host-recorded", str(HOSTS / "epyc-milan-sev-only")])
    sev = [a for a in ours if a.startswith("sev-guest")][0]
    assert "policy" not in sev  # the script leaves QEMU's default 0x1
    assert "-no-reboot" not in ours


@pytest.mark.parametrize("args, message", [
    (["-hda", "/nonexistent/x.qcow2"], "-hda /nonexistent/x.qcow2: no such file"),
    ([], "nothing to boot"),
    (["-hda", "{d}/x.qcow2", "-initrd", "{d}/initrd.img"], "-initrd needs -kernel"),
    (["-hda", "{d}/x.qcow2", "-mem", "16"], "too small"),
    (["-hda", "{d}/x.qcow2", "-smp", "65"], "vcpus 65 out of range"),
    (["-hda", "/etc/passwd"], "-hda /etc/passwd: raw file without a partition table"),
    (["-hda", "/etc/passwd", "-cdrom", "{d}/x.iso"], "-hda /etc/passwd: raw file without a partition table"),
    (["-hda", "/dev/null"], "-hda /dev/null: raw file without a partition table"),
    (["-hda", "{d}/blank.qcow2"], "-hda {d}/blank.qcow2: qcow2 file without a partition table"),
])
def test_bad_options_fail_with_one_line(args, message, capsys, guestdir):
    rc = main([a.format(d=guestdir) for a in args] + ["--print-argv"])
    err = capsys.readouterr().err
    assert rc == 1 and message.format(d=guestdir) in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("extra", [["-cdrom", "{d}/x.iso"], ["-kernel", "{d}/vmlinuz"]])
def test_blank_disk_is_an_install_or_data_disk_beside_cdrom_or_kernel(extra, capsys, guestdir):
    """Not what OVMF boots: a blank disk (the installer's target) passes; alone it is refused above."""
    ours = printed_argv(capsys, ["-hda", str(guestdir / "blank.qcow2"), "--accel", "tcg",
                                 *[a.format(d=guestdir) for a in extra]])
    assert any(str(guestdir / "blank.qcow2") in a for a in ours)


def test_bare_file_system_is_a_root_disk_beside_kernel_only(capsys, guestdir):
    """A raw ext4 image (no partition table) is a disk for -kernel ... root=/dev/sda, not one OVMF boots."""
    data = bytearray(64 * 1024)
    data[0x438:0x43A] = b"\x53\xef"  # ext2/3/4 superblock magic
    (guestdir / "root.img").write_bytes(bytes(data))
    ours = printed_argv(capsys, ["-hda", str(guestdir / "root.img"), "-kernel", str(guestdir / "vmlinuz"),
                                 "--accel", "tcg"])
    assert any(str(guestdir / "root.img") in a for a in ours)
    assert main(["-hda", str(guestdir / "root.img"), "--accel", "tcg", "--print-argv"]) == 1
    assert "raw file without a partition table" in capsys.readouterr().err


def test_kernel_only_launch_keeps_its_files_in_the_current_directory(capsys, tmp_path, monkeypatch, guestdir):
    """No image to derive from: the script's place, the current directory."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ours = printed_argv(capsys, ["-kernel", str(guestdir / "vmlinuz"), "--accel", "tcg"])
    assert f"unix:{work}/guest.qmp,server=on,wait=off" in ours
    assert list(work.iterdir()) == []


def test_derived_files_go_to_a_private_directory(tmp_path, monkeypatch, capsys, prefix, guestdir):
    """A real (non-print) launch makes NAME.fd and the QMP socket's directory 0700,
    away from the image; nothing is written beside it (QEMU itself is a stub here)."""
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "cache"))
    qemu = prefix / "bin" / "qemu-system-x86_64"
    qemu.write_text("#!/bin/sh\ncase \"$1\" in --version) echo 'QEMU emulator version 8.2.2';; esac\nexit 0\n")
    before = sorted(p.name for p in guestdir.iterdir())
    rc = main(["-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix), "--accel", "tcg"])
    err = capsys.readouterr().err
    assert rc == 0, err
    state = state_of(guestdir / "x.qcow2")
    assert state.is_relative_to(tmp_path / "cache" / "launch")
    assert (state.stat().st_mode & 0o777) == 0o700
    assert (state / "x.fd").read_bytes() == (prefix / "share" / "qemu" / "OVMF_VARS.fd").read_bytes()
    assert f"created {state / 'x.fd'}" in err
    assert sorted(p.name for p in guestdir.iterdir()) == before


def test_a_loose_state_directory_is_tightened_to_0700(tmp_path, monkeypatch, capsys, prefix, guestdir):
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "cache"))
    qemu = prefix / "bin" / "qemu-system-x86_64"
    qemu.write_text("#!/bin/sh\ncase \"$1\" in --version) echo 'QEMU emulator version 8.2.2';; esac\nexit 0\n")
    state = state_of(guestdir / "x.qcow2")
    state.mkdir(parents=True, mode=0o755)
    state.chmod(0o755)
    assert main(["-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix), "--accel", "tcg"]) == 0
    assert (state.stat().st_mode & 0o777) == 0o700


def test_qmp_socket_too_long_for_its_place_gets_a_private_short_one(tmp_path, monkeypatch, capsys, prefix,
                                                                    guestdir):
    """sun_path holds 108 bytes: a deep cache puts the socket in its own 0700 directory under /tmp."""
    import tempfile

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(deep))
    state = state_of(guestdir / "x.qcow2")
    sock = socket_path(state, "x")
    assert sock.parent != state and sock.parent.parent == Path(tempfile.gettempdir()) and len(str(sock)) <= 100
    ours = printed_argv(capsys, ["-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix), "--accel", "tcg"])
    assert f"unix:{sock},server=on,wait=off" in ours
    assert not sock.parent.exists()  # --print-argv makes nothing


def test_someone_elses_state_directory_is_refused(tmp_path, monkeypatch, capsys, prefix, guestdir):
    """A symlink planted where the private directory goes is not followed."""
    monkeypatch.setenv("PYTEST_SEV_CACHE", str(tmp_path / "cache"))
    state = state_of(guestdir / "x.qcow2")
    state.parent.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    state.symlink_to(tmp_path / "elsewhere")
    rc = main(["-hda", str(guestdir / "x.qcow2"), "-execpath", str(prefix), "--accel", "tcg"])
    err = capsys.readouterr().err
    assert rc == 1 and "not a private directory of this user" in err and len(err.strip().splitlines()) == 1
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-sev-tdx"])  # (-sev-snp was the example until SEV-SNP launches arrived)
    assert exc.value.code == 2


# -- a real, interactive session ----------------------------------------------------

@pytest.mark.qemu
def test_interactive_console_menu_login_ctrl_c_and_escape(tmp_path, qemu_processes):
    """On a pty, as a person: arrow keys in GRUB, login, Ctrl-C to the guest,
    Ctrl-] stops QEMU and the launcher exits 0 with nothing left behind."""
    import pexpect

    from pytest_sev.images.diskimage import default_disk_image
    from pytest_sev.images.provision import provisioned_kernel
    if provisioned_kernel() is None:
        pytest.skip("default guest kernel not provisioned (scripts/setup.sh)")
    image = default_disk_image()
    token = "launch" + secrets.token_hex(4)
    img = image.instance(tmp_path, "qcow2", name=token)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = pexpect.spawn(sys.executable, ["-m", "pytest_sev", "launch", "-hda", str(img),
                                           "-mem", "1024", "-smp", "2"],
                          cwd=str(tmp_path), env=env, timeout=180)
    child.logfile_read = open(tmp_path / "outer.log", "wb")
    try:
        child.expect(rb"executed automatically in")
        child.send(b"\x1b[B")
        child.expect(rb"\*Debian[^\r\n\x1b]*recovery mode")
        child.send(b"\x1b[B")
        child.expect(rb"\*Debian[^\r\n\x1b]*-sev-es")
        child.send(b"\r")
        child.expect(rb"sev-guest login: ")
        child.sendline(image.user)
        child.expect(rb"Password: ")
        child.sendline(image.password)
        child.expect(rb"sev-guest# ")
        child.sendline(b"cat /proc/cmdline")
        child.expect(rb"pytest_sev\.entry=(\S+)\s")  # up to its end: the output may arrive in pieces
        assert child.match.group(1) == b"sev-es"
        child.expect(rb"sev-guest# ")
        assert qemu_processes(token) != []
        child.sendline(b"sleep 300")
        time.sleep(1)
        child.send(b"\x03")  # reaches the guest's shell, not QEMU
        child.expect(rb"sev-guest# ", timeout=30)
        child.sendline(b"echo still-$((40+2))")
        child.expect(rb"still-42")
        child.send(b"\x1d")  # Ctrl-]
        child.expect(rb"guest stopped \(([^)]*)\)")
        assert child.match.group(1) == b"qmp quit"
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert qemu_processes(token) == []
    state = state_of(Path(img))
    try:
        assert (state / f"{token}.fd").exists()  # the variable store, in the private directory
        assert b"GNU GRUB" in (state / f"{token}.log").read_bytes()  # the console log
        assert not (state / f"{token}.qmp").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(token)] == [Path(img).name]
    finally:
        import shutil
        shutil.rmtree(state, ignore_errors=True)
