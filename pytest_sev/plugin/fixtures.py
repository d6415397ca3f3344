"""Fixtures for suites and for people writing their own.

``guest_factory`` makes guests from specs and tears every one down after the
test, on every path; logs of a guest whose test failed are kept under the
guest log directory and attached to the Allure report; logs of passing
tests are removed.  ``guest`` is one plain default guest shared by the
session, replaced before a test when an earlier test left it unusable (a
command that timed out, a dead shell, a desynchronised console, a lost QMP
connection, QEMU gone): the old one is torn down with its logs kept, and the
new one's ``harness.log`` says what it replaced and why.

A guest log directory that fills up mid-run is reported once
(:mod:`.sinks`); guests then run in a temporary directory, still torn down.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_sev.config import RunConfig
from pytest_sev.errors import GuestError, SpecError
from pytest_sev.guest.budget import Slot, acquire_for, slot_dir
from pytest_sev.guest.guest import Guest, new_log_dir
from pytest_sev.guest.specs import cbitpos_of, plain_spec, reduced_phys_bits_of, sev_spec, snp_spec
from pytest_sev.model.spec import GuestSpec
from pytest_sev.modes import GUEST_KINDS
from pytest_sev.plugin import sinks
from pytest_sev.plugin.mode_table import guard_guest
from pytest_sev.plugin.state import guest_budget, host_report
from pytest_sev.plugin.state import run_config as _run_config
from pytest_sev.reporting.guest_attach import attach_guest


@pytest.fixture(scope="session")
def run_config(request: pytest.FixtureRequest) -> RunConfig:
    """The run's RunConfig, with fields other plugins decide (the build plugin:
    QEMU/OVMF/kernel from ``--components``, see ``pytest_sev_config_overrides``);
    an explicit --qemu/--ovmf-*/--guest-kernel wins."""
    cfg = _run_config(request.config)
    defaults = RunConfig()
    over: dict[str, Any] = {}
    for answer in request.config.hook.pytest_sev_config_overrides(request=request):
        over.update({k: v for k, v in (answer or {}).items() if getattr(cfg, k) == getattr(defaults, k)})
    return dataclasses.replace(cfg, **over) if over else cfg


@pytest.fixture(scope="session")
def host(pytestconfig: pytest.Config):
    """HostReport of this machine (see :mod:`pytest_sev.host`)."""
    return host_report(pytestconfig)


def _log_root(cfg: RunConfig, config: pytest.Config) -> Path:
    root = cfg.log_dir if cfg.log_dir.is_absolute() else Path(config.rootpath) / cfg.log_dir
    return root


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-120:]


def _failed(item: pytest.Item) -> bool:
    return any(getattr(getattr(item, f"sev_rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


SinkFailed = Callable[[Path, str], None]


def _no_sink_report(directory: Path, why: str) -> None:
    pass


def finish_guest(guest: Guest, keep: bool, sink_failed: SinkFailed = _no_sink_report) -> None:
    """Collect evidence, attach it, shut down, and drop the logs unless kept."""
    kernel_log = None
    try:
        if guest.healthy():  # a frozen QEMU is not asked (teardown stays within seconds)
            kernel_log = guest.run("dmesg", timeout=30)[0]
    except GuestError:
        pass
    finally:
        guest.close()
        broken = [getattr(guest.console, "log_broken", None), getattr(guest.qmp, "transcript_broken", None)]
        for why in filter(None, broken):
            sink_failed(guest.workdir.parent, why)
        try:
            attach_guest(guest, kernel_log)
        except OSError as exc:  # a results sink that fails must not stop the teardown
            sink_failed(guest.workdir, sinks.why(exc))
        if not keep:
            shutil.rmtree(guest.workdir, ignore_errors=True)


def kind_of(spec: GuestSpec) -> str:
    """The guest kind a spec launches: what the mode table and the budget go by."""
    launch = spec.snp or spec.sev
    return launch.mode if launch is not None else "plain"


def encrypted_spec(cfg: RunConfig, kind: str, report: Any, **fields: Any) -> GuestSpec:
    """The spec of an SEV, SEV-ES or SEV-SNP guest on this host (its C-bit, and
    for SNP its reduced-phys-bits, from the host report; None: no report)."""
    cbitpos = cbitpos_of(report) if report is not None else None
    if kind == "sev-snp":
        return snp_spec(cfg, cbitpos, reduced_phys_bits_of(report) if report is not None else None, **fields)
    return sev_spec(cfg, kind, cbitpos, **fields)


def make_guest(cfg: RunConfig, spec: GuestSpec, workdir: Path | None) -> Guest:
    """A not yet started guest from the run's launcher (``--launcher``)."""
    if cfg.launcher == "libvirt":
        from pytest_sev.libvirt.guest import LibvirtGuest  # libvirt-python only when asked for
        return LibvirtGuest(spec, qemu=cfg.qemu, accel=cfg.accel, workdir=workdir)
    return Guest(spec, qemu=cfg.qemu, accel=cfg.accel, workdir=workdir)


class GuestFactory:
    """Callable that starts guests and remembers them for teardown.

    ``sink_failed(directory, why)`` hears about log directories that cannot
    be written; the guest then runs in a temporary directory instead.
    ``config``: the session's, for the host budget (None: a factory used
    outside a session, no budget)."""

    def __init__(self, cfg: RunConfig, workroot: Path, config: pytest.Config | None = None,
                 sink_failed: SinkFailed = _no_sink_report) -> None:
        self.cfg = cfg
        self.workroot = workroot
        self.config = config
        # every failure is the log directory's (one warning for the run, not one per test)
        self.sink_failed: SinkFailed = lambda directory, why: sink_failed(workroot.parent, why)
        self.guests: list[Guest] = []
        self.slots: list[Slot] = []
        self._slots_of: dict[int, list[Slot]] = {}
        self._made = 0

    def _workdir(self, spec: GuestSpec) -> Path | None:
        workdir = None
        try:  # one directory per guest, never shared with another worker's or run's guest
            workdir = new_log_dir(self.workroot, _slug(spec.name), self._made)
            (workdir / "harness.log").touch()
        except OSError as exc:
            self.sink_failed(self.workroot, sinks.why(exc))
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
            return None  # Guest makes (and removes) a temporary one
        return workdir

    def __call__(self, spec: GuestSpec | None = None, *, kind: str = "plain",
                 before_boot: Callable[[Any], Any] | None = None, **fields) -> Guest:
        """Start a guest from *spec*, else from *kind* ("plain", "sev", "sev-es",
        "sev-snp") and GuestSpec *fields*. An encrypted guest goes through the mode table
        first (skip, or a failure naming the host check), before its spec is
        assembled or any room on the host is taken."""
        spec = self._spec(spec, kind, fields)
        slots: list[Slot] = []
        if self.config is not None:  # wait for room on the host (CPUs, memory, ASIDs)
            kind = kind_of(spec)
            slots = list(acquire_for(guest_budget(self.config, kind), kind, slot_dir(),
                                     timeout=self.cfg.guest_timeout))
            self.slots += slots
        guest = make_guest(self.cfg, spec, self._workdir(spec))
        self._slots_of[id(guest)] = slots
        self._made += 1
        self.guests.append(guest)
        if before_boot is not None:  # a paused spec: the caller acts before the first instruction
            guest.start(before_boot=before_boot)
        else:
            guest.start()  # on failure the fixture's teardown still closes it
        return guest

    def _spec(self, spec: GuestSpec | None, kind: str, fields: dict[str, Any]) -> GuestSpec:
        if kind != "plain" and kind not in GUEST_KINDS:
            raise SpecError(f"guest kind {kind!r}: expected plain, {', '.join(GUEST_KINDS)}")
        if spec is not None and kind != "plain":
            raise SpecError("give guest_factory a spec or a kind, not both")
        wants = kind_of(spec) if spec is not None else kind
        if wants != "plain" and self.config is not None:  # outside a session there is no mode to apply
            guard_guest(self.config, wants)
        if spec is not None:
            return spec
        if kind == "plain":
            return plain_spec(self.cfg, **fields)
        report = host_report(self.config) if self.config is not None else None
        return encrypted_spec(self.cfg, kind, report, **fields)

    def retire(self, guest: Guest) -> None:
        """Tear one guest down now (logs kept: something made it unusable)."""
        self.guests.remove(guest)
        try:
            finish_guest(guest, keep=True, sink_failed=self.sink_failed)
        finally:
            for slot in self._slots_of.pop(id(guest), []):  # its room on the host is free again
                slot.release()
                self.slots.remove(slot)

    def finish(self, keep: bool) -> None:
        errors = []
        for guest in self.guests:
            try:
                finish_guest(guest, keep, self.sink_failed)
            except BaseException as exc:  # tear every guest down, then report
                errors.append(exc)
        for slot in self.slots:
            slot.release()
        self.slots.clear()
        try:
            if self.workroot.exists() and not any(self.workroot.iterdir()):
                self.workroot.rmdir()
        except OSError:
            pass
        if errors:
            raise errors[0]


def _sink_reporter(config: pytest.Config) -> SinkFailed:
    return lambda directory, why: sinks.sink_failed(config, directory, why)


@pytest.fixture
def guest_factory(request: pytest.FixtureRequest, run_config: RunConfig) -> Iterator[Callable[..., Guest]]:
    """``guest_factory(spec=None, *, kind="plain", **GuestSpec fields) -> started Guest``;
    an SEV, SEV-ES or SEV-SNP spec (or kind) is decided by the mode table first."""
    root = _log_root(run_config, request.config) / _slug(request.node.nodeid)
    factory = GuestFactory(run_config, root, request.config, _sink_reporter(request.config))
    yield factory
    factory.finish(keep=_failed(request.node))


@contextmanager
def scoped_guest(request: pytest.FixtureRequest, cfg: RunConfig, label: str,
                 spec: GuestSpec | None = None, **fields) -> Iterator[Guest]:
    """A guest for a module- or session-scoped fixture; its logs are kept
    when any test failed while it was up."""
    factory = GuestFactory(cfg, _log_root(cfg, request.config) / _slug(label), request.config,
                           _sink_reporter(request.config))
    failed_before = request.session.testsfailed
    try:
        yield factory(spec, **fields)
    finally:
        factory.finish(keep=request.session.testsfailed > failed_before)


class SharedGuest:
    """The session's shared guest: started on first use, replaced when unusable."""

    def __init__(self, factory: GuestFactory) -> None:
        self.factory = factory
        self.current: Guest | None = None
        self.replaced: list[tuple[str, str]] = []  # (old guest's workdir, why)

    def get(self) -> Guest:
        old = self.current
        if old is not None and old.healthy():
            return old
        why = None
        if old is not None:
            why = old.unusable or ("it never finished booting" if old.boot_seconds is None
                                   else "it stopped answering")
            self.current = None
            try:
                self.factory.retire(old)
            except BaseException as exc:  # noqa: BLE001 - a failed teardown must not keep the old one
                why += f" (its teardown failed: {type(exc).__name__}: {exc})"
            self.replaced.append((str(old.workdir), why))
        self.current = self.factory()
        if why is not None:
            self.current.note(f"replaces shared guest {old.workdir if old else '?'}: {why}")
        return self.current


@pytest.fixture(scope="session")
def _sev_shared_guest(request: pytest.FixtureRequest, run_config: RunConfig) -> Iterator[SharedGuest]:
    factory = GuestFactory(run_config, _log_root(run_config, request.config) / "session-guest",
                           request.config, _sink_reporter(request.config))
    failed_before = request.session.testsfailed
    shared = SharedGuest(factory)
    try:
        yield shared
    finally:
        factory.finish(keep=request.session.testsfailed > failed_before or bool(shared.replaced))


@pytest.fixture
def guest(_sev_shared_guest: SharedGuest) -> Guest:
    """One plain default guest shared by the session (read-only use, please).

    A test that leaves it unusable (a command timed out and may still run,
    its shell died, QMP was lost) fails; the next test gets a fresh one."""
    return _sev_shared_guest.get()


def _decided_sev_guest(request: pytest.FixtureRequest, factory: GuestFactory,
                       host_rep: Any, mode_wanted: str) -> Guest:
    # decided before the spec: a host without a C-bit skips or fails by the table, not by a SpecError
    guard_guest(request.config, mode_wanted)
    return factory(encrypted_spec(factory.cfg, mode_wanted, host_rep))


@pytest.fixture
def sev_snp_guest(request: pytest.FixtureRequest, guest_factory: GuestFactory, host) -> Guest:
    """An SEV-SNP guest, or a skip/fail decided by the mode table before any boot."""
    return _decided_sev_guest(request, guest_factory, host, "sev-snp")


@pytest.fixture
def sev_es_guest(request: pytest.FixtureRequest, guest_factory: GuestFactory, host) -> Guest:
    """An SEV-ES guest, or a skip/fail decided by the mode table before any boot."""
    return _decided_sev_guest(request, guest_factory, host, "sev-es")


@pytest.fixture
def sev_guest(request: pytest.FixtureRequest, guest_factory: GuestFactory, host) -> Guest:
    """An SEV guest, or a skip/fail decided by the mode table before any boot."""
    return _decided_sev_guest(request, guest_factory, host, "sev")
