"""Provenance: what each guest ran, from its QEMU argv, in attachments and the environment.

Pure parts on rendered argvs (the harness's own renderer), then a pytester
session under xdist with a fake *built* kernel (a real bzImage setup header,
``6.1.187-sev-es``) chosen by ``--components=kernel=prefix:...``: the
environment must name that kernel and its sha256, not the configured default,
and a second guest on another kernel makes two distinct sets, each guest's
attachment naming its own.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from pytest_sev.model.spec import Disk, Firmware, GuestSpec, Preload
from pytest_sev.qemu.argv import build_argv
from pytest_sev.reporting import provenance
from pytest_sev.reporting.environment import ran_entries
from pytest_sev.reporting.provenance import ArgvFile, argv_files, describe, qcow2_backing, set_id, split_opts

BUILT = "6.1.187-sev-es (pytest-sev@pytest-sev) #1 SMP PREEMPT_DYNAMIC Tue Dec 01 04:24:33 UTC 2026"
DISTRO = "6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3"


def fake_bzimage(path: Path, version: str, payload: bytes = b"") -> Path:
    """A file with a real x86 boot-protocol setup header (HdrS, version pointer)."""
    data = bytearray(0x800)
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    data[0x20E:0x210] = struct.pack("<H", 0x300)  # the string at 0x300 + 0x200
    text = version.encode() + b"\0"
    data[0x500:0x500 + len(text)] = text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data) + payload)
    return path


def fake_qemu(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.19 (fake)'\n")
    path.chmod(0o755)
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- pure ----------------------------------------------------------------------------

def test_split_opts_qemu_syntax():
    assert split_opts("file=/a,,b.img,if=none,readonly=on") == {"file": "/a,b.img", "if": "none", "readonly": "on"}
    assert split_opts("disk.img,format=raw") == {"": "disk.img", "format": "raw"}


def test_argv_files_from_the_harness_renderer(tmp_path):
    fw = Firmware(kind="ovmf", code=Path("/fw/OVMF_CODE.fd"), vars_template=Path("/fw/OVMF_VARS.fd"))
    k = tmp_path / "k"
    k.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (k / name).write_bytes(b"")
    spec = GuestSpec(name="g", firmware=fw, kernel=k / "vmlinuz", initrd=k / "initrd.img",
                     append="console=ttyS0",
                     disks=(Disk(Path("/img/base.qcow2"), format="qcow2", snapshot=True),
                            Disk(Path("/tmp/scratch.img"), bus="virtio-scsi")))
    argv = build_argv(spec, qemu="/opt/q/bin/qemu-system-x86_64", accel="tcg", qemu_version=(7, 2),
                      serial_fd=3, qmp_fd=4, vars_path=tmp_path / "OVMF_VARS.fd")
    assert argv_files(argv) == [
        ArgvFile("qemu", "/opt/q/bin/qemu-system-x86_64"),
        ArgvFile("ovmf.code", "/fw/OVMF_CODE.fd"),
        ArgvFile("ovmf.vars", str(tmp_path / "OVMF_VARS.fd"), writable=True),
        ArgvFile("kernel", str(k / "vmlinuz")),
        ArgvFile("initrd", str(k / "initrd.img")),
        ArgvFile("disk0", "/img/base.qcow2", writable=False, fmt="qcow2"),   # snapshot=on: an input
        ArgvFile("disk1", "/tmp/scratch.img", writable=True, fmt="raw"),     # the run's output
    ]


def test_argv_files_of_an_amdsev_guest_with_a_preload(tmp_path):
    """The AmdSev OVMF is -bios; a preload (QEMU's generic loader) is an input too."""
    table = tmp_path / "secret.bin"
    table.write_bytes(b"\0" * 16)
    spec = GuestSpec(name="g", firmware=Firmware("amdsev", code=Path("/fw/OVMF.amdsev.fd")),
                     disks=(Disk(Path("/img/disk.img"), snapshot=True),), preloads=(Preload(table, 0x80C000),))
    argv = build_argv(spec, qemu="/opt/q/bin/qemu-system-x86_64", accel="tcg", qemu_version=(7, 2),
                      serial_fd=3, qmp_fd=4)
    assert argv_files(argv) == [
        ArgvFile("qemu", "/opt/q/bin/qemu-system-x86_64"),
        ArgvFile("bios", "/fw/OVMF.amdsev.fd"),
        ArgvFile("disk0", "/img/disk.img", writable=False, fmt="raw"),
        ArgvFile("preload", str(table)),
    ]


def test_qcow2_backing_header():
    name = b"../base/disk.img"
    head = bytearray(0x200)
    head[:4] = b"QFI\xfb"
    struct.pack_into(">IQI", head, 4, 3, 0x100, len(name))
    head[0x100:0x100 + len(name)] = name
    assert qcow2_backing(bytes(head)) == "../base/disk.img"
    assert qcow2_backing(b"\0" * 0x200) is None


def test_describe_hashes_inputs_not_outputs(tmp_path):
    kernel = fake_bzimage(tmp_path / "built" / "vmlinuz", BUILT)
    qemu = fake_qemu(tmp_path / "bin" / "qemu-system-x86_64")
    code, template = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    code.write_bytes(b"code")
    template.write_bytes(b"vars")
    base = tmp_path / "img" / "base.img"
    base.parent.mkdir()
    base.write_bytes(b"base")
    overlay = tmp_path / "img" / "overlay.qcow2"
    head = bytearray(0x200)
    head[:4] = b"QFI\xfb"
    struct.pack_into(">IQI", head, 4, 3, 0x100, len(b"base.img"))
    head[0x100:0x108] = b"base.img"
    overlay.write_bytes(bytes(head))
    files = [ArgvFile("qemu", str(qemu)), ArgvFile("ovmf.code", str(code)),
             ArgvFile("ovmf.vars", str(tmp_path / "run" / "VARS.fd"), writable=True),
             ArgvFile("kernel", str(kernel)), ArgvFile("disk0", str(overlay), fmt="qcow2"),
             ArgvFile("disk1", str(tmp_path / "scratch.img"), writable=True, fmt="raw")]
    arts = {a.role: a for a in describe(files, vars_template=template, built={sha(kernel): "built kernel x"})}
    assert arts["kernel"].sha256 == sha(kernel)
    assert arts["kernel"].detail.startswith("release 6.1.187-sev-es; (pytest-sev@pytest-sev) #1")
    assert arts["kernel"].origin == "built kernel x"
    assert arts["qemu"].detail == "QEMU emulator version 7.2.19 (fake)"
    assert arts["ovmf.vars-template"].sha256 == sha(template)
    assert arts["ovmf.vars"].sha256 == "" and "not hashed" in arts["ovmf.vars"].note
    assert arts["disk0.backing"].path == str(base) and arts["disk0.backing"].sha256 == sha(base)
    assert arts["disk1"].sha256 == "" and "writable" in arts["disk1"].note


def _record(guest: str, kernel: str, kernel_sha: str, extra: str = "") -> dict:
    arts = [provenance.Artifact("qemu", "/usr/bin/qemu-system-x86_64", "a" * 64, "QEMU emulator version 7.2.19"),
            provenance.Artifact("kernel", f"/k/{kernel}/vmlinuz", kernel_sha, f"release {kernel}; #1 SMP", extra),
            provenance.Artifact("ovmf.vars", f"/run/{guest}/VARS.fd", note="not hashed")]
    return provenance.GuestProvenance(guest, arts).to_dict()


def test_environment_one_set_and_per_guest_files_do_not_split_it():
    recs = [_record("plain-1", "6.1.187-sev-es", "b" * 64), _record("plain-2", "6.1.187-sev-es", "b" * 64)]
    assert recs[0]["set"] == recs[1]["set"]  # their VARS stores differ: not part of the set
    env = ran_entries(recs)
    assert env["guest.kernel"] == f"6.1.187-sev-es (sha256 {'b' * 64}, /k/6.1.187-sev-es/vmlinuz)"
    assert env["ran.set"] == f"{recs[0]['set']} (guests 2: plain-1, plain-2)"
    assert env["ran.kernel"].startswith("b" * 64 + " /k/6.1.187-sev-es/vmlinuz (release 6.1.187-sev-es")
    assert "ran.ovmf.vars" not in env


def test_environment_lists_each_distinct_set():
    recs = [_record("plain", "6.1.0-57-cloud-amd64", "c" * 64), _record("sev-es", "6.1.187-sev-es", "b" * 64)]
    a, b = recs[0]["set"], recs[1]["set"]
    env = ran_entries(recs)
    assert a != b and env["ran.sets"] == f"2 distinct sets: {a}, {b}"
    assert env[f"ran.{a}.guests"] == "1: plain" and env[f"ran.{b}.guests"] == "1: sev-es"
    assert env[f"ran.{b}.kernel"].startswith("b" * 64)
    assert env["guest.kernel"].split("; ")[1].startswith("6.1.187-sev-es (sha256 " + "b" * 64)
    assert set_id([]) == set_id(())


# -- a real session: --components, run_config, the renderer, attachments, xdist ----------

CONFTEST = r'''
import json
from pathlib import Path
import pytest
from pytest_sev.build.manifest import Manifest, record_used
from pytest_sev.cache import file_digest

BUILT = Path({built!r})

def pytest_configure(config):
    # what the build engine records for a built kernel (python -m pytest_sev build kernel)
    record_used(Manifest(component="kernel", source="file:///src/linux", ref="debian/6.1.187-1",
                         commit="87af18c17ad044fb490fac504460d6dd8410774b", version="6.1.187-sev-es",
                         artifacts={{"vmlinuz": {{"path": str(BUILT), "sha256": file_digest(BUILT)}}}},
                         recipe_version=3, key="7006db1ebc4a" * 5))
'''

TESTS = r'''
from pathlib import Path
from pytest_sev.guest.specs import plain_spec
from pytest_sev.qemu.argv import build_argv
from pytest_sev.reporting.guest_attach import attach_guest

class FakeGuest:
    """What attach_guest reads of a Guest; the argv is the real renderer's."""
    def __init__(self, spec, qemu, tmp):
        self.spec = spec
        self.argv = build_argv(spec, qemu=qemu, accel="tcg", qemu_version=(7, 2), serial_fd=3, qmp_fd=4,
                               vars_path=tmp / "OVMF_VARS.fd")
        self.logs = {{"console log": tmp / "c", "qemu stderr": tmp / "e", "qmp transcript": tmp / "q"}}
        self.console = None

def test_plain_guest_on_the_components_kernel(run_config, tmp_path):
    spec = plain_spec(run_config, name="plain-built")
    assert spec.kernel == Path({built!r})  # --components reached the spec
    attach_guest(FakeGuest(spec, {qemu!r}, tmp_path), None)

def test_second_guest_on_another_kernel(run_config, tmp_path):
    spec = plain_spec(run_config, name="other-kernel").with_(kernel=Path({other!r}))
    attach_guest(FakeGuest(spec, {qemu!r}, tmp_path), None)
'''


def _properties(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        out[key.replace("\\", "")] = value.replace("\\", "")
    return out


def _attachments(out: Path) -> dict[str, dict[str, str]]:
    """test name -> attachment name -> text."""
    got: dict[str, dict[str, str]] = {}
    for res in out.glob("*-result.json"):
        data = json.loads(res.read_text())
        got[data["name"]] = {a["name"]: (out / a["source"]).read_text() for a in data.get("attachments", [])}
    return got


@pytest.mark.parametrize("workers", ["0", "2"])
def test_session_environment_names_what_ran(pytester, tmp_path, workers):
    if workers != "0":
        pytest.importorskip("xdist")
    built = fake_bzimage(tmp_path / "cache" / "builds" / "7006db1e" / "kernel" / "vmlinuz", BUILT, b"built")
    other = fake_bzimage(tmp_path / "distro" / "vmlinuz", DISTRO, b"distro")
    qemu = fake_qemu(tmp_path / "bin" / "qemu-system-x86_64")
    pytester.makeconftest(CONFTEST.format(built=str(built)))
    pytester.makepyfile(test_guests=TESTS.format(built=str(built), other=str(other), qemu=str(qemu)))
    out = tmp_path / "allure"
    res = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sev-mode=off", "-n", workers,
                                        "--alluredir", str(out), f"--components=kernel=prefix:{built}")
    res.assert_outcomes(passed=2)
    env = _properties(out / "environment.properties")
    assert not (out / ".sev-provenance").exists()  # the workers' records were merged and removed
    kernels = env["guest.kernel"].split("; ")
    assert sorted(k.split()[0] for k in kernels) == ["6.1.0-57-cloud-amd64", "6.1.187-sev-es"]
    assert f"6.1.187-sev-es (sha256 {sha(built)}, {built})" in kernels
    sets = env["ran.sets"].removeprefix("2 distinct sets: ").split(", ")
    by_guest = {env[f"ran.{s}.guests"]: s for s in sets}
    built_set = by_guest["1: plain-built"]
    assert env[f"ran.{built_set}.kernel"].startswith(f"{sha(built)} {built} (release 6.1.187-sev-es;")
    assert "built kernel 6.1.187-sev-es from file:///src/linux debian/6.1.187-1 commit 87af18c17ad0" in \
        env[f"ran.{built_set}.kernel"]
    assert env[f"ran.{built_set}.qemu"].startswith(f"{sha(qemu)} {qemu} (QEMU emulator version 7.2.19 (fake))")
    assert env[f"ran.{built_set}.initrd"].split()[0] == env[f"ran.{by_guest['1: other-kernel']}.initrd"].split()[0]
    # each guest's own attachment names its own kernel and set
    att = _attachments(out)
    mine = att["test_plain_guest_on_the_components_kernel"]["plain-built: provenance"]
    theirs = att["test_second_guest_on_another_kernel"]["other-kernel: provenance"]
    assert f"artifact set {built_set}" in mine and sha(built) in mine and "release 6.1.187-sev-es" in mine
    assert sha(other) in theirs and sha(built) not in theirs and "release 6.1.0-57-cloud-amd64" in theirs
