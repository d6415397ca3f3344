"""What makes a component build bit-for-bit reproducible, in one place.

The same source commit, recipe and inputs must give the same bytes on any
machine and in any cache directory.  What a build would otherwise take from
the moment and the machine, and how each is pinned here:

- **the clock**: ``SOURCE_DATE_EPOCH`` is the source's own date (a git
  commit's committer date; a tarball's newest file, read before patching);
  the kernel's ``KBUILD_BUILD_TIMESTAMP`` is that date, written out.  Tools
  that read the clock without honouring it (the kernel's ``mkdebian`` writes
  ``$(date -R)`` into the package changelog) see it through a ``date`` shim
  that answers "now" with the epoch; ``gzip`` is shimmed to ``gzip -n`` (no
  name or mtime in the header: ``builddeb`` gzips the packaged config
  without ``-n``).
- **who and where**: ``KBUILD_BUILD_USER``/``KBUILD_BUILD_HOST`` are fixed,
  the Debian maintainer field too (``DEBEMAIL``), ``TZ=UTC``, ``LC_ALL=C``,
  umask 022 (file modes that end up in packages).
- **the build path**: a build runs in ``<work>/<component>-<key>/src``, which
  depends on the cache directory; ``-ffile-prefix-map=<tree>/=`` (kernel
  ``KCFLAGS``/``KAFLAGS``/``HOSTCFLAGS``) strips it from whatever debug info
  or ``__FILE__`` the compiler would record.
- **the build counter**: ``KBUILD_BUILD_VERSION=1`` (``#1`` in ``uname -v``).

What still depends on the build path (measured: two kernel builds of one
commit in two cache directories, see :data:`PATH_DEPENDENT`): the kernel's
``linux-headers`` package ships the ``.cmd`` files of host programs and of
``scripts/mod`` (the compiler command line, which holds the prefix map and so
the path) and ``objtool``, whose ``libsubcmd`` is built with ``-ggdb3`` and
absolute include paths.  It is the same at the same path: set
``PYTEST_SEV_BUILD_DIR`` to one path on every runner to compare it.

Not pinned, because it is an input, not noise: the toolchain.  A different
gcc or binutils makes different code; the manifest records the toolchain
(:func:`toolchain`) so a hash mismatch between two runners can be explained.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

#: fixed identity baked into kernels and packages instead of the builder's
BUILD_USER = "pytest-sev"
BUILD_HOST = "pytest-sev"
DEBEMAIL = "pytest-sev <pytest-sev@localhost>"

#: ``date`` that answers "now" with $SOURCE_DATE_EPOCH (other uses pass through)
DATE_SHIM = """#!/bin/sh
# pytest-sev: date(1) for reproducible builds. "Now" is $SOURCE_DATE_EPOCH;
# an explicit date (-d, -r, -f, -s) passes through unchanged.
for a in "$@"; do
  case $a in
    -d*|--date*|-r*|--reference*|-f*|--file*|-s*|--set*) exec {real} "$@" ;;
  esac
done
if [ -n "${{SOURCE_DATE_EPOCH:-}}" ]; then exec {real} -d "@$SOURCE_DATE_EPOCH" "$@"; fi
exec {real} "$@"
"""

GZIP_SHIM = """#!/bin/sh
# pytest-sev: gzip(1) without name and timestamp in the header (-n).
exec {real} -n "$@"
"""


#: artifact name prefixes that are reproducible only at the same build path (module doc)
PATH_DEPENDENT = ("linux-headers-",)


def path_dependent(name: str) -> bool:
    return name.startswith(PATH_DEPENDENT)


def commit_epoch(tree: Path) -> int:
    """Committer date of HEAD in a git checkout (seconds since the epoch)."""
    out = subprocess.run(["git", "-C", str(tree), "show", "-s", "--format=%ct", "HEAD"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return int(out.strip())


def tree_epoch(tree: Path) -> int:
    """Newest mtime of an unpacked tarball's files (tar keeps them)."""
    newest = 0
    for dirpath, _dirs, files in os.walk(tree):
        for name in files:
            try:
                newest = max(newest, int(os.lstat(os.path.join(dirpath, name)).st_mtime))
            except OSError:
                continue
    return newest


def kbuild_timestamp(epoch: int) -> str:
    """``uname -v``'s date, as ``date`` prints it in the C locale, UTC."""
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(epoch))


def base_env(epoch: int) -> dict[str, str]:
    """Every recipe's steps: the source's clock, UTC, the C locale."""
    return {"SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC", "LC_ALL": "C"}


def write_shims(directory: Path) -> Path:
    """``date`` and ``gzip`` wrappers (see the module doc) in *directory*."""
    directory.mkdir(parents=True, exist_ok=True)
    plain_path = "/usr/bin:/bin"
    for name, text in (("date", DATE_SHIM), ("gzip", GZIP_SHIM)):
        real = shutil.which(name, path=plain_path) or f"/bin/{name}"
        shim = directory / name
        shim.write_text(text.format(real=real))
        shim.chmod(0o755)
    return directory


def kernel_env(epoch: int, tree: Path, shims: Path | None) -> dict[str, str]:
    """Kbuild's reproducibility knobs (Documentation/kbuild/reproducible-builds.rst)."""
    prefix_map = f"-ffile-prefix-map={tree}/="
    env = {
        "KBUILD_BUILD_TIMESTAMP": kbuild_timestamp(epoch),
        "KBUILD_BUILD_USER": BUILD_USER,
        "KBUILD_BUILD_HOST": BUILD_HOST,
        "KBUILD_BUILD_VERSION": "1",
        "KCFLAGS": prefix_map,
        "KAFLAGS": prefix_map,
        "HOSTCFLAGS": prefix_map,
        "DEBEMAIL": DEBEMAIL,
        "DEBFULLNAME": BUILD_USER,
        "KDEB_COMPRESS": "xz",
        # dpkg-deb's multi-threaded xz splits blocks by thread count: one thread
        "DPKG_DEB_THREADS_MAX": "1",
    }
    if shims is not None:
        env["PATH"] = f"{shims}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "not found"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def toolchain() -> dict[str, str]:
    """Versions of the tools whose output is the build (recorded, not pinned)."""
    return {"gcc": _first_line(["gcc", "--version"]), "ld": _first_line(["ld", "--version"]),
            "make": _first_line(["make", "--version"])}


def check_pins(component: str, artifacts: dict[str, dict[str, str]],
               pins: dict[str, str]) -> list[str]:
    """One line per pinned artifact whose sha256 differs (or that is missing). Pure."""
    problems = []
    for name, want in sorted(pins.items()):
        rec = artifacts.get(name)
        if rec is None:
            problems.append(f"{component} {name}: pinned sha256 {want}, but the build has no such artifact")
        elif rec["sha256"] != want:
            problems.append(f"{component} {name}: built sha256 {rec['sha256']}, pinned {want}")
    return problems


def compare_artifacts(reference: dict[str, dict[str, str]],
                      rebuilt: dict[str, dict[str, str]]) -> list[tuple[str, str, str, bool]]:
    """``(name, reference sha256, rebuilt sha256, same)`` for every artifact of either. Pure."""
    rows = []
    for name in sorted(set(reference) | set(rebuilt)):
        a = reference.get(name, {}).get("sha256", "-")
        b = rebuilt.get(name, {}).get("sha256", "-")
        rows.append((name, a, b, a == b))
    return rows
