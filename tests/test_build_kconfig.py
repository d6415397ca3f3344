"""AMD's SEV-ES config edits on the real distro kernel config.

The provisioned guest kernel's ``config`` (Debian's cloud kernel) is edited
with the kernel's own ``scripts/config`` when a kernel tree is at hand (the
repo scripts/local-sources.sh makes), and the result is compared with the
pure-Python edit; without a tree the Python result is checked as text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_sev.build.errors import SourcesError
from pytest_sev.build.kconfig import (
    KERNEL_EDITS,
    SEV_ES_EDITS,
    SNP_GUEST_EDITS,
    apply_edits_text,
    expected_value,
    missing_required,
    resolve_base,
    scripts_config_args,
    unhonoured,
)
from pytest_sev.build.sources import default_src_root
from pytest_sev.images.provision import provisioned_kernel
from pytest_sev.kconfig import parse_config


@pytest.fixture(scope="module")
def distro_config() -> str:
    kernel = provisioned_kernel()
    cfg = kernel.vmlinuz.parent / "config" if kernel else None
    if cfg is None or not cfg.is_file():
        pytest.skip("no provisioned distro kernel config (python -m pytest_sev provision)")
    return cfg.read_text()


def _scripts_config() -> Path | None:
    tool = default_src_root() / "linux" / "scripts" / "config"
    return tool if tool.is_file() else None


def test_scripts_config_argv_is_amd_list():
    args = scripts_config_args()
    assert args[:3] == ["--set-str", "LOCALVERSION", "-sev-es"]
    assert args[args.index("KVM_AMD") - 1:args.index("KVM_AMD") + 1] == ["--module", "KVM_AMD"]
    for sym in ("LOCALVERSION_AUTO", "HW_RANDOM_VIRTIO", "CRYPTO_DEV_VIRTIO"):
        assert args[args.index(sym) - 1] == "--disable"
    for sym in ("AMD_MEM_ENCRYPT", "AMD_MEM_ENCRYPT_ACTIVE_BY_DEFAULT", "CRYPTO_DEV_CCP",
                "CRYPTO_DEV_SP_CCP", "KVM_AMD_SEV", "X86_CPUID", "DEBUG_INFO_REDUCED"):
        assert args[args.index(sym) - 1] == "--enable"


def test_python_edits_on_distro_config(distro_config):
    before = parse_config(distro_config)
    assert before["KVM_AMD"] == "m" and before["HW_RANDOM_VIRTIO"] == "m"  # Debian's choices
    after = parse_config(apply_edits_text(distro_config))
    for op, sym, value in SEV_ES_EDITS:
        assert after[sym] == expected_value(op, value), sym
    for op, sym, value in SNP_GUEST_EDITS:
        assert after[sym] == expected_value(op, value), sym
    # untouched symbols stay as they were
    assert {k: v for k, v in after.items() if k not in {s for _, s, _ in KERNEL_EDITS}} == \
        {k: v for k, v in before.items() if k not in {s for _, s, _ in KERNEL_EDITS}}
    assert unhonoured(apply_edits_text(distro_config)) == []
    assert missing_required(distro_config) == []  # Debian's cloud kernel has AMD_MEM_ENCRYPT=y


def test_kernel_scripts_config_agrees(distro_config, tmp_path):
    tool = _scripts_config()
    if tool is None:
        pytest.skip("no kernel tree (scripts/local-sources.sh linux makes one)")
    cfg = tmp_path / ".config"
    cfg.write_text(distro_config)
    subprocess.run(["bash", str(tool), "--file", str(cfg), *scripts_config_args()], check=True)
    real = parse_config(cfg.read_text())
    ours = parse_config(apply_edits_text(distro_config))
    assert real == ours
    for op, sym, value in SEV_ES_EDITS:  # and the kernel tool reads back what was asked
        got = subprocess.run(["bash", str(tool), "--file", str(cfg), "--state", sym],
                             capture_output=True, text=True, check=True).stdout.strip()
        want = {"y": "y", "n": "n", "m": "m"}.get(expected_value(op, value), value)
        assert got in (want, "undef" if want == "n" else want), sym


def test_unhonoured_and_required():
    text = "CONFIG_LOCALVERSION=\"-sev-es\"\n# CONFIG_AMD_MEM_ENCRYPT is not set\n"
    assert missing_required(text) == ["CONFIG_AMD_MEM_ENCRYPT=y"]
    notes = unhonoured(text)
    assert "KVM_AMD=m (have n)" in notes and not any(n.startswith("LOCALVERSION=") for n in notes)


def test_resolve_base(tmp_path):
    assert resolve_base("make:tinyconfig").make_target == "tinyconfig"
    with pytest.raises(SourcesError, match="not a kernel config target"):
        resolve_base("make:clean; rm -rf /")
    with pytest.raises(SourcesError, match="no such file"):
        resolve_base(str(tmp_path / "nope"))
    f = tmp_path / "base.config"
    f.write_text("CONFIG_X=y\n")
    assert resolve_base(str(f)).file == f


def test_auto_base_falls_back_to_provisioned(distro_config):
    base = resolve_base("auto")
    assert base.file is not None and base.file.read_text() in (distro_config, base.file.read_text())
    if not Path(f"/boot/config-{__import__('os').uname().release}").exists():
        assert base.file.parent.parent.name == "kernels"


def test_fragments_in_checkout_hold_what_the_default_guest_needs():
    frags = Path(__file__).parents[1] / "fixtures" / "kernel"
    cfg = {}
    for f in ("kvm-guest.config", "sev-es-guest.config"):
        cfg.update(parse_config((frags / f).read_text()))
    # the busybox initramfs carries modules for the distro kernel only: built in
    for sym in ("VIRTIO_PCI", "VIRTIO_BLK", "SCSI_VIRTIO", "BLK_DEV_SD", "SERIAL_8250_CONSOLE",
                "BLK_DEV_INITRD", "DEVTMPFS", "X86_MSR", "X86_CPUID", "AMD_MEM_ENCRYPT",
                "EFI_STUB", "DEBUG_FS"):
        assert cfg.get(sym) == "y", sym
    assert shutil.which("bash")


def test_nondeterministic_config_notes():
    from pytest_sev.build.kconfig import nondeterministic_config
    signed = 'CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_KEY="certs/signing_key.pem"\nCONFIG_RANDSTRUCT_FULL=y\n'
    notes = nondeterministic_config(signed)
    assert [n.split(" (")[0] for n in notes] == ["not reproducible: CONFIG_MODULE_SIG_KEY",
                                               "not reproducible: CONFIG_RANDSTRUCT_FULL"]
    # the default key path without signing, or a pinned key: nothing to say
    assert nondeterministic_config('CONFIG_MODULE_SIG_KEY="certs/signing_key.pem"\n') == []
    assert nondeterministic_config('CONFIG_MODULE_SIG=y\nCONFIG_MODULE_SIG_KEY="/keys/k.pem"\n') == []


def test_recipe_edits_give_the_snp_guest_its_report_path():
    """SEV_GUEST and configfs-tsm (TSM_REPORTS, CONFIGFS_FS) built in, after AMD's SEV-ES edits."""
    args = scripts_config_args()
    assert args[:len(scripts_config_args(SEV_ES_EDITS))] == scripts_config_args(SEV_ES_EDITS)
    for sym in ("VIRT_DRIVERS", "CONFIGFS_FS", "SEV_GUEST", "TSM_REPORTS"):
        assert args[args.index(sym) - 1] == "--enable", sym
    missing = unhonoured("CONFIG_SEV_GUEST=m\n")
    assert "SEV_GUEST=y (have m)" in missing and "TSM_REPORTS=y (have n)" in missing


def test_snp_report_notes():
    from pytest_sev.build.kconfig import snp_report_notes
    assert snp_report_notes({"SEV_GUEST": "y", "TSM_REPORTS": "y", "CONFIGFS_FS": "y"}) == []
    (note,) = snp_report_notes({"SEV_GUEST": "m", "TSM_REPORTS": "m", "CONFIGFS_FS": "m"})
    assert "CONFIG_SEV_GUEST=m" in note and "modules" in note
    (note,) = snp_report_notes({"SEV_GUEST": "y", "CONFIGFS_FS": "y"})  # a 6.1 tree: no TSM_REPORTS
    assert "CONFIG_TSM_REPORTS=n" in note and "no configfs-tsm" in note and "ioctl" in note
    (note,) = snp_report_notes({"AMD_MEM_ENCRYPT": "y"})
    assert "no sev-guest driver" in note


def test_default_guest_kernel_cannot_fetch_an_snp_report(distro_config):
    """What README says of Debian 12's cloud 6.1: no VIRT_DRIVERS, so no sev-guest and no configfs-tsm."""
    from pytest_sev.build.kconfig import snp_report_notes
    cfg = parse_config(distro_config)
    if cfg.get("TSM_REPORTS") == "y" and cfg.get("SEV_GUEST") == "y":
        pytest.skip("the provisioned kernel is not Debian 12's cloud 6.1: it can fetch a report")
    (note,) = snp_report_notes(cfg)
    assert note.startswith("no SNP report from the guest")
    after = parse_config(apply_edits_text(distro_config))  # the recipe's edits add all of them
    assert snp_report_notes(after) == []
