"""``environment.properties``: what a run's results came from.

A regression found at night is only actionable if the report says what
changed: microcode, SEV firmware, host kernel, QEMU, OVMF, guest kernel,
mode, accelerator, runner, component commits. All of it is gathered once at
session end from what the run already knows (the host report is the one
:func:`pytest_sev.plugin.state.host_report` probed; nothing is probed twice) and
written in Java properties syntax, which Allure 2 and 3 both read.

Other code adds entries through the ``pytest_sev_report_environment`` hook
(see :mod:`.hookspecs`), e.g. component commits from a build manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

FILENAME = "environment.properties"
UNKNOWN = "unknown"

#: environment key -> HostReport.facts key
HOST_FACTS = (
    ("host.cpu_model", "cpu_model"),
    ("host.family_model_stepping", "family_model_stepping"),
    ("host.microcode", "microcode"),
    ("host.sev_api", "sev_api"),
    ("host.sev_build", "sev_build"),
    ("host.kernel", "host_kernel"),
    ("qemu.version", "qemu_version"),
    ("qemu.binary", "qemu"),
)


def _escape(text: str, key: bool) -> str:
    """Java properties escaping; non-ASCII as ``\\uXXXX`` so any reader copes."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif (key and ch in "=: #!") or (ch == " " and i == 0):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16(ch))
        else:
            out.append(ch)
    return "".join(out)


def _utf16(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def format_properties(entries: Mapping[str, object]) -> str:
    """``key=value`` lines in the given order; None becomes ``unknown``."""
    lines = []
    for key, value in entries.items():
        text = UNKNOWN if value is None or value == "" else str(value)
        lines.append(f"{_escape(key, key=True)}={_escape(text, key=False)}")
    return "\n".join(lines) + "\n"


def host_entries(facts: Mapping[str, str]) -> dict[str, str]:
    return {key: facts.get(fact) or UNKNOWN for key, fact in HOST_FACTS}


def readiness_entries(report) -> dict[str, str]:
    """``host.ready.sev-es=no (first failure: sev_es_firmware)`` per mode."""
    entries = {}
    for mode in ("sev-es", "sev"):
        first = report.first_failure(mode)
        entries[f"host.ready.{mode}"] = "yes" if first is None else f"no (first failure: {first.name})"
    return entries


def component_entries(commits: Mapping[str, str]) -> dict[str, str]:
    """``component.<name>.commit`` entries from a name -> commit mapping.

    For the components manifest (QEMU/OVMF/kernel built from source) once it
    exists: its hook implementation returns ``component_entries(manifest)``.
    """
    return {f"component.{name}.commit": commit for name, commit in sorted(commits.items())}


def guest_kernel_entry(configured: Path | None) -> str:
    """The guest kernel: ``--guest-kernel``'s release, or the provisioned one."""
    if configured is not None:
        try:
            from pytest_sev.images.bzimage import kernel_release
            return f"{kernel_release(configured)} ({configured})"
        except (OSError, ValueError) as exc:
            return f"{configured} (no release: {exc})"
    from pytest_sev.images.provision import provisioned_kernel
    kernel = provisioned_kernel()
    if kernel is None:
        return "not provisioned"
    return f"{kernel.release} ({kernel.package} {kernel.version})"


def ovmf_entry(configured: Path | None, facts: Mapping[str, str]) -> str:
    if configured is not None:
        return str(configured)
    fact = facts.get("ovmf_code")
    if fact and fact != UNKNOWN:
        return fact
    from pytest_sev.qemu.firmware import find_ovmf
    found = find_ovmf()
    return str(found[0]) if found else "not found"


def safely(what: Callable[[], object]) -> object:
    """A fact that cannot be read is written as unknown with the reason,
    never an exception that loses the whole file."""
    try:
        return what()
    except Exception as exc:  # noqa: BLE001 - see docstring
        return f"{UNKNOWN} ({type(exc).__name__}: {exc})"


def collect(cfg, report, runner: str, accel, extra: Sequence[Mapping[str, str]] = ()) -> dict[str, object]:
    """Every entry, in the order a person reads them. ``cfg`` is the
    RunConfig, ``report`` the HostReport (or None), ``accel`` an AccelChoice."""
    facts = dict(report.facts) if report is not None else {}
    entries: dict[str, object] = {"runner": runner}
    if cfg is not None:
        entries["mode"] = cfg.mode
    if accel is not None:
        entries["accelerator"] = f"{accel.name} ({accel.reason})"
    entries.update(host_entries(facts))
    if report is not None:
        entries.update(readiness_entries(report))
    if cfg is not None:
        entries["ovmf"] = safely(lambda: ovmf_entry(cfg.ovmf_code, facts))
        entries["guest.kernel"] = safely(lambda: guest_kernel_entry(cfg.guest_kernel))
    for more in extra:
        entries.update(more or {})
    return entries


def write_environment(results_dir: Path, entries: Mapping[str, object]) -> Path:
    path = Path(results_dir) / FILENAME
    path.write_text(format_properties(entries), encoding="ascii")
    return path
