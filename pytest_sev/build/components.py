"""Where each component comes from: ``system``, ``prefix:PATH`` or ``build``.

``--components qemu=system,ovmf=prefix:/usr/local,kernel=build`` (a bare
``build`` or ``system`` sets all three).  ``system`` is QEMU on PATH, the
distro OVMF (:func:`pytest_sev.qemu.firmware.find_ovmf`) and the provisioned
default guest kernel; ``prefix:PATH`` is a build.sh install prefix (or, for
the kernel, a vmlinuz file, a directory holding one, or a kernel build tree);
``build`` builds from the sources file with the recipes, cached.

The optional ``ovmf-amdsev`` (the AmdSev OVMF of an attested launch) is in
the plan only when named (``ovmf-amdsev=build``); without it, a
distribution's ``OVMF.amdsev.fd`` is used when one is installed, and the
attested-launch rows that need one skip.

Parsing is pure and happens at start-up (bad specs are usage errors);
resolving (stat, hash, maybe build) happens when the fixture is first used.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.build.errors import SourcesError
from pytest_sev.build.manifest import Manifest, artifact_record, record_used
from pytest_sev.build.recipes import AMDSEV_NAME, BuildOptions
from pytest_sev.build.sources import COMPONENTS, KNOWN_COMPONENTS, Source
from pytest_sev.qemu.firmware import find_amdsev_ovmf, find_ovmf

KINDS = ("system", "prefix", "build", "backports")
#: the one component a ``backports`` source exists for
BACKPORTS_COMPONENTS = ("qemu",)


@dataclass(frozen=True)
class Choice:
    kind: str               # system | prefix | build | backports (qemu only)
    path: Path | None = None

    def describe(self) -> str:
        return f"prefix:{self.path}" if self.kind == "prefix" else self.kind

    def prefix(self) -> Path:
        """The install prefix of a ``prefix:PATH`` choice."""
        if self.path is None:
            raise SourcesError(f"component choice {self.kind!r} has no path")
        return self.path


def parse_components(spec: str | None) -> dict[str, Choice]:
    """``"qemu=system,kernel=build"`` -> a Choice per component. Pure."""
    plan = {c: Choice("system") for c in COMPONENTS}
    spec = (spec or "").strip()
    if not spec:
        return plan
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        if not eq:  # a bare value applies to all three
            name, value = "", item
        name, value = name.strip(), value.strip()
        if name and name not in KNOWN_COMPONENTS:
            raise SourcesError(f"--components: unknown component {name!r} (known: {', '.join(KNOWN_COMPONENTS)})")
        choice = _choice(value, name or "all")
        if choice.kind == "backports" and name not in BACKPORTS_COMPONENTS:
            raise SourcesError(f"--components: {name or 'all'}=backports: only qemu has a backports source")
        for comp in ([name] if name else COMPONENTS):
            plan[comp] = choice
    return plan


def _choice(value: str, name: str) -> Choice:
    if value in ("system", "build", "backports"):
        return Choice(value)
    if value.startswith("prefix:") and len(value) > len("prefix:"):
        return Choice("prefix", Path(value[len("prefix:"):]).expanduser())
    raise SourcesError(f"--components: {name}={value!r}: expected system, build or prefix:PATH "
                       "(qemu also: backports)")


@dataclass(frozen=True)
class Components:
    """The QEMU, OVMF and guest kernel a session uses, with their manifests."""

    qemu: Path
    ovmf_code: Path | None
    ovmf_vars: Path | None
    kernel: Path | None
    manifests: tuple[Manifest, ...] = ()
    #: OVMF.amdsev.fd (built, from a prefix, or a distribution's); None: there is none
    ovmf_amdsev: Path | None = None

    def manifest(self, component: str) -> Manifest | None:
        return next((m for m in self.manifests if m.component == component), None)


def _qemu_version(binary: Path) -> str:
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return ""
    return out.splitlines()[0] if out else ""


def _found(component: str, choice: Choice, version: str, files: dict[str, Path]) -> Manifest:
    for name, p in files.items():
        if not p.is_file():
            raise SourcesError(f"{component} ({choice.describe()}): {name} not found at {p}")
    return Manifest(component=component, source=choice.describe(), ref="", commit="",
                    version=version, artifacts={n: artifact_record(p) for n, p in files.items()})


def _backports_qemu() -> Path:
    """The QEMU ``provision qemu-snp`` left in the cache (resolving never fetches)."""
    from pytest_sev.images.qemu_snp import PROVISION_COMMAND, provisioned_snp_qemu
    found = provisioned_snp_qemu()
    if found is None:
        raise SourcesError(f"qemu (backports): no QEMU >= 9.1 in the cache (run `{PROVISION_COMMAND}`)")
    return found.binary


def _locate_qemu(choice: Choice) -> Manifest:
    if choice.kind == "backports":
        binary = _backports_qemu()
    elif choice.kind == "system":
        found = shutil.which("qemu-system-x86_64")
        if not found:
            raise SourcesError("qemu (system): qemu-system-x86_64 is not on PATH (install qemu-system-x86)")
        binary = Path(found)
    else:
        binary = choice.prefix() / "bin" / "qemu-system-x86_64"
    return _found("qemu", choice, _qemu_version(binary), {"qemu-system-x86_64": binary})


def _locate_ovmf(choice: Choice) -> Manifest:
    if choice.kind == "system":
        pair = find_ovmf()
        if pair is None:
            raise SourcesError("ovmf (system): no OVMF found (install the ovmf package)")
        code, vars_ = pair
    else:
        share = choice.prefix() / "share" / "qemu"
        code, vars_ = share / "OVMF_CODE.fd", share / "OVMF_VARS.fd"
    return _found("ovmf", choice, "", {"OVMF_CODE.fd": code, "OVMF_VARS.fd": vars_})


def kernel_in(path: Path) -> Path:
    """The bzImage/vmlinuz a ``prefix:PATH`` names (file, dir, or build tree)."""
    if path.is_file():
        return path
    for cand in (path / "vmlinuz", path / "arch" / "x86" / "boot" / "bzImage",
                 *sorted((path / "boot").glob("vmlinuz-*"), reverse=True)):
        if cand.is_file():
            return cand
    return path / "vmlinuz"


def _locate_kernel(choice: Choice) -> Manifest:
    if choice.kind == "system":
        from pytest_sev.images.provision import provisioned_kernel
        gk = provisioned_kernel()
        if gk is None:
            raise SourcesError("kernel (system): the default guest kernel is not provisioned "
                               "(run `python -m pytest_sev provision`)")
        return _found("kernel", choice, gk.release, {"vmlinuz": gk.vmlinuz})
    return _found("kernel", choice, "", {"vmlinuz": kernel_in(choice.prefix())})


def _locate_amdsev(choice: Choice) -> Manifest | None:
    """The AmdSev OVMF of a prefix (it must be there), or a distribution's (None: none)."""
    if choice.kind == "system":
        found = find_amdsev_ovmf()
        return None if found is None else _found("ovmf-amdsev", choice, "", {AMDSEV_NAME: found})
    return _found("ovmf-amdsev", choice, "", {AMDSEV_NAME: choice.prefix() / "share" / "qemu" / AMDSEV_NAME})


_LOCATE: dict[str, Callable[[Choice], Manifest | None]] = {
    "qemu": _locate_qemu, "ovmf": _locate_ovmf, "kernel": _locate_kernel, "ovmf-amdsev": _locate_amdsev}
MAIN_ARTIFACTS = {"qemu": ("qemu-system-x86_64",), "ovmf": ("OVMF_CODE.fd", "OVMF_VARS.fd"),
                  "kernel": ("vmlinuz",), "ovmf-amdsev": (AMDSEV_NAME,)}


def resolve_components(plan: dict[str, Choice], sources: dict[str, Source] | None,
                       opts: BuildOptions | None = None) -> Components:
    """Locate or build every component of *plan* (builds in build.sh's order)."""
    from pytest_sev.build.engine import build
    found = {comp: _resolve(comp, plan.get(comp, Choice("system")), sources, opts, build)
             for comp in (*COMPONENTS, "ovmf-amdsev")}
    manifests = {c: m for c, m in found.items() if m is not None}  # only the optional one may be absent
    art = {c: [m.artifact(n) for n in MAIN_ARTIFACTS[c]] for c, m in manifests.items()}
    return Components(qemu=art["qemu"][0], ovmf_code=art["ovmf"][0], ovmf_vars=art["ovmf"][1],
                      kernel=art["kernel"][0], manifests=tuple(manifests.values()),
                      ovmf_amdsev=art["ovmf-amdsev"][0] if "ovmf-amdsev" in art else None)


def _resolve(comp: str, choice: Choice, sources: dict[str, Source] | None, opts: BuildOptions | None,
             build: Callable[[Source, BuildOptions | None], Manifest]) -> Manifest | None:
    """One component: built from its sources table, or located (None: an
    optional component that is not installed)."""
    if choice.kind == "build":
        if not sources or comp not in sources:
            raise SourcesError(f"{comp}=build: the sources file has no [{comp}] table")
        return build(sources[comp], opts)
    found = _LOCATE[comp](choice)
    if found is not None:
        record_used(found)
    return found


def run_config_overrides(plan: dict[str, Choice], comps: Components,
                         with_fio: bool = True) -> dict:
    """RunConfig fields (``dataclasses.replace``) for components not from ``system``.

    ``system`` components leave the RunConfig alone (its own defaults are the
    system ones).  A kernel from a prefix or a build boots with the default
    busybox initramfs: its modules are the distro kernel's and fail to load
    harmlessly, so such a kernel must have virtio, serial and msr built in
    (fixtures/kernel/*.config do).
    """
    out: dict = {}
    if plan["qemu"].kind != "system":
        out["qemu"] = str(comps.qemu)
    if plan["ovmf"].kind != "system":
        out["ovmf_code"], out["ovmf_vars"] = comps.ovmf_code, comps.ovmf_vars
    if comps.ovmf_amdsev is not None and plan.get("ovmf-amdsev", Choice("system")).kind != "system":
        out["ovmf_amdsev"] = comps.ovmf_amdsev
    if plan["kernel"].kind != "system":
        from pytest_sev.images.default_kernel import default_kernel
        from pytest_sev.images.initramfs import build_initramfs
        out["guest_kernel"] = comps.kernel
        out["guest_initrd"] = build_initramfs(default_kernel(), with_fio=with_fio).path
    return out
