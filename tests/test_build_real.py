"""Real component builds from fixtures/sources/local.toml (``--run-builds``).

Each takes minutes on two cores the first time (run
scripts/local-sources.sh linux qemu edk2 first) and is a cache hit after:

- kernel: Debian's linux source, tinyconfig + guest fragments + AMD's SEV-ES
  edits, bindeb-pkg; the bzImage boots the default busybox initramfs;
- qemu: Debian's QEMU source, build.sh's configure (x86_64-softmmu); the
  binary boots the default guest (SeaBIOS, and OVMF below);
- ovmf: Debian's edk2 source, AMD's DEBUG OvmfPkgX64 build; the built QEMU
  boots the default guest with it, OVMF's debug log on the serial console;
- ovmf-amdsev: the same tree's OvmfPkg/AmdSev/AmdSevX64.dsc (about 80 s here):
  its footer table names the secret page and the kernel-hashes table, and it
  refuses a -kernel boot without QEMU's hashes, as SEV guests rely on.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from pytest_sev.build.engine import build
from pytest_sev.build.manifest import Manifest
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import default_sources_file, load_sources
from pytest_sev.kconfig import parse_config

#: the Debian source package scripts/local-sources.sh makes each repo from
_DEBIAN_PKG = {"kernel": "linux", "qemu": "qemu", "ovmf": "edk2", "ovmf-amdsev": "edk2"}


def _opts() -> BuildOptions:
    return BuildOptions(jobs=2, nice=19)


def _real_build(request, component: str) -> Manifest:
    if not request.config.getoption("sev_run_builds"):
        pytest.skip("real builds run with --run-builds")
    src = load_sources(default_sources_file())[component]
    from pytest_sev.build.fetch import local_path
    path = local_path(src.url)
    if path is not None and not (path / ".git").exists():
        pytest.skip(f"{path} missing: run scripts/local-sources.sh {_DEBIAN_PKG[component]}")
    return build(src, _opts())


def _assert_cache_hit(m: Manifest) -> None:
    start = time.monotonic()
    again = build(load_sources(default_sources_file())[m.component], _opts())
    assert again.entry == m.entry and time.monotonic() - start < 1.0


@pytest.fixture(scope="module")
def kernel_manifest(request):
    return _real_build(request, "kernel")


@pytest.fixture(scope="module")
def qemu_manifest(request):
    return _real_build(request, "qemu")


@pytest.fixture(scope="module")
def ovmf_manifest(request):
    return _real_build(request, "ovmf")


@pytest.fixture(scope="module")
def amdsev_manifest(request):
    return _real_build(request, "ovmf-amdsev")


def _default_initrd():
    from pytest_sev.images.default_kernel import default_kernel
    from pytest_sev.images.initramfs import build_initramfs
    return build_initramfs(default_kernel(), with_fio=False).path


def test_kernel_build_artifacts(kernel_manifest):
    m = kernel_manifest
    assert m.version.endswith("-sev-es")
    cfg = parse_config(m.artifact("config").read_text())
    assert cfg["AMD_MEM_ENCRYPT"] == "y" and cfg["VIRTIO_BLK"] == "y" and cfg["LOCALVERSION"] == '"-sev-es"'
    assert any(n.endswith(".deb") for n in m.artifacts)  # bindeb-pkg on this Debian host
    # the guest owner's launch secret (fixtures/kernel/efi-secret.config) survived olddefconfig
    assert cfg["EFI_SECRET"] == "y" and cfg["EFI_COCO_SECRET"] == "y" and cfg["SECURITYFS"] == "y"
    assert not any("launch secret" in n for n in m.notes)
    _assert_cache_hit(m)


@pytest.mark.qemu
@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_built_kernel_boots_default_initramfs(kernel_manifest, firmware, tmp_path):
    from pytest_sev.guest.guest import Guest
    from pytest_sev.guest.specs import default_guest_spec
    spec = default_guest_spec(firmware=firmware, kernel=kernel_manifest.artifact("vmlinuz"),
                              initrd=_default_initrd(), name=f"built-{firmware}")
    with Guest(spec, workdir=tmp_path / "g") as guest:
        out, status = guest.run("uname -r; ls /sys/bus/virtio/drivers")
        assert status == 0
        assert out.splitlines()[0] == kernel_manifest.version
        assert "virtio_blk" in out


def test_qemu_build_artifacts(qemu_manifest):
    import subprocess
    m = qemu_manifest
    binary = m.artifact("qemu-system-x86_64")
    assert m.version.startswith("QEMU emulator version"), m.version
    assert binary.is_relative_to(m.entry)  # runs from the cache entry (relocatable)
    out = subprocess.run([str(binary), "-object", "help"], capture_output=True, text=True,
                         timeout=60).stdout
    assert "sev-guest" in out
    _assert_cache_hit(m)


def test_ovmf_build_artifacts(ovmf_manifest):
    m = ovmf_manifest
    assert m.artifact("OVMF_CODE.fd").stat().st_size >= 1 << 20
    assert m.artifact("OVMF_VARS.fd").stat().st_size > 0
    assert [s for s, _ in m.steps][-2:] == ["make BaseTools", "edk2 build"]
    _assert_cache_hit(m)


@pytest.mark.qemu
def test_built_qemu_boots_default_guest_seabios(qemu_manifest, tmp_path):
    """The built QEMU finds its firmware (bios-256k.bin, linuxboot_dma.bin)."""
    from pytest_sev.guest.guest import Guest
    from pytest_sev.guest.specs import default_guest_spec
    spec = default_guest_spec(name="built-qemu-seabios")
    with Guest(spec, qemu=str(qemu_manifest.artifact("qemu-system-x86_64")),
               workdir=tmp_path / "g") as guest:
        out, status = guest.run("echo built-qemu-ok")
        assert status == 0 and "built-qemu-ok" in out


@pytest.mark.qemu
def test_built_qemu_boots_default_guest_with_built_ovmf(qemu_manifest, ovmf_manifest, tmp_path):
    from pytest_sev.guest.guest import Guest
    from pytest_sev.guest.specs import default_guest_spec
    from pytest_sev.model.spec import Firmware
    fw = Firmware(kind="ovmf", code=ovmf_manifest.artifact("OVMF_CODE.fd"),
                  vars_template=ovmf_manifest.artifact("OVMF_VARS.fd"))
    spec = default_guest_spec(firmware="ovmf", ovmf=fw, name="built-qemu-ovmf")
    with Guest(spec, qemu=str(qemu_manifest.artifact("qemu-system-x86_64")),
               workdir=tmp_path / "g") as guest:
        out, status = guest.run("echo built-ovmf-ok")
        assert status == 0 and "built-ovmf-ok" in out
        log = guest.logs["console log"]
    console = log.read_text(errors="replace")
    # AMD's recipe is a DEBUG build with DEBUG_ON_SERIAL_PORT: OVMF's own log
    # precedes the kernel's on the console (the distro OVMF prints none)
    assert "SecCoreStartupWithStack" in console or "Loading driver" in console


def test_amdsev_build_artifacts(amdsev_manifest):
    from pytest_sev.attest.measure import ovmf_facts
    from pytest_sev.config import check_amdsev
    m = amdsev_manifest
    fd = m.artifact("OVMF.amdsev.fd")
    facts = ovmf_facts(str(fd))
    assert facts.size == 4 << 20 and facts.secret_area is not None and facts.kernel_hashes
    assert facts.sev_es_reset_eip is not None
    check_amdsev(fd)  # what --ovmf-amdsev accepts
    assert [s for s, _ in m.steps][-2:] == ["make BaseTools", "edk2 build (AmdSev)"]
    _assert_cache_hit(m)


@pytest.mark.parametrize("mode,ssm_mode", [("sev", "sev"), ("sev-es", "seves")])
def test_amdsev_measure_with_kernel_hashes_matches_sev_snp_measure(amdsev_manifest, mode, ssm_mode):
    """The built AmdSev OVMF with the default guest's kernel, initrd and command
    line (what kernel-hashes=on puts into the measurement): ``measure`` prints
    what the sev-snp-measure command line prints for the same inputs."""
    import os
    import subprocess
    import sys

    from pytest_sev.images.default_kernel import BASE_APPEND, default_kernel
    fd = str(amdsev_manifest.artifact("OVMF.amdsev.fd"))
    kernel, initrd = str(default_kernel().vmlinuz), str(_default_initrd())
    common = ["--vcpus", "2", "--vcpu-type", "EPYC-v4", "--ovmf", fd, "--kernel", kernel, "--initrd", initrd,
              "--append", BASE_APPEND]
    ours = subprocess.run([sys.executable, "-m", "pytest_sev", "measure", "--mode", mode, *common],
                          check=True, capture_output=True, text=True).stdout.split()[-1]
    ssm = shutil.which("sev-snp-measure", path=os.path.dirname(sys.executable)) or "sev-snp-measure"
    theirs = subprocess.run([ssm, "--mode", ssm_mode, *common], check=True, capture_output=True,
                            text=True).stdout.split()[-1]
    assert len(bytes.fromhex(ours)) == 32 and ours == theirs, (ours, theirs)


@pytest.mark.qemu
def test_amdsev_refuses_kernel_without_hashes(amdsev_manifest, tmp_path):
    """A plain guest gets no kernel-hashes table from QEMU (it writes one for SEV
    guests only), so the AmdSev OVMF must refuse its -kernel; the console then
    carries the line the ``kernel-hashes-no-table`` signature names."""
    from pytest_sev.errors import GuestError
    from pytest_sev.guest.guest import Guest
    from pytest_sev.guest.specs import default_guest_spec
    from pytest_sev.model.spec import Firmware
    from pytest_sev.sev.signatures import diagnose
    fw = Firmware("amdsev", code=amdsev_manifest.artifact("OVMF.amdsev.fd"))
    spec = default_guest_spec(firmware="ovmf", ovmf=fw, name="amdsev-no-hashes", boot_timeout=90)
    guest = Guest(spec, workdir=tmp_path / "g")
    with pytest.raises(GuestError), guest:
        pass
    console = guest.logs["console log"].read_text(errors="replace")
    assert "Linux version" not in console
    assert [m.signature.code for m in diagnose({"console": console})] == ["kernel-hashes-no-table"]


def test_kernel_build_reproduces_in_another_cache_dir(request, tmp_path):
    """The same commit, recipe and inputs, built again in another cache
    directory (another work path, no shared entry): a bit-identical vmlinuz.

    The second build runs in a subprocess with ``PYTEST_SEV_CACHE`` pointing
    elsewhere (``PYTEST_SEV_SRC`` kept, so the source URL and the key are the
    same).  ``PYTEST_SEV_REPRO_CACHE`` names a second cache that already
    holds the build (a manual second run), to skip the ~10 minutes."""
    import json
    import os
    import subprocess
    import sys

    from pytest_sev.build.reproducible import path_dependent
    from pytest_sev.build.sources import default_src_root
    first = _real_build(request, "kernel")
    other = Path(os.environ.get("PYTEST_SEV_REPRO_CACHE") or tmp_path / "cache2")
    assert other.resolve() != Path(first.entry).parents[1].resolve()
    env = {**os.environ, "PYTEST_SEV_CACHE": str(other), "PYTEST_SEV_SRC": str(default_src_root())}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest_sev", "build", "kernel", "--no-install", "--nice", "19",
                           "-j2"], env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    entry = next(p for p in (other / "builds").iterdir() if (p / "manifest.json").is_file()
                 and json.loads((p / "manifest.json").read_text())["key"] == first.key)
    second = json.loads((entry / "manifest.json").read_text())
    print(f"second build: {time.monotonic() - start:.0f} s (manifest: {second['build_seconds']} s), "
          f"first: {first.build_seconds} s")
    assert second["build_dir"] != first.build_dir  # really another path
    assert second["artifacts"]["vmlinuz"]["sha256"] == first.artifacts["vmlinuz"]["sha256"]
    differ = {n for n, rec in first.artifacts.items()
              if second["artifacts"].get(n, {}).get("sha256") != rec["sha256"]}
    for name in sorted(first.artifacts):
        print(f"{'DIFFERS' if name in differ else 'same'}  {first.artifacts[name]['sha256']}  {name}")
    # only what the kernel's packaging ties to the build path (reproducible.PATH_DEPENDENT)
    assert all(path_dependent(n) for n in differ), f"artifacts that differ: {sorted(differ)}"
