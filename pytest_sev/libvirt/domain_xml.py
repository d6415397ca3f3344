"""Render a :class:`~pytest_sev.model.spec.GuestSpec` as a libvirt domain (pure).

The same spec the QEMU launcher turns into argv (:mod:`pytest_sev.qemu.argv`)
becomes the domain most fleets would define for it:

* ``<domain type='kvm'>`` under KVM, ``type='qemu'`` (TCG) elsewhere;
* q35 (the spec's machine), OVMF as a read-only pflash ``<loader>`` plus the
  guest's own ``<nvram>`` copy of the VARS template (SeaBIOS: no loader); a
  one-image firmware (the AmdSev build, or a one-file ``OVMF.fd``) as
  ``<loader type='rom'>``, which libvirt passes to QEMU as ``-bios``: the
  only way an SEV-SNP guest gets its firmware (QEMU refuses pflash for SNP;
  its loader also says ``stateless='yes'``: no variable store to keep);
* ``<launchSecurity type='sev'>`` with policy, cbitpos, reducedPhysBits and,
  where libvirt has it (>= 8.0), ``kernelHashes``; libvirt has no separate
  SEV-ES type: SEV-ES is the ES bit (0x4) of the policy, as in QEMU;
* ``<launchSecurity type='sev-snp'>`` (libvirt >= 10.5, element and attribute
  names from libvirt's ``domaincommon.rng`` ``launchSecuritySEVSNP``):
  cbitpos, reducedPhysBits, policy, ``kernelHashes``/``authorKey``
  attributes, ``<idBlock>``/``<idAuth>``/``<hostData>`` in base64 as QEMU's
  ``sev-snp-guest`` reads them; the guest's RAM as a shared memfd
  (``<memoryBacking><source type='memfd'/><access mode='shared'/>``), as the
  argv renderer's ``memory-backend-memfd,share=true`` (AMD's snp-latest
  launch-qemu.sh); :func:`check_snp_libvirt` refuses an SNP spec on an
  older libvirt before any XML reaches it;
* ``<driver iommu='on'/>`` on virtio devices when the spec (or SEV) implies
  ``iommu_platform=on``, ``model='virtio-non-transitional'`` for
  ``disable-legacy=on``; ``<memballoon model='none'/>`` (an SEV guest's
  balloon would need the IOMMU too, and the harness's argv has none);
* ``<memoryBacking><locked/>`` for SEV and SEV-SNP guests (SEV pins guest
  memory; for SNP it is kept as a margin: the host checks read the memlock
  limit for SNP too, as virtee/snphost does);
* the serial console on a pty (``<serial type='pty'>``), and
  ``<on_reboot>destroy</on_reboot>`` for ``no_reboot`` (libvirt then passes
  QEMU ``-no-reboot``), poweroff and crash also destroy;
* QEMU runs as root (a static DAC label), like the harness's own QEMU, so
  it reads the kernel from the user's cache and writes ``pmemsave`` dumps
  into private directories; ``extra_args`` go through
  ``<qemu:commandline>``.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.errors import SpecError
from pytest_sev.model.spec import ONE_IMAGE_KINDS, Disk, GuestSpec, SnpLaunch
from pytest_sev.qemu.argv import SNP_DEFAULT_CPU, preload_args

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
#: namespace of the <metadata> element that marks a domain as ours
META_NS = "urn:pytest-sev:guest"
#: every domain pytest-sev defines has a name starting with this
NAME_PREFIX = "pytest-sev-"
#: libvirt version (major * 1e6 + minor * 1e3 + micro) that has launchSecurity/@kernelHashes
KERNEL_HASHES_SINCE = 8_000_000
#: the first libvirt with ``<launchSecurity type='sev-snp'>`` (sev-reference.md 9: 10.5.0)
SNP_SINCE = 10_005_000


def version_text(number: int) -> str:
    """``10005000`` -> ``10.5.0`` (libvirt's getLibVersion encoding)."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def check_snp_libvirt(spec: GuestSpec, libvirt_version: int) -> None:
    """An SNP spec on a libvirt without ``type='sev-snp'`` is one start-up line
    naming both versions, instead of libvirt's schema error about an unknown
    ``launchSecurity`` type (or a domain that silently boots without SNP)."""
    if spec.snp is not None and libvirt_version < SNP_SINCE:
        raise SpecError(f"SEV-SNP under --launcher=libvirt needs libvirt >= {version_text(SNP_SINCE)} "
                        f"(<launchSecurity type='sev-snp'>); this libvirt is {version_text(libvirt_version)}")


@dataclass(frozen=True)
class DomainOptions:
    """What the domain needs beyond the spec: where things live on this host."""

    name: str
    domain_type: str = "qemu"  # "kvm" under KVM, "qemu" for TCG
    emulator: str | None = None
    nvram: Path | None = None  # the guest's own VARS copy (OVMF guests)
    #: launchSecurity/@kernelHashes: None leaves it out (libvirt < 8.0 rejects it)
    kernel_hashes: bool | None = None
    #: the pid of the harness that owns the domain (kept in <metadata>)
    owner_pid: int | None = None
    #: the guest owner's LAUNCH_START files' contents (base64 text), for
    #: launchSecurity's <dhCert>/<session>: this module reads no file
    dh_cert: str | None = None
    session: str | None = None
    run_as_root: bool = True


def default_cpu(spec: GuestSpec, domain_type: str) -> ET.Element:
    """``-cpu``: the spec's model, else EPYC for SEV, host-passthrough under
    KVM, ``maximum`` (QEMU's ``max``) under TCG."""
    cpu = ET.Element("cpu")
    model = spec.cpu or ("EPYC" if spec.sev is not None else SNP_DEFAULT_CPU if spec.snp is not None else None)
    if model == "host" or (model is None and domain_type == "kvm"):
        cpu.set("mode", "host-passthrough")
    elif model in (None, "max"):
        cpu.set("mode", "maximum")
    else:
        cpu.attrib.update({"mode": "custom", "match": "exact", "check": "none"})
        ET.SubElement(cpu, "model", fallback="forbid").text = model
    return cpu


def _iommu(disk: Disk, sev: bool) -> bool:
    return disk.iommu_platform if disk.iommu_platform is not None else sev


def _legacy_off(disk: Disk, sev: bool) -> bool:
    return disk.disable_legacy if disk.disable_legacy is not None else sev


def _disk(devices: ET.Element, disk: Disk, n: int, sev: bool) -> None:
    if disk.format == "vvfat":  # libvirt has no directory-as-FAT disk source
        raise SpecError(f"--launcher=libvirt cannot show a directory as a disk (vvfat: {disk.path}); "
                        "use the default launcher")
    if disk.bus == "virtio-scsi":
        ctrl = ET.SubElement(devices, "controller", type="scsi", index=str(n), model="virtio-scsi")
        if _legacy_off(disk, sev):
            ctrl.set("model", "virtio-non-transitional")
        cdrv = {"iommu": "on"} if _iommu(disk, sev) else {}
        if disk.num_queues:
            cdrv["queues"] = str(disk.num_queues)
        if cdrv:
            ET.SubElement(ctrl, "driver", cdrv)
    el = ET.SubElement(devices, "disk", type="file", device="disk")
    drv = {"name": "qemu", "type": disk.format, "cache": disk.cache, "io": disk.aio}
    if disk.bus == "virtio-blk":
        if _iommu(disk, sev):
            drv["iommu"] = "on"
        if disk.num_queues:
            drv["queues"] = str(disk.num_queues)
        if _legacy_off(disk, sev):
            el.set("model", "virtio-non-transitional")
    ET.SubElement(el, "driver", drv)
    ET.SubElement(el, "source", file=str(disk.path))
    letter = chr(ord("a") + n)
    if disk.bus == "virtio-blk":
        ET.SubElement(el, "target", dev=f"vd{letter}", bus="virtio")
    elif disk.bus == "virtio-scsi":
        ET.SubElement(el, "target", dev=f"sd{letter}", bus="scsi")
        ET.SubElement(el, "address", type="drive", controller=str(n), bus="0", target="0", unit="0")
    else:  # ide-hd on q35 is the ICH9 AHCI controller: libvirt calls it sata
        ET.SubElement(el, "target", dev=f"sd{letter}", bus="sata")
    if disk.throttle_bps:
        iotune = ET.SubElement(el, "iotune")
        ET.SubElement(iotune, "total_bytes_sec").text = str(disk.throttle_bps)
    if disk.readonly:
        ET.SubElement(el, "readonly")
    if disk.snapshot:  # QEMU's snapshot=on: writes go to an overlay that is thrown away
        ET.SubElement(el, "transient")


def _os(root: ET.Element, spec: GuestSpec, opts: DomainOptions) -> None:
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine=spec.machine.split(",")[0]).text = "hvm"
    fw = spec.firmware
    if fw.kind == "ovmf":
        ET.SubElement(os_el, "loader", readonly="yes", type="pflash").text = str(fw.code)
        nvram = opts.nvram or fw.vars_path
        nv = ET.SubElement(os_el, "nvram")
        if fw.vars_template is not None:
            nv.set("template", str(fw.vars_template))
        nv.text = str(nvram) if nvram else None
    elif fw.kind in ONE_IMAGE_KINDS:  # one image (AmdSev OVMF, OVMF.fd): QEMU's -bios, no variable store
        loader = ET.SubElement(os_el, "loader", readonly="yes", type="rom")
        if spec.snp is not None:  # said outright for SNP: libvirt must not add an NVRAM (pflash) to it
            loader.set("stateless", "yes")
        loader.text = str(fw.code)
    if spec.kernel is not None:
        ET.SubElement(os_el, "kernel").text = str(spec.kernel)
        if spec.initrd is not None:
            ET.SubElement(os_el, "initrd").text = str(spec.initrd)
        if spec.append:
            ET.SubElement(os_el, "cmdline").text = spec.append
    elif spec.disks:
        ET.SubElement(os_el, "boot", dev="hd")


def launch_security(spec: GuestSpec, kernel_hashes: bool | None, dh_cert: str | None = None,
                    session: str | None = None) -> ET.Element | None:
    """``<launchSecurity type='sev'>``; SEV-ES is the policy's ES bit.  An
    attested launch adds the owner's ``<dhCert>`` and ``<session>`` (base64,
    as QEMU's ``dh-cert-file``/``session-file`` hold them)."""
    if spec.sev is None:
        return None
    ls = ET.Element("launchSecurity", type="sev")
    if kernel_hashes is not None:
        ls.set("kernelHashes", "yes" if kernel_hashes else "no")
    ET.SubElement(ls, "cbitpos").text = str(spec.sev.cbitpos)
    ET.SubElement(ls, "reducedPhysBits").text = str(spec.sev.reduced_phys_bits)
    ET.SubElement(ls, "policy").text = f"0x{spec.sev.policy:04x}"
    if dh_cert is not None and session is not None:
        ET.SubElement(ls, "dhCert").text = dh_cert.strip()
        ET.SubElement(ls, "session").text = session.strip()
    return ls


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def snp_launch_security(snp: SnpLaunch) -> ET.Element:
    """``<launchSecurity type='sev-snp'>``: what QEMU's ``sev-snp-guest`` gets
    from the argv renderer, in libvirt's names (``kernel-hashes`` ->
    ``kernelHashes``, ``author-key-enabled`` -> ``authorKey``, ``host-data`` ->
    ``<hostData>``, ``id-block``/``id-auth`` -> ``<idBlock>``/``<idAuth>``).
    The policy fits libvirt's 32-bit ``hexuint``: :class:`SnpLaunch` admits
    only the known bits (below bit 26)."""
    ls = ET.Element("launchSecurity", type="sev-snp")
    if snp.kernel_hashes:
        ls.set("kernelHashes", "yes")
    if snp.author_key_enabled:
        ls.set("authorKey", "yes")
    ET.SubElement(ls, "cbitpos").text = str(snp.cbitpos)
    ET.SubElement(ls, "reducedPhysBits").text = str(snp.reduced_phys_bits)
    ET.SubElement(ls, "policy").text = f"0x{snp.policy:08x}"
    if snp.id_block is not None and snp.id_auth is not None:
        ET.SubElement(ls, "idBlock").text = _b64(snp.id_block)
        ET.SubElement(ls, "idAuth").text = _b64(snp.id_auth)
    if snp.host_data is not None:
        ET.SubElement(ls, "hostData").text = _b64(snp.host_data)
    return ls


def domain_element(spec: GuestSpec, opts: DomainOptions) -> ET.Element:
    ET.register_namespace("qemu", QEMU_NS)
    ET.register_namespace("pytestsev", META_NS)
    root = ET.Element("domain", type=opts.domain_type)
    ET.SubElement(root, "name").text = opts.name
    if opts.owner_pid is not None:
        meta = ET.SubElement(root, "metadata")
        ET.SubElement(meta, f"{{{META_NS}}}owner", pid=str(opts.owner_pid), guest=spec.name)
    ET.SubElement(root, "memory", unit="MiB").text = str(spec.memory_mib)
    if spec.sev is not None or spec.snp is not None:
        backing = ET.SubElement(root, "memoryBacking")
        if spec.snp is not None:  # the argv's memory-backend-memfd,share=true
            ET.SubElement(backing, "source", type="memfd")
            ET.SubElement(backing, "access", mode="shared")
        ET.SubElement(backing, "locked")
    ET.SubElement(root, "vcpu").text = str(spec.vcpus)
    _os(root, spec, opts)
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    confidential = spec.sev is not None or spec.snp is not None
    if confidential:  # launch-qemu.sh's vmport=off (both branches)
        ET.SubElement(features, "vmport", state="off")
    root.append(default_cpu(spec, opts.domain_type))
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "destroy" if spec.no_reboot else "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    if opts.emulator:
        ET.SubElement(devices, "emulator").text = opts.emulator
    for n, disk in enumerate(spec.disks):
        _disk(devices, disk, n, confidential)
    ET.SubElement(devices, "controller", type="usb", model="none")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    console = ET.SubElement(devices, "console", type="pty")
    ET.SubElement(console, "target", type="serial", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    ls = (snp_launch_security(spec.snp) if spec.snp is not None
          else launch_security(spec, opts.kernel_hashes, opts.dh_cert, opts.session))
    if ls is not None:
        root.append(ls)
    if opts.run_as_root:
        label = ET.SubElement(root, "seclabel", type="static", model="dac", relabel="no")
        ET.SubElement(label, "label").text = "+0:+0"
    # libvirt has no element for QEMU's generic loader: preloads pass through
    # as QEMU arguments, like extra_args
    passthrough = [*preload_args(spec.preloads), *spec.extra_args]
    if passthrough:
        cmdline = ET.SubElement(root, f"{{{QEMU_NS}}}commandline")
        for arg in passthrough:
            ET.SubElement(cmdline, f"{{{QEMU_NS}}}arg", value=arg)
    return root


def domain_xml(spec: GuestSpec, opts: DomainOptions) -> str:
    """The domain XML for *spec* (pure: no file is read or written)."""
    root = domain_element(spec, opts)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def domain_name(spec: GuestSpec, unique: str) -> str:
    """``pytest-sev-<spec name>-<unique>``, in the characters libvirt accepts."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.name)
    return f"{NAME_PREFIX}{safe}-{unique}"
