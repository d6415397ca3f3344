"""The libvirt launcher without a daemon: domain XML from specs (and libvirt's
own schema on it), launch-qemu.sh parity of the SEV settings, the QMP
passthrough's errors, the virt-host-validate parser and the --launcher option.

SEV-SNP domains are validated against the RelaxNG schema of Debian
bookworm-backports' libvirt (11.3, package ``libvirt-common``: bookworm's 9.0
has no ``sev-snp``), downloaded and unpacked into the harness cache with the
same private apt configuration that fetches the SNP QEMU
(:func:`pytest_sev.images.qemu_snp.download_backports`); the host's 9.0 schema
must reject the same XML, which is why :func:`check_snp_libvirt` exists."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_sev.cache import ContentCache, cache_root, file_digest, make_key
from pytest_sev.config import RunConfig, build_config
from pytest_sev.errors import ConfigError, ProvisionError, SpecError
from pytest_sev.host.checks_tools import virsh_check
from pytest_sev.host.evidence import Evidence
from pytest_sev.host.parse_tools import parse_virt_host_validate, sev_validate_reason
from pytest_sev.images.qemu_snp import download_backports
from pytest_sev.libvirt import connection, parity
from pytest_sev.libvirt.domain_xml import (
    SNP_SINCE,
    DomainOptions,
    check_snp_libvirt,
    domain_name,
    domain_xml,
    version_text,
)
from pytest_sev.libvirt.guest import LibvirtGuest, LibvirtQmp, serial_pty
from pytest_sev.model.spec import Disk, Firmware, GuestSpec, SevLaunch, SnpLaunch
from pytest_sev.qemu.argv import launch_argv
from pytest_sev.qemu.qmp import ExecuteError
from pytest_sev.sev.policy import policy_for

OVMF = Firmware("ovmf", Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_VARS_4M.fd"))


@pytest.fixture
def kernel(tmp_path):
    k = tmp_path / "vmlinuz"
    k.write_bytes(b"k")
    i = tmp_path / "initrd"
    i.write_bytes(b"i")
    return k, i


def _spec(kernel, mode: str | None, **fields) -> GuestSpec:
    k, i = kernel
    sev = SevLaunch(mode, policy_for(mode), cbitpos=51) if mode else None  # type: ignore[arg-type]
    fields.setdefault("firmware", OVMF if mode or fields.get("disks") else Firmware())
    return GuestSpec(name=f"t-{mode or 'plain'}", kernel=k, initrd=i, append="console=ttyS0", sev=sev,
                     memory_mib=512, **fields)


def _xml(spec: GuestSpec, **opts) -> ET.Element:
    opts.setdefault("name", domain_name(spec, "abc"))
    return ET.fromstring(domain_xml(spec, DomainOptions(**opts)))


def test_plain_domain(kernel):
    d = _xml(_spec(kernel, None), owner_pid=4242)
    assert d.get("type") == "qemu"
    assert d.findtext("name") == "pytest-sev-t-plain-abc"
    assert d.find("os/type").get("machine") == "q35"
    assert d.find("os/loader") is None  # SeaBIOS
    assert d.findtext("os/cmdline") == "console=ttyS0"
    assert d.find("launchSecurity") is None and d.find("memoryBacking") is None
    assert d.findtext("on_reboot") == "destroy" and d.findtext("on_crash") == "destroy"
    assert d.find("devices/serial").get("type") == "pty"
    assert d.find("devices/memballoon").get("model") == "none"
    assert d.find("cpu").get("mode") == "maximum"  # QEMU's -cpu max under TCG
    assert _xml(_spec(kernel, None), domain_type="kvm").find("cpu").get("mode") == "host-passthrough"
    assert connection.owner_pid(domain_xml(_spec(kernel, None), DomainOptions("x", owner_pid=4242))) == 4242


@pytest.mark.parametrize(("mode", "policy"), [("sev", "0x0001"), ("sev-es", "0x0005")])
def test_sev_domains(kernel, mode, policy, tmp_path):
    disk = tmp_path / "d.img"
    d = _xml(_spec(kernel, mode, disks=(Disk(disk),)), nvram=tmp_path / "VARS.fd", kernel_hashes=True)
    ls = d.find("launchSecurity")
    assert ls.get("type") == "sev" and ls.get("kernelHashes") == "yes"
    assert (ls.findtext("policy"), ls.findtext("cbitpos"), ls.findtext("reducedPhysBits")) == (policy, "51", "1")
    assert d.find("memoryBacking/locked") is not None
    assert d.find("os/loader").get("type") == "pflash" and d.find("os/loader").get("readonly") == "yes"
    assert d.findtext("os/nvram") == str(tmp_path / "VARS.fd")
    assert d.find("os/nvram").get("template").endswith("OVMF_VARS_4M.fd")
    assert d.findtext("cpu/model") == "EPYC"
    vd = d.find("devices/disk")
    assert vd.find("driver").get("iommu") == "on" and vd.get("model") == "virtio-non-transitional"
    assert d.find("features/vmport").get("state") == "off"
    # libvirt < 8.0 has no kernelHashes: None leaves the attribute out
    assert _xml(_spec(kernel, mode)).find("launchSecurity").get("kernelHashes") is None


def test_disks(kernel, tmp_path):
    disks = (Disk(tmp_path / "a", iommu_platform=True, disable_legacy=True, throttle_bps=1 << 24),
             Disk(tmp_path / "b", bus="virtio-scsi", num_queues=4, snapshot=True, readonly=True),
             Disk(tmp_path / "c", bus="ide", format="qcow2"))
    d = _xml(_spec(kernel, None, disks=disks))
    a, b, c = d.findall("devices/disk")
    assert a.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert a.find("driver").get("iommu") == "on" and a.findtext("iotune/total_bytes_sec") == str(1 << 24)
    assert b.find("target").get("bus") == "scsi" and b.find("transient") is not None and b.find("readonly") is not None
    ctrl = d.find("devices/controller[@type='scsi']")
    assert ctrl.get("model") == "virtio-scsi" and ctrl.find("driver").get("queues") == "4"
    assert ctrl.find("driver").get("iommu") is None  # a plain guest without iommu_platform
    assert c.find("target").get("bus") == "sata" and c.find("driver").get("type") == "qcow2"


def test_extra_args_pass_through(kernel):
    d = _xml(_spec(kernel, None, extra_args=("-global", "x.y=1")))
    args = [a.get("value") for a in d.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert args == ["-global", "x.y=1"]


def test_attested_launch_puts_the_owners_session_in_launch_security(kernel, tmp_path):
    """The owner's LAUNCH_START files, as libvirt takes them: <dhCert> and <session>
    (base64, the same text QEMU reads from dh-cert-file/session-file)."""
    spec = _spec(kernel, "sev-es")
    d = _xml(spec)
    assert d.find("launchSecurity/dhCert") is None  # not an attested launch
    text = domain_xml(spec, DomainOptions(domain_name(spec, "a"), nvram=tmp_path / "V.fd", owner_pid=1,
                                          dh_cert="Z29kaA==\n", session="c2Vzc2lvbg==\n"))
    ls = ET.fromstring(text).find("launchSecurity")
    assert ls is not None
    assert [(c.tag, c.text) for c in ls][-2:] == [("dhCert", "Z29kaA=="), ("session", "c2Vzc2lvbg==")]
    if shutil.which("virt-xml-validate") and shutil.which("xmllint"):
        path = tmp_path / "domain.xml"
        path.write_text(text)
        res = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None or shutil.which("xmllint") is None,
                    reason="virt-xml-validate (libvirt-clients) and xmllint (libxml2-utils) not installed")
@pytest.mark.parametrize("mode", [None, "sev", "sev-es"])
def test_domain_xml_is_valid_against_libvirts_schema(kernel, mode, tmp_path):
    spec = _spec(kernel, mode, disks=(Disk(tmp_path / "d.img"), Disk(tmp_path / "e.img", bus="virtio-scsi")),
                 extra_args=("-no-user-config",))
    path = tmp_path / "domain.xml"
    path.write_text(domain_xml(spec, DomainOptions(domain_name(spec, "v"), nvram=tmp_path / "V.fd",
                                                   kernel_hashes=mode is not None, owner_pid=1)))
    res = subprocess.run(["virt-xml-validate", str(path), "domain"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("mode", ["sev", "sev-es"])
def test_launch_security_matches_launch_qemu_sh(kernel, mode, tmp_path):
    """The XML says what launch-qemu.sh's -object sev-guest says, number for number."""
    spec = _spec(kernel, mode)
    ls = _xml(spec).find("launchSecurity")
    script = parity.facts(launch_argv(spec, qemu="qemu-system-x86_64", accel="kvm", qemu_version=(7, 2)))
    assert script["sev"] == {"policy": int(ls.findtext("policy"), 16), "cbitpos": int(ls.findtext("cbitpos")),
                             "reduced-phys-bits": int(ls.findtext("reducedPhysBits"))}
    assert script["sev_machine"]


def test_parity_facts_read_libvirts_spelling():
    libvirt_argv = [
        "/usr/bin/qemu-system-x86_64", "-machine", "pc-q35-7.2,usb=off,confidential-guest-support=lsec0",
        "-m", "size=524288k", "-smp", "2,sockets=2,cores=1,threads=1", "-kernel", "/k", "-initrd", "/i",
        "-append", "console=ttyS0",
        "-object", '{"qom-type":"sev-guest","id":"lsec0","cbitpos":51,"reduced-phys-bits":1,"policy":5}',
        "-device", '{"driver":"virtio-blk-pci","iommu_platform":true,"bus":"pci.1","drive":"libvirt-1-format","id":"virtio-disk0"}']
    script = ["qemu-system-x86_64", "-enable-kvm", "-cpu", "EPYC", "-machine", "q35", "-smp", "2,maxcpus=64",
              "-m", "512M,slots=5,maxmem=30G", "-no-reboot",
              "-drive", "file=/d,if=none,id=disk0,format=raw",
              "-device", "virtio-blk-pci,drive=disk0,disable-legacy=on,iommu_platform=true",
              "-object", "sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1",
              "-machine", "confidential-guest-support=sev0,vmport=off",
              "-kernel", "/k", "-append", "console=ttyS0", "-initrd", "/i", "-nographic"]
    diffs = parity.compare(libvirt_argv, script)
    assert diffs == ["virtio: libvirt [('virtio-blk', 'on', 'off')], launch-qemu.sh [('virtio-blk', 'on', 'on')]"]


def test_serial_pty_from_live_xml():
    live = ("<domain><devices><serial type='pty'><source path='/dev/pts/7'/><target port='0'/></serial>"
            "<console type='pty' tty='/dev/pts/7'/></devices></domain>")
    assert serial_pty(live) == "/dev/pts/7"
    assert serial_pty("<domain><devices/></domain>") is None


class _FakeGuest:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.sent: list[str] = []

    def monitor_command(self, text: str) -> str:
        self.sent.append(text)
        return self.reply


def test_qmp_passthrough_returns_and_raises_like_qemu_qmp(tmp_path):
    ok = _FakeGuest('{"return":{"status":"running"},"id":"libvirt-9"}')
    qmp = LibvirtQmp(ok, tmp_path / "qmp.jsonl", "g")  # type: ignore[arg-type]
    assert qmp.execute("query-status") == {"status": "running"}
    bad = _FakeGuest('{"id":"libvirt-10","error":{"class":"GenericError","desc":"SEV feature is not available"}}')
    qmp = LibvirtQmp(bad, tmp_path / "qmp.jsonl", "g")  # type: ignore[arg-type]
    with pytest.raises(ExecuteError) as err:
        qmp.execute("query-sev-capabilities", x=1)
    assert err.value.error_class == "GenericError" and str(err.value) == "SEV feature is not available"
    assert '"arguments": {"x": 1}' in bad.sent[0]
    qmp.close()
    assert "GenericError: SEV feature is not available" in (tmp_path / "qmp.jsonl").read_text()


# virt-host-validate qemu on this TCG container (libvirt 9.0), and the SEV line
# libvirt prints on an AMD host whose kvm_amd has sev=0 (virHostValidateAMDSev).
VALIDATE_HERE = """\
  QEMU: Checking for hardware virtualization                                 : FAIL (Host not compatible with KVM; HW virtualization CPU features not found. Only emulated CPUs are available; performance will be significantly limited)
  QEMU: Checking if device /dev/vhost-net exists                             : WARN (Load the 'vhost_net' module to improve performance of virtio networking)
  QEMU: Checking if device /dev/net/tun exists                               : PASS
  QEMU: Checking for cgroup 'cpu' controller support                         : PASS
  QEMU: Checking for device assignment IOMMU support                         : WARN (Unknown if this platform has IOMMU support)
  QEMU: Checking for secure guest support                                    : WARN (Unknown if this platform has Secure Guest support)
"""
VALIDATE_SEV_OFF = """\
  QEMU: Checking for hardware virtualization                                 : PASS
  QEMU: Checking if device /dev/kvm exists                                   : PASS
  QEMU: Checking for secure guest support                                    : WARN (AMD Secure Encrypted Virtualization appears to be disabled in kernel. Add kvm_amd.sev=1 to the kernel cmdline arguments)
"""


def test_virt_host_validate_parser():
    lines = parse_virt_host_validate(VALIDATE_HERE)
    assert len(lines) == 6 and lines[2].check == "device /dev/net/tun exists" and lines[2].result == "PASS"
    assert sev_validate_reason(VALIDATE_HERE) == (
        "hardware virtualization: FAIL (Host not compatible with KVM; HW virtualization CPU features not found. "
        "Only emulated CPUs are available; performance will be significantly limited); "
        "secure guest support: WARN (Unknown if this platform has Secure Guest support)")
    assert sev_validate_reason(VALIDATE_SEV_OFF) == (
        "secure guest support: WARN (AMD Secure Encrypted Virtualization appears to be disabled in kernel. "
        "Add kvm_amd.sev=1 to the kernel cmdline arguments)")
    assert sev_validate_reason("error: failed to get the hypervisor") == ""


def test_virsh_check_says_why_libvirt_has_no_sev():
    ev = Evidence(virsh=(0, "<domainCapabilities><features><sev supported='no'/></features></domainCapabilities>"),
                  virt_host_validate=(1, VALIDATE_SEV_OFF))
    check = virsh_check(ev, None)
    assert check.status == "fail"
    assert check.value.startswith("<sev supported='no'>; virt-host-validate qemu: secure guest support: WARN (AMD")
    ev.virt_host_validate = (127, "")  # not installed: the old line
    assert virsh_check(ev, None).value == "<sev supported='no'>"
    ev.virsh = (1, "")
    assert "is libvirtd running?" in virsh_check(ev, None).value


def test_launcher_option():
    def get(**values):
        return lambda name: values.get(name)
    assert build_config(get()).launcher == "qemu"
    assert build_config(get(launcher="libvirt")).launcher == "libvirt"
    with pytest.raises(ConfigError, match="--launcher 'virsh' is not one of qemu, libvirt"):
        build_config(get(launcher="virsh"))
    assert RunConfig().launcher == "qemu"


# -- SEV-SNP ------------------------------------------------------------------------------

#: the package of bookworm-backports' libvirt (11.3) that carries /usr/share/libvirt/schemas
#: (bookworm's 9.0 ships them in libvirt0, without sev-snp)
SCHEMA_PACKAGE = "libvirt-common"
SCHEMA_DIR = Path("usr/share/libvirt/schemas")
HOST_SCHEMAS = Path("/usr/share/libvirt/schemas")
HOST_DATA = bytes(range(32))
ID_BLOCK = b"\x11" * 96
ID_AUTH = b"\x22" * 4096


def _snp_spec(kernel, tmp_path, **launch) -> GuestSpec:
    k, i = kernel
    fw = tmp_path / "OVMF.amdsev.fd"
    fw.write_bytes(b"fw")
    return GuestSpec(name="t-snp", kernel=k, initrd=i, append="console=ttyS0", memory_mib=512,
                     firmware=Firmware("amdsev", code=fw), snp=SnpLaunch(cbitpos=51, **launch),
                     disks=(Disk(tmp_path / "d.img"), Disk(tmp_path / "e.img", bus="virtio-scsi")),
                     extra_args=("-no-user-config",))


def _snp_text(spec: GuestSpec) -> str:
    return domain_xml(spec, DomainOptions(domain_name(spec, "s"), owner_pid=1))


def _pointer() -> Path:
    return cache_root() / "libvirt-schemas" / "current.json"


def backports_schemas() -> Path:
    """The schemas of bookworm-backports' libvirt, from the cache or fetched once
    (apt-get download + dpkg-deb -x, never installed). ProvisionError offline."""
    try:
        entry = Path(json.loads(_pointer().read_text())["entry"])
        if (entry / ".complete").exists():
            return entry / SCHEMA_DIR
    except (OSError, ValueError, KeyError):
        pass
    with tempfile.TemporaryDirectory(prefix="sev-libvirt-schemas-") as tmp:
        debs = download_backports(Path(tmp), [SCHEMA_PACKAGE])
        if not debs:
            raise ProvisionError(f"apt-get download {SCHEMA_PACKAGE} produced no .deb")

        def unpack(out: Path) -> None:
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True, capture_output=True, timeout=120)
            if not (out / SCHEMA_DIR / "domain.rng").is_file():
                raise ProvisionError(f"{SCHEMA_PACKAGE} has no {SCHEMA_DIR}/domain.rng")

        entry = ContentCache("libvirt-schemas").get_or_build(make_key(debs=[file_digest(d) for d in debs]), unpack)
    _pointer().write_text(json.dumps({"entry": str(entry)}))
    return entry / SCHEMA_DIR


@pytest.fixture(scope="module")
def new_schemas() -> Path:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint (libxml2-utils) not installed")
    try:
        return backports_schemas()
    except (ProvisionError, subprocess.SubprocessError) as exc:  # offline: the schema could not be had, not a pass
        pytest.skip(f"bookworm-backports' libvirt schema not available: {exc}")


def _relaxng(schemas: Path, text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "domain.xml"
    path.write_text(text)
    return subprocess.run(["xmllint", "--noout", "--relaxng", str(schemas / "domain.rng"), str(path)],
                          capture_output=True, text=True, timeout=60)


def test_snp_domain(kernel, tmp_path):
    spec = _snp_spec(kernel, tmp_path, host_data=HOST_DATA, id_block=ID_BLOCK, id_auth=ID_AUTH,
                     author_key_enabled=True, kernel_hashes=True)
    d = ET.fromstring(_snp_text(spec))
    ls = d.find("launchSecurity")
    assert ls is not None and ls.get("type") == "sev-snp"
    assert (ls.get("kernelHashes"), ls.get("authorKey"), ls.get("vcek")) == ("yes", "yes", None)
    assert (ls.findtext("cbitpos"), ls.findtext("reducedPhysBits"), ls.findtext("policy")) == ("51", "1", "0x00030000")
    assert base64.b64decode(ls.findtext("hostData")) == HOST_DATA
    assert base64.b64decode(ls.findtext("idBlock")) == ID_BLOCK
    assert base64.b64decode(ls.findtext("idAuth")) == ID_AUTH
    assert ls.find("dhCert") is None and ls.find("session") is None  # SEV's launch session has no SNP twin
    loader = d.find("os/loader")  # one -bios image, no variable store: QEMU refuses pflash for SNP
    assert (loader.get("type"), loader.get("readonly"), loader.get("stateless")) == ("rom", "yes", "yes")
    assert loader.text == str(tmp_path / "OVMF.amdsev.fd") and d.find("os/nvram") is None
    assert d.find("memoryBacking/source").get("type") == "memfd"  # the argv's memory-backend-memfd,share=true
    assert d.find("memoryBacking/access").get("mode") == "shared"
    assert d.find("memoryBacking/locked") is not None
    assert d.findtext("cpu/model") == "EPYC-v4" and d.find("features/vmport").get("state") == "off"
    vd = d.find("devices/disk")  # virtio uses the DMA API (SWIOTLB) as in an SEV guest
    assert vd.find("driver").get("iommu") == "on" and vd.get("model") == "virtio-non-transitional"
    assert d.find("devices/controller[@type='scsi']/driver").get("iommu") == "on"
    # without the optional inputs: only what was asked for
    bare = ET.fromstring(_snp_text(_snp_spec(kernel, tmp_path))).find("launchSecurity")
    assert bare.attrib == {"type": "sev-snp"}
    assert [c.tag for c in bare] == ["cbitpos", "reducedPhysBits", "policy"]


def test_snp_launch_security_matches_the_argv_renderer(kernel, tmp_path):
    """The XML says what the harness's own sev-snp-guest object says, number for number."""
    spec = _snp_spec(kernel, tmp_path, host_data=HOST_DATA, policy=0x30000 | 1 << 19)
    ls = ET.fromstring(_snp_text(spec)).find("launchSecurity")
    argv = launch_argv(spec, qemu="qemu-system-x86_64", accel="kvm", qemu_version=(9, 1))
    obj = next(a for a in argv if a.startswith("sev-snp-guest,"))
    props = dict(p.split("=", 1) for p in obj.split(",")[1:])
    assert int(props["policy"], 16) == int(ls.findtext("policy"), 16) == 0xB0000
    assert props["cbitpos"] == ls.findtext("cbitpos") and props["reduced-phys-bits"] == ls.findtext("reducedPhysBits")
    assert props["host-data"] == ls.findtext("hostData")
    assert any(a.startswith("memory-backend-memfd,") and "share=true" in a for a in argv)


def test_one_file_ovmf_is_a_rom_loader_too(kernel, tmp_path):
    """A distribution's OVMF.fd (kind ``bios``) is -bios like the AmdSev build, never pflash."""
    spec = _snp_spec(kernel, tmp_path).with_(firmware=Firmware("bios", code=Path("/usr/share/ovmf/OVMF.fd")))
    loader = ET.fromstring(_snp_text(spec)).find("os/loader")
    assert loader is not None and (loader.get("type"), loader.text) == ("rom", "/usr/share/ovmf/OVMF.fd")
    assert loader.get("stateless") == "yes"
    # an SEV-ES guest on the AmdSev image: -bios too, its loader as before (no stateless)
    es = _snp_spec(kernel, tmp_path).with_(snp=None, sev=SevLaunch("sev-es", 0x5, 51))
    es_domain = ET.fromstring(_snp_text(es))
    es_loader = es_domain.find("os/loader")
    assert es_loader.get("type") == "rom" and es_loader.get("stateless") is None
    assert es_domain.find("memoryBacking/locked") is not None and es_domain.find("memoryBacking/source") is None
    assert es_domain.find("launchSecurity").get("type") == "sev" and es_domain.findtext("cpu/model") == "EPYC"


def test_snp_domain_is_valid_against_the_backports_schema(kernel, tmp_path, new_schemas):
    for launch in ({}, {"host_data": HOST_DATA, "id_block": ID_BLOCK, "id_auth": ID_AUTH,
                        "author_key_enabled": True, "kernel_hashes": True}):
        res = _relaxng(new_schemas, _snp_text(_snp_spec(kernel, tmp_path, **launch)), tmp_path)
        assert res.returncode == 0, res.stdout + res.stderr


def test_the_old_schema_rejects_the_snp_domain(kernel, tmp_path, new_schemas):
    """Why the version gate is real: libvirt 9.0's own schema (the host's, bookworm)
    refuses launchSecurity type='sev-snp', while it accepts the same guest as SEV-ES."""
    old = (HOST_SCHEMAS / "domaincommon.rng").read_text() if HOST_SCHEMAS.is_dir() else ""
    if not old or "sev-snp" in old:
        pytest.skip(f"{HOST_SCHEMAS}: no pre-10.5 libvirt schema here to compare with")
    snp = _snp_text(_snp_spec(kernel, tmp_path))
    res = _relaxng(HOST_SCHEMAS, snp, tmp_path)
    assert res.returncode != 0 and "launchSecurity" in res.stderr, res.stderr
    assert _relaxng(new_schemas, snp, tmp_path).returncode == 0
    es = _spec(kernel, "sev-es")
    res = _relaxng(HOST_SCHEMAS, domain_xml(es, DomainOptions(domain_name(es, "o"), nvram=tmp_path / "V.fd")), tmp_path)
    assert res.returncode == 0, res.stderr


def test_snp_needs_libvirt_10_5(kernel, tmp_path):
    spec = _snp_spec(kernel, tmp_path)
    with pytest.raises(SpecError) as err:
        check_snp_libvirt(spec, 9_000_000)
    assert str(err.value) == ("SEV-SNP under --launcher=libvirt needs libvirt >= 10.5.0 "
                              "(<launchSecurity type='sev-snp'>); this libvirt is 9.0.0")
    with pytest.raises(SpecError, match="this libvirt is 10.4.99"):
        check_snp_libvirt(spec, SNP_SINCE - 1)
    check_snp_libvirt(spec, SNP_SINCE)  # 10.5.0 itself has it
    check_snp_libvirt(_spec(kernel, "sev-es"), 9_000_000)  # SEV-ES is not gated on it
    assert version_text(11_003_000) == "11.3.0"


class _OldLibvirt:
    def __init__(self) -> None:
        self.created: list[str] = []
        self.closed = False

    def getLibVersion(self) -> int:  # noqa: N802  (libvirt's name)
        return 9_000_000

    def createXML(self, xml: str, flags: int) -> None:  # noqa: N802
        self.created.append(xml)

    def close(self) -> None:
        self.closed = True


def test_libvirt_guest_refuses_snp_on_libvirt_9_before_any_domain(kernel, tmp_path, monkeypatch):
    """--launcher=libvirt on Debian 12's libvirt: one line naming the version, no domain made."""
    from pytest_sev.libvirt import guest as lvguest
    conn = _OldLibvirt()
    monkeypatch.setattr(lvguest.lv, "libvirt_module", lambda: object())
    monkeypatch.setattr(lvguest.lv, "connect", lambda uri: conn)
    swept: list[object] = []
    monkeypatch.setattr(lvguest.lv, "sweep_orphans", swept.append)
    g = LibvirtGuest(_snp_spec(kernel, tmp_path), qemu="/bin/true", accel="tcg", workdir=tmp_path / "w")
    with pytest.raises(SpecError) as err:
        g.start()
    assert "\n" not in str(err.value) and "this libvirt is 9.0.0" in str(err.value)
    assert conn.created == [] and swept == []
    g.close()
    assert conn.closed
