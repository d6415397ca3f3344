"""Which kernel package target a host wants: ``bindeb-pkg`` or ``binrpm-pkg``.

AMD's build.sh looks only at ``ID_LIKE`` in os-release, so plain Debian
(``ID=debian`` and no ``ID_LIKE``) wrongly gets rpm packages.  Here ``ID`` and
every word of ``ID_LIKE`` count.  Pure functions over os-release text.
"""

from __future__ import annotations

import shlex
from pathlib import Path

DEBIAN_FAMILY = frozenset({"debian", "ubuntu"})


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, shell-quoted values unquoted, comments ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        out[key.strip()] = " ".join(words)
    return out


def is_debian_family(os_release: dict[str, str]) -> bool:
    ids = {os_release.get("ID", "").lower(), *os_release.get("ID_LIKE", "").lower().split()}
    return bool(ids & DEBIAN_FAMILY)


def package_target(os_release_text: str) -> str:
    return "bindeb-pkg" if is_debian_family(parse_os_release(os_release_text)) else "binrpm-pkg"


def host_os_release() -> str:
    for cand in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            return Path(cand).read_text()
        except OSError:
            continue
    return ""
