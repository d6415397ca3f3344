"""Fixtures for suites and for people writing their own.

``guest_factory`` makes guests from specs and tears every one down after the
test, on every path; logs of a guest whose test failed are kept under the
guest log directory and attached to the Allure report; logs of passing
tests are removed.  ``guest`` is one plain default guest for a whole session.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pytest_sev.config import RunConfig
from pytest_sev.errors import GuestError
from pytest_sev.guest.guest import Guest
from pytest_sev.guest.spec import GuestSpec
from pytest_sev.guest.specs import cbitpos_of, plain_spec, sev_spec
from pytest_sev.plugin.mode_table import apply_mode_table
from pytest_sev.plugin.state import host_report
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


def finish_guest(guest: Guest, keep: bool) -> None:
    """Collect evidence, attach it, shut down, and drop the logs unless kept."""
    kernel_log = None
    try:
        if guest.responsive:
            kernel_log = guest.run("dmesg", timeout=30)[0]
    except GuestError:
        pass
    finally:
        guest.close()
        attach_guest(guest, kernel_log)
        if not keep:
            shutil.rmtree(guest.workdir, ignore_errors=True)


def make_guest(cfg: RunConfig, spec: GuestSpec, workdir: Path) -> Guest:
    """A not yet started guest from the run's launcher (``--launcher``)."""
    if cfg.launcher == "libvirt":
        from pytest_sev.libvirt.guest import LibvirtGuest  # libvirt-python only when asked for
        return LibvirtGuest(spec, qemu=cfg.qemu, accel=cfg.accel, workdir=workdir)
    return Guest(spec, qemu=cfg.qemu, accel=cfg.accel, workdir=workdir)


class GuestFactory:
    """Callable that starts guests and remembers them for teardown."""

    def __init__(self, cfg: RunConfig, workroot: Path) -> None:
        self.cfg = cfg
        self.workroot = workroot
        self.guests: list[Guest] = []

    def __call__(self, spec: GuestSpec | None = None, **fields) -> Guest:
        spec = spec or plain_spec(self.cfg, **fields)
        workdir = self.workroot / f"{len(self.guests)}-{_slug(spec.name)}-{int(time.time())}"
        guest = make_guest(self.cfg, spec, workdir)
        self.guests.append(guest)
        guest.start()  # on failure the fixture's teardown still closes it
        return guest

    def finish(self, keep: bool) -> None:
        errors = []
        for guest in self.guests:
            try:
                finish_guest(guest, keep)
            except BaseException as exc:  # tear every guest down, then report
                errors.append(exc)
        if self.workroot.exists() and not any(self.workroot.iterdir()):
            self.workroot.rmdir()
        if errors:
            raise errors[0]


@pytest.fixture
def guest_factory(request: pytest.FixtureRequest, run_config: RunConfig) -> Iterator[Callable[..., Guest]]:
    """``guest_factory(spec=None, **GuestSpec fields) -> started Guest``."""
    root = _log_root(run_config, request.config) / _slug(request.node.nodeid)
    factory = GuestFactory(run_config, root)
    yield factory
    factory.finish(keep=_failed(request.node))


@contextmanager
def scoped_guest(request: pytest.FixtureRequest, cfg: RunConfig, label: str,
                 spec: GuestSpec | None = None, **fields) -> Iterator[Guest]:
    """A guest for a module- or session-scoped fixture; its logs are kept
    when any test failed while it was up."""
    factory = GuestFactory(cfg, _log_root(cfg, request.config) / _slug(label))
    failed_before = request.session.testsfailed
    try:
        yield factory(spec, **fields)
    finally:
        factory.finish(keep=request.session.testsfailed > failed_before)


@pytest.fixture(scope="session")
def guest(request: pytest.FixtureRequest, run_config: RunConfig) -> Iterator[Guest]:
    """One plain default guest shared by the session (read-only use, please)."""
    with scoped_guest(request, run_config, "session-guest") as shared:
        yield shared


def _decided_sev_guest(request: pytest.FixtureRequest, factory: GuestFactory,
                       host_rep: Any, mode_wanted: str) -> Guest:
    apply_mode_table(request.config, mode_wanted)
    return factory(sev_spec(factory.cfg, mode_wanted, cbitpos_of(host_rep)))


@pytest.fixture
def sev_es_guest(request: pytest.FixtureRequest, guest_factory: GuestFactory, host) -> Guest:
    """An SEV-ES guest, or a skip/fail decided by the mode table before any boot."""
    return _decided_sev_guest(request, guest_factory, host, "sev-es")


@pytest.fixture
def sev_guest(request: pytest.FixtureRequest, guest_factory: GuestFactory, host) -> Guest:
    """An SEV guest, or a skip/fail decided by the mode table before any boot."""
    return _decided_sev_guest(request, guest_factory, host, "sev")
