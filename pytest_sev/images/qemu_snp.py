"""Provision a QEMU that can launch SEV-SNP guests, beside the host's.

Why: upstream QEMU has ``sev-snp-guest`` since 9.1, Debian 12 ships 7.2.
Debian's bookworm-backports carries a newer ``qemu-system-x86`` built against
bookworm's own libraries, so its binary runs here unchanged.  It is fetched
the way the default guest kernel is (``apt-get download`` + ``dpkg -x`` into
the content-addressed cache), never installed: the host's QEMU and the host's
apt configuration stay as they are.  apt runs with a private configuration
(its own sources file naming the host's Debian mirror with the backports
suite, its own lists and archive directories under the cache), so the host's
``/etc/apt`` and ``/var/lib/apt`` are only read.

The packages: ``qemu-system-x86`` (the binary), and the same version's
``qemu-system-common`` and ``qemu-system-modules-{opengl,spice}`` (its
loadable modules) and ``qemu-system-data`` (its ROMs, for ``-L``).  The
extracted binary looks for ROMs and modules in the host's ``/usr/share/qemu``
and ``/usr/lib/x86_64-linux-gnu/qemu`` (7.2's): :attr:`SnpQemu.datadir` and
:attr:`SnpQemu.moduledir` name its own, and :meth:`SnpQemu.environment`
(``QEMU_MODULE_DIR``) makes it load its own modules first.
"""

from __future__ import annotations

import getpass
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_sev.cache import ContentCache, cache_root, file_digest, make_key
from pytest_sev.errors import ProvisionError
from pytest_sev.model.spec import SNP_MIN_QEMU
from pytest_sev.qemu.binary import parse_version

SUITE = "backports"  #: appended to the host's codename: bookworm -> bookworm-backports
PACKAGE = "qemu-system-x86"
#: the same version's modules and ROMs: QEMU loads a module from its own
#: build only, and probes the display/audio ones at start (``-nographic``), so
#: every module the host's 7.2 packages install needs its 10.x twin here
COMPANIONS = ("qemu-system-common", "qemu-system-data", "qemu-system-modules-opengl",
              "qemu-system-modules-spice")
#: Debian's default mirror, used only when the host's sources name none
DEBIAN_DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
PROVISION_COMMAND = "python -m pytest_sev provision qemu-snp"
BINARY = Path("usr/bin/qemu-system-x86_64")


@dataclass(frozen=True)
class SnpQemu:
    """An extracted QEMU >= 9.1 in the cache."""

    binary: Path
    datadir: Path      #: its ROMs (pass ``-L`` when the host's 7.2 ROMs will not do)
    moduledir: Path    #: its modules (``QEMU_MODULE_DIR``)
    package_version: str
    version: tuple[int, int, int]
    suite: str
    mirror: str
    seconds: float = 0.0  #: how long provisioning took (0: from the cache)

    def environment(self) -> dict[str, str]:
        """What its process needs in the environment: its own modules, not the
        host's 7.2 ones ("Only modules from the same build can be loaded")."""
        return {"QEMU_MODULE_DIR": str(self.moduledir)}

    def describe(self) -> str:
        return (f"QEMU {'.'.join(map(str, self.version))} ({PACKAGE} {self.package_version} "
                f"from {self.suite}, {self.mirror})\n  {self.binary}")


# -- the host's apt sources, read only ----------------------------------------------

def host_codename(os_release: Path = Path("/etc/os-release")) -> str:
    """The Debian codename (``bookworm``) the backports suite is named after."""
    try:
        text = os_release.read_text()
    except OSError:
        text = ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    return m.group(1) if m else "bookworm"


def _source_stanzas(etc_apt: Path) -> list[tuple[str, str]]:
    """(URI, suites) of every enabled source in sources.list and sources.list.d."""
    found: list[tuple[str, str]] = []
    files = [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list")),
             *sorted((etc_apt / "sources.list.d").glob("*.sources"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
                if uris and suites and not re.search(r"^Enabled:\s*no", stanza, re.M | re.I):
                    found.append((uris.group(1), suites.group(1)))
        else:
            for m in re.finditer(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
                found.append((m.group(1), m.group(2)))
    return found


def host_mirror(codename: str, etc_apt: Path = Path("/etc/apt")) -> str:
    """The mirror the host's own apt uses for the main *codename* suite
    (a local or proxied mirror stays in use), else Debian's default."""
    for uri, suites in _source_stanzas(etc_apt):
        if codename in suites.split() and "security" not in uri:
            return uri.rstrip("/")
    return DEBIAN_DEFAULT_MIRROR


# -- apt with a private configuration ------------------------------------------------

def _apt_dirs(root: Path) -> dict[str, Path]:
    dirs = {"parts": root / "sources.list.d", "lists": root / "lists", "cache": root / "cache"}
    for d in (dirs["parts"], dirs["lists"] / "partial", dirs["cache"] / "archives" / "partial"):
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def write_private_sources(root: Path, mirror: str, suite: str) -> Path:
    """One deb822 sources file: the host's mirror, the backports suite, main."""
    keyring = f"\nSigned-By: {DEFAULT_KEYRING}" if Path(DEFAULT_KEYRING).is_file() else ""
    path = root / "backports.sources"
    path.write_text(f"Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main{keyring}\n")
    return path


def apt_options(root: Path, sources: Path) -> list[str]:
    """``-o`` options that confine apt to *root*: the host's sources, lists
    and archives are neither read for packages nor written."""
    dirs = _apt_dirs(root)
    return ["-o", f"Dir::Etc::SourceList={sources}", "-o", f"Dir::Etc::SourceParts={dirs['parts']}",
            "-o", f"Dir::State::Lists={dirs['lists']}", "-o", f"Dir::Cache={dirs['cache']}",
            "-o", f"APT::Sandbox::User={getpass.getuser()}", "-q"]


def _run(argv: list[str], what: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a tool; a failure is one ProvisionError line naming *what* and the tool's own words."""
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"qemu-snp: {what}: {exc}") from None
    said = _apt_complaint(proc.stderr)
    if proc.returncode != 0:
        raise ProvisionError(f"qemu-snp: {what} failed ({proc.returncode}): {said or proc.stderr.strip()[-300:]}")
    return proc.stdout + proc.stderr


def _apt_complaint(stderr: str) -> str:
    """apt's E: lines and fetch failures, joined (the warnings about the sandbox left out)."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if ln.startswith("E:") or ("Failed to fetch" in ln) or ("Could not resolve" in ln)]
    return " | ".join(lines)[-400:]


def _update(opts: list[str], suite: str, mirror: str) -> None:
    """Refresh the private lists; apt exits 0 on an unreachable mirror, so its
    fetch warnings count as a failure here."""
    out = _run(["apt-get", *opts, "update"], f"apt-get update of {suite} ({mirror})")
    complaint = _apt_complaint(out)
    if complaint:
        raise ProvisionError(f"qemu-snp: apt-get update of {suite} ({mirror}) failed: {complaint}")


def _download(opts: list[str], names: list[str], into: Path, suite: str) -> None:
    _run(["apt-get", *opts, "download", *names], f"apt-get download {' '.join(names)} from {suite}", cwd=into)


def download_backports(work: Path, names: list[str]) -> list[Path]:
    """Download *names* (``pkg`` or ``pkg=version``) from the host's backports
    suite into *work*/debs with the private apt configuration, and return the
    .deb files.  Reused for other packages the harness only unpacks, never
    installs (libvirt's newer RelaxNG schemas for the SNP domain XML)."""
    codename = host_codename()
    suite, mirror = f"{codename}-{SUITE}", host_mirror(codename)
    opts = apt_options(work / "apt", write_private_sources(work, mirror, suite))
    debs_dir = work / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    _update(opts, suite, mirror)
    _download(opts, names, debs_dir, suite)
    return sorted(debs_dir.glob("*.deb"))


def _deb_field(deb: Path, field: str) -> str:
    return _run(["dpkg-deb", "-f", str(deb), field], f"dpkg-deb -f {deb.name}").strip()


# -- the cache entry ---------------------------------------------------------------------

def _pointer() -> Path:
    return cache_root() / "qemu-snp" / "current.json"


def _probe(binary: Path) -> tuple[int, int, int]:
    """The extracted binary's version; it must run here and know ``sev-snp-guest``."""
    version = parse_version(_run([str(binary), "--version"], f"{binary} --version", timeout=30))
    if version[:2] < SNP_MIN_QEMU:
        raise ProvisionError(f"qemu-snp: {binary} is QEMU {version[0]}.{version[1]}, SEV-SNP needs >= 9.1")
    if "sev-snp-guest" not in _run([str(binary), "-object", "help"], f"{binary} -object help", timeout=30):
        raise ProvisionError(f"qemu-snp: {binary} has no sev-snp-guest object")
    return version


def _unpack(debs: list[Path], meta: dict[str, str], out: Path) -> None:
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(out / "root")], f"dpkg-deb -x {deb.name}")
    version = _probe(out / "root" / BINARY)
    meta = {**meta, "qemu_version": ".".join(map(str, version))}
    (out / "manifest.json").write_text(json.dumps(meta, indent=1))


def _load(entry: Path, seconds: float = 0.0) -> SnpQemu:
    meta = json.loads((entry / "manifest.json").read_text())
    root = entry / "root"
    return SnpQemu(binary=root / BINARY, datadir=root / "usr" / "share" / "qemu",
                   moduledir=root / "usr" / "lib" / "x86_64-linux-gnu" / "qemu",
                   package_version=meta["package_version"],
                   version=parse_version(f"version {meta['qemu_version']}"),
                   suite=meta["suite"], mirror=meta["mirror"], seconds=seconds)


def provisioned_snp_qemu() -> SnpQemu | None:
    """The QEMU a previous ``provision qemu-snp`` put in the cache (no network)."""
    try:
        entry = Path(json.loads(_pointer().read_text())["entry"])
    except (OSError, ValueError, KeyError):
        return None
    if not (entry / ".complete").exists():
        return None
    return _load(entry)


def _fetch(work: Path, suite: str, mirror: str) -> list[Path]:
    """The three packages of one version, downloaded into *work*/debs."""
    opts = apt_options(work / "apt", write_private_sources(work, mirror, suite))
    debs_dir = work / "debs"
    debs_dir.mkdir()
    _update(opts, suite, mirror)
    _download(opts, [PACKAGE], debs_dir, suite)
    main_deb = next(iter(sorted(debs_dir.glob("*.deb"))), None)
    if main_deb is None:
        raise ProvisionError(f"qemu-snp: apt-get download {PACKAGE} from {suite} produced no .deb")
    version = _deb_field(main_deb, "Version")
    _download(opts, [f"{name}={version}" for name in COMPANIONS], debs_dir, suite)
    return sorted(debs_dir.glob("*.deb"))


def provision_snp_qemu(offline: bool = False, refresh: bool = False) -> SnpQemu:
    """Fetch (or reuse) bookworm-backports' QEMU into the cache and return it.

    Idempotent: a cached one is returned without the network unless *refresh*.
    Offline with nothing cached, or apt refusing, is one ProvisionError line."""
    cached = provisioned_snp_qemu()
    if cached is not None and not refresh:
        return cached
    if offline:
        raise ProvisionError(f"qemu-snp: no QEMU >= 9.1 in the cache; run `{PROVISION_COMMAND}` online")
    started = time.monotonic()
    codename = host_codename()
    suite, mirror = f"{codename}-{SUITE}", host_mirror(codename)
    with tempfile.TemporaryDirectory(prefix="sev-qemu-snp-") as tmp:
        debs = _fetch(Path(tmp), suite, mirror)
        key = make_key(debs=[file_digest(d) for d in debs])
        meta = {"package_version": _deb_field(debs[0], "Version"), "suite": suite, "mirror": mirror}
        entry = ContentCache("qemu-snp").get_or_build(key, lambda out: _unpack(debs, meta, out))
    _pointer().write_text(json.dumps({"entry": str(entry)}))
    return _load(entry, seconds=time.monotonic() - started)

