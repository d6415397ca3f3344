"""Real component builds from fixtures/sources/local.toml (``--run-builds``).

The kernel build (Debian's linux source, tinyconfig + guest fragments + AMD's
SEV-ES edits, bindeb-pkg) takes minutes on two cores the first time and is a
cache hit after; the built bzImage then boots the default busybox initramfs.
"""

from __future__ import annotations

import time

import pytest

from pytest_sev.build.engine import build
from pytest_sev.build.kconfig import parse_config
from pytest_sev.build.recipes import BuildOptions
from pytest_sev.build.sources import default_sources_file, load_sources


@pytest.fixture(scope="module")
def kernel_manifest(request):
    if not request.config.getoption("sev_run_builds"):
        pytest.skip("real builds run with --run-builds")
    src = load_sources(default_sources_file())["kernel"]
    from pytest_sev.build.fetch import local_path
    path = local_path(src.url)
    if path is not None and not (path / ".git").exists():
        pytest.skip(f"{path} missing: run scripts/local-sources.sh linux")
    return build(src, BuildOptions(jobs=2, nice=19))


def test_kernel_build_artifacts(kernel_manifest):
    m = kernel_manifest
    assert m.version.endswith("-sev-es")
    cfg = parse_config(m.artifact("config").read_text())
    assert cfg["AMD_MEM_ENCRYPT"] == "y" and cfg["VIRTIO_BLK"] == "y" and cfg["LOCALVERSION"] == '"-sev-es"'
    assert any(n.endswith(".deb") for n in m.artifacts)  # bindeb-pkg on this Debian host
    start = time.monotonic()
    again = build(load_sources(default_sources_file())["kernel"], BuildOptions(jobs=2, nice=19))
    assert again.entry == m.entry and time.monotonic() - start < 1.0


@pytest.mark.qemu
@pytest.mark.parametrize("firmware", ["seabios", "ovmf"])
def test_built_kernel_boots_default_initramfs(kernel_manifest, firmware, tmp_path):
    from pytest_sev.default_guest import default_guest_spec, default_kernel
    from pytest_sev.guest import Guest
    from pytest_sev.initramfs import build_initramfs
    initrd = build_initramfs(default_kernel(), with_fio=False).path
    spec = default_guest_spec(firmware=firmware, kernel=kernel_manifest.artifact("vmlinuz"),
                              initrd=initrd, name=f"built-{firmware}")
    with Guest(spec, workdir=tmp_path / "g") as guest:
        out, status = guest.run("uname -r; ls /sys/bus/virtio/drivers")
        assert status == 0
        assert out.splitlines()[0] == kernel_manifest.version
        assert "virtio_blk" in out
