"""``environment.properties``: what a run's results came from.

A regression found at night is only actionable if the report says what
changed: microcode, SEV firmware, host kernel, QEMU, OVMF, guest kernel,
mode, accelerator, runner, component commits. All of it is gathered once at
session end from what the run already knows (the host report is the one
:func:`pytest_sev.plugin.state.host_report` probed; nothing is probed twice) and
written in Java properties syntax, which Allure 2 and 3 both read.

Other code adds entries through the ``pytest_sev_report_environment`` hook
(see :mod:`.hookspecs`), e.g. component commits from a build manifest.

What guests *ran* comes from their QEMU argv (:mod:`.provenance`), not from
configuration: ``ran.*`` names QEMU, OVMF, kernel, initrd and disks with
path and sha256, one block per distinct set when guests differ, and
``guest.kernel``/``ovmf`` say what booted.  Only a run in which no guest
started falls back to the configured values, and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pytest_sev.reporting.provenance import Artifact, distinct_sets

#: guest names listed per set before "and N more"
MAX_GUEST_NAMES = 8

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
    """``host.ready.sev-es=no (first failure: sev_es_firmware)`` per mode, or
    ``undetermined (could not answer: syscfg_smee)``: a check the probe could
    not answer is not a "yes"."""
    entries = {}
    for mode in ("sev-es", "sev", "sev-snp"):
        readiness = report.readiness(mode)
        if readiness.failed:
            value = f"no (first failure: {readiness.failed[0].name})"
        elif readiness.unanswered:
            value = "undetermined (could not answer: " + ", ".join(c.name for c in readiness.unanswered) + ")"
        else:
            value = "yes"
        entries[f"host.ready.{mode}"] = value
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


def _artifact_value(a: Artifact) -> str:
    extra = "; ".join(x for x in (a.detail, a.origin) if x)
    return f"{a.sha256} {a.path}" + (f" ({extra})" if extra else "")


def _names(guests: Sequence[str]) -> str:
    shown = ", ".join(guests[:MAX_GUEST_NAMES])
    more = len(guests) - MAX_GUEST_NAMES
    return f"{len(guests)}: {shown}" + (f" and {more} more" if more > 0 else "")


def kernel_summary(a: Artifact) -> str:
    """``6.1.187-sev-es (sha256 3f1c..., /path/vmlinuz)``: the release from the
    bzImage header, the exact file."""
    release = a.detail.split(";")[0].removeprefix("release ").strip() if a.detail.startswith("release ") else "?"
    return f"{release} (sha256 {a.sha256}, {a.path})"


def ran_entries(records: Sequence[Mapping]) -> dict[str, str]:
    """``ran.*`` entries from the guests' provenance records (see module doc). Pure.

    One set: ``ran.<role>``; several: ``ran.sets`` lists them and each has
    ``ran.<set>.<role>`` and ``ran.<set>.guests``.  Also ``guest.kernel`` and
    ``ovmf``: every distinct kernel / OVMF code that ran, ``; ``-separated."""
    sets = distinct_sets(records)
    if not sets:
        return {}
    entries: dict[str, str] = {}
    kernels: dict[str, str] = {}
    ovmfs: dict[str, str] = {}
    for _sid, _guests, arts in sets:
        for a in arts:
            if a.role == "kernel":
                kernels.setdefault(a.sha256, kernel_summary(a))
            elif a.role == "ovmf.code":
                ovmfs.setdefault(a.sha256, f"{a.path} (sha256 {a.sha256})")
    entries["guest.kernel"] = "; ".join(kernels.values()) or "none (no guest booted a -kernel)"
    entries["ovmf"] = "; ".join(ovmfs.values()) or "none (no guest used OVMF)"
    if len(sets) == 1:
        sid, guests, arts = sets[0]
        entries["ran.set"] = f"{sid} (guests {_names(guests)})"
        entries.update({f"ran.{a.role}": _artifact_value(a) for a in arts})
        return entries
    entries["ran.sets"] = f"{len(sets)} distinct sets: " + ", ".join(sid for sid, _, _ in sets)
    for sid, guests, arts in sets:
        entries[f"ran.{sid}.guests"] = _names(guests)
        entries.update({f"ran.{sid}.{a.role}": _artifact_value(a) for a in arts})
    return entries


def safely(what: Callable[[], object]) -> object:
    """A fact that cannot be read is written as unknown with the reason,
    never an exception that loses the whole file."""
    try:
        return what()
    except Exception as exc:  # noqa: BLE001 - see docstring
        return f"{UNKNOWN} ({type(exc).__name__}: {exc})"


def collect(cfg, report, runner: str, accel, extra: Sequence[Mapping[str, str]] = (),
            ran: Sequence[Mapping] = ()) -> dict[str, object]:
    """Every entry, in the order a person reads them. ``cfg`` is the
    RunConfig, ``report`` the HostReport (or None), ``accel`` an AccelChoice,
    ``ran`` the guests' provenance records (:func:`.provenance.session_records`,
    merged over xdist workers)."""
    facts = dict(report.facts) if report is not None else {}
    entries: dict[str, object] = {"runner": runner}
    if cfg is not None:
        entries["mode"] = cfg.mode
    if accel is not None:
        entries["accelerator"] = f"{accel.name} ({accel.reason})"
    entries.update(host_entries(facts))
    if report is not None:
        entries.update(readiness_entries(report))
    ran_ = safely(lambda: ran_entries(ran)) if ran else {}
    if isinstance(ran_, dict) and ran_:
        entries.update(ran_)
    elif cfg is not None:
        if isinstance(ran_, str):  # describing what ran failed: say so
            entries["ran"] = ran_
        entries["ovmf"] = safely(lambda: f"{ovmf_entry(cfg.ovmf_code, facts)} (configured; no guest ran)")
        entries["guest.kernel"] = safely(lambda: f"{guest_kernel_entry(cfg.guest_kernel)} (configured; no guest ran)")
    for more in extra:
        entries.update(more or {})
    return entries


def write_environment(results_dir: Path, entries: Mapping[str, object]) -> Path:
    path = Path(results_dir) / FILENAME
    path.write_text(format_properties(entries), encoding="ascii")
    return path
