"""Host left as found: the host-state ledger around every guest-booting test.

Why: nothing else checks that a test left the host as it found it.  A QEMU
never stopped, a guest-budget slot never given back, an ASID still charged, a
changed ``kvm_amd`` parameter or an SEV/KVM/ccp error in the host kernel log
passes the test that caused it and breaks a later one.  So, for each test
that boots guests (it asks for a guest fixture, directly or through another
fixture, or is marked ``qemu``):

* the autouse fixture :func:`_sev_host_ledger` takes a
  :class:`~pytest_sev.host.ledger.Snapshot` when it is set up: after the
  fixtures of wider scope (module and session guests are already up, so they
  are not new), before every function-scoped fixture (autouse fixtures of a
  plugin come first);
* on teardown, after the test's function-scoped fixtures are finalized (they
  were set up after it, so they are torn down before it), it takes another,
  compares them (:func:`pytest_sev.host.ledger.diff`), attaches the ledger
  (before, after, diff, unknowns) to the Allure report, and fails the
  teardown naming each leak (``left behind: QEMU pid 1234 (argv ...)``).

What a fixture of wider scope holds (the session's shared guest is started
on first use, inside a test) is not the test's leak: it is read off those
fixtures' values and shown as a note.  An entry that cannot be read is
"could not compare", never a leak and never a clean bill.

``sev_ledger = false`` (ini, or ``-o sev_ledger=false``) turns it off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_sev.guest.budget import is_slot_file, slot_dir
from pytest_sev.host.ledger import Exempt, KmsgCursor, diff, format_ledger, snapshot
from pytest_sev.plugin import sinks

log = logging.getLogger(__name__)

INI_ENABLE = "sev_ledger"
ATTACHMENT_NAME = "host ledger"
#: fixtures that boot guests; a test needing any of them (directly or through
#: another fixture: pytest's closure) gets the ledger
GUEST_FIXTURES = frozenset({"guest", "guest_factory", "sev_guest", "sev_es_guest", "sev_snp_guest",
                            "_sev_shared_guest"})


def enabled(config: pytest.Config) -> bool:
    try:
        return bool(config.getini(INI_ENABLE))
    except ValueError:  # the ini key is not registered (the core plugin is off)
        return False


def boots_guests(item: pytest.Item) -> bool:
    """True for a test that boots guests: marked ``qemu``, or asking for a guest fixture."""
    if item.get_closest_marker("qemu") is not None:
        return True
    return bool(GUEST_FIXTURES & set(getattr(item, "fixturenames", ())))


def holdings(value: Any) -> tuple[dict[int, Any], dict[str, Any]]:
    """(QEMU pids, slot lock files) a fixture value holds: a shared guest
    (``factory``), a guest factory (``guests`` and ``slots``) or a guest (``process``)."""
    pids: dict[int, Any] = {}
    slots: dict[str, Any] = {}
    factory = getattr(value, "factory", None)
    if factory is not None and hasattr(factory, "guests"):
        value = factory
    guests = list(getattr(value, "guests", None) or [])
    if not guests and getattr(value, "process", None) is not None:
        guests = [value]
    for guest in guests:
        pid = getattr(getattr(guest, "process", None), "pid", None)
        if isinstance(pid, int):
            pids[pid] = guest
    for slot in list(getattr(value, "slots", None) or []):
        path = getattr(slot, "path", None)
        if isinstance(path, str):
            slots[path] = slot
    return pids, slots


def outliving_fixtures(item: pytest.Item) -> list[tuple[str, str, Any]]:
    """(name, scope, value) of the test's fixtures of wider scope that are still set up."""
    info = getattr(item, "_fixtureinfo", None)
    out = []
    for name, defs in (getattr(info, "name2fixturedefs", None) or {}).items():
        if not defs:
            continue
        fixturedef = defs[-1]
        scope = str(getattr(fixturedef, "scope", "function"))
        cached = getattr(fixturedef, "cached_result", None)
        if scope == "function" or not cached or cached[0] is None:
            continue
        out.append((name, scope, cached[0]))
    return out


def exempt_of(item: pytest.Item) -> Exempt:
    """What fixtures that outlive the test hold: theirs, not the test's leak."""
    pids: dict[int, str] = {}
    slots: dict[str, str] = {}
    for name, scope, value in outliving_fixtures(item):
        held_pids, held_slots = holdings(value)
        who = f"fixture {name} ({scope} scope)"
        pids.update(dict.fromkeys(held_pids, who))
        slots.update(dict.fromkeys(held_slots, who))
    return Exempt(pids=pids, slots=slots)


def _attach(config: pytest.Config, text: str) -> None:
    """The ledger into the Allure report; a results sink that fails never stops the run."""
    try:
        import allure
        allure.attach(text, name=ATTACHMENT_NAME, attachment_type=allure.attachment_type.TEXT)
    except OSError as exc:
        sinks.sink_failed(config, "allure results", sinks.why(exc))
    except Exception as exc:  # allure not installed or not set up: the ledger still decides
        log.debug("host ledger: not attached: %s", exc)


def _slot_directory() -> Any:
    try:
        return slot_dir()
    except OSError as exc:  # no budget directory: our own slots are still found through our files
        log.info("host ledger: no guest budget directory (%s)", sinks.why(exc))
        return None


@pytest.fixture(autouse=True)
def _sev_host_ledger(request: pytest.FixtureRequest) -> Iterator[None]:
    """Snapshot the host before a guest-booting test and after its teardown;
    fail the teardown naming what it left behind."""
    item = request.node
    if not isinstance(item, pytest.Item) or not enabled(request.config) or not boots_guests(item):
        yield
        return
    directory = _slot_directory()
    cursor = KmsgCursor()
    try:
        before = snapshot(directory, is_slot_file, cursor=cursor, before=True)
        yield
        after = snapshot(directory, is_slot_file, cursor=cursor, before=False)
    finally:
        cursor.close()
    result = diff(before, after, exempt_of(item))
    text = format_ledger(before, after, result)
    _attach(request.config, text)
    for line in result.could_not:
        log.info("host ledger of %s: %s", item.nodeid, line)
    if result.leaks:
        log.warning("host ledger of %s (pid %d): %s", item.nodeid, os.getpid(), "; ".join(result.leaks))
        pytest.fail("the test left the host changed:\n" + "\n".join(f"  {leak}" for leak in result.leaks),
                    pytrace=False)
