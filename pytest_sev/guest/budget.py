"""How many guests this host can hold at once, and slots to wait for.

Why: on an EPYC runner the hard limit is not CPUs but ASIDs.  The BIOS
"SEV-ES ASID Space Limit" leaves a few SEV-ES ASIDs (99 or fewer, sometimes
one), and a guest launched when none is free fails at once.  Parallel workers
(pytest-xdist) and concurrent runs on one host must therefore share one
budget: a guest that cannot get a slot *waits* (bounded, and the timeout
names the budget), it never fails for want of an ASID.

The budget (pure, :func:`budget_for`):

- plain guests: ``--max-guests`` or, by default, what the host's CPUs and
  memory hold (:func:`default_max_guests`); every guest, SEV or not, also
  takes a plain slot;
- SEV guests: SEV ASIDs (CPUID 0x8000001F: ECX - (EDX - 1)) minus those in
  use (``misc.current`` ``sev``);
- SEV-ES guests: SEV-ES ASIDs (EDX - 1) minus those in use (``sev_es``).
  Unknown counts leave that kind bounded by the plain budget only.

Slots (:class:`SlotPool`) are lock files in one directory per host, taken
with ``filelock`` (released by the OS if a worker dies), so xdist workers and
two runs at once see the same budget.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from pytest_sev.errors import GuestBudgetTimeout

log = logging.getLogger(__name__)

#: memory one default guest costs the host (1 GiB guest + QEMU and TCG overhead)
GUEST_COST_MIB = 1536


@dataclass(frozen=True)
class Budget:
    """Slots per kind, and where each number came from (for messages)."""

    plain: int
    sev: int | None
    sev_es: int | None
    reasons: Mapping[str, str]

    def size(self, kind: str) -> int:
        if kind == "plain":
            return self.plain
        limit = self.sev if kind == "sev" else self.sev_es
        return self.plain if limit is None else min(limit, self.plain)

    def describe(self, kind: str) -> str:
        return f"{kind} budget {self.size(kind)} ({self.reasons.get(kind, 'plain guest budget')})"


def default_max_guests(cpus: int, mem_mib: int) -> int:
    """Guests at once by CPUs (two per CPU: TCG guests mostly wait on I/O and
    the console) and memory (:data:`GUEST_COST_MIB` each, 80 % of RAM)."""
    by_mem = int(mem_mib * 0.8) // GUEST_COST_MIB
    return max(1, min(2 * cpus, by_mem))


def parse_misc(text: str) -> dict[str, int]:
    """``misc.current``/``misc.max`` lines (``sev 3``, ``sev_es max``) -> counts;
    ``max`` (no limit) is left out."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _count(facts: Mapping[str, str], key: str) -> int | None:
    value = facts.get(key, "")
    return int(value) if value.isdigit() else None


def budget_for(facts: Mapping[str, str], *, max_guests: int, in_use: Mapping[str, int] | None = None) -> Budget:
    """The budget from a HostReport's facts (CPUID counts) and the misc cgroup's use."""
    used = dict(in_use or {})
    reasons = {"plain": f"--max-guests {max_guests}"}
    es_total = _count(facts, "sev_es_asids")
    all_total = _count(facts, "encrypted_guests")
    sev_es = sev = None
    if es_total is not None:
        sev_es = max(0, es_total - used.get("sev_es", 0))
        reasons["sev-es"] = (f"{es_total} SEV-ES ASIDs (CPUID 0x8000001F EDX-1), "
                             f"{used.get('sev_es', 0)} in use per misc.current")
    if all_total is not None and es_total is not None:
        sev_total = max(0, all_total - es_total)
        sev = max(0, sev_total - used.get("sev", 0))
        reasons["sev"] = (f"{sev_total} SEV ASIDs (CPUID 0x8000001F ECX minus the SEV-ES range), "
                          f"{used.get('sev', 0)} in use per misc.current")
    return Budget(plain=max_guests, sev=sev, sev_es=sev_es, reasons=reasons)


def read_misc_current(root: Path = Path("/")) -> dict[str, int]:
    """ASIDs in use on this host (cgroup v2 ``misc.current``); {} when unreadable."""
    try:
        return parse_misc((root / "sys/fs/cgroup/misc.current").read_text())
    except OSError:
        return {}


def slot_dir() -> Path:
    """One directory per host (not per run or cache): ``$PYTEST_SEV_BUDGET_DIR``,
    else ``/run/lock/pytest-sev`` where writable, else a private temp dir."""
    env = os.environ.get("PYTEST_SEV_BUDGET_DIR")
    if env:
        path = Path(env)
    elif os.access("/run/lock", os.W_OK):
        path = Path("/run/lock/pytest-sev")
    else:
        path = Path(tempfile.gettempdir()) / f"pytest-sev-budget-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class Slot:
    """A held slot; :meth:`release` (or ``with``) gives it back."""

    def __init__(self, lock: FileLock, kind: str, index: int) -> None:
        self._lock, self.kind, self.index = lock, kind, index

    @property
    def path(self) -> str:
        """The lock file held (the host ledger tells a fixture's slot from a leaked one by it)."""
        return os.path.realpath(self._lock.lock_file)

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


#: the name of a slot's lock file, ``KIND-N.lock`` (the host ledger lists held ones)
SLOT_FILE = re.compile(r"^(?:plain|sev|sev-es|sev-snp)-\d+\.lock$")


def is_slot_file(name: str) -> bool:
    """True for a slot lock file's name (``plain-0.lock``), so the host ledger
    (pytest_sev/host/ledger.py) can list the slots a process holds."""
    return bool(SLOT_FILE.match(name))


class SlotPool:
    """``size`` lock files ``KIND-N.lock`` in *directory*; take any free one."""

    def __init__(self, directory: Path, kind: str, size: int, describe: str = "") -> None:
        self.directory, self.kind, self.size = directory, kind, size
        self.describe = describe or f"{kind} budget {size}"

    def acquire(self, timeout: float, poll: float = 0.25) -> Slot:
        """A free slot, waiting up to *timeout*; GuestBudgetTimeout names the budget."""
        if self.size < 1:
            raise GuestBudgetTimeout(f"no {self.kind} guest can run on this host: {self.describe}")
        started = time.monotonic()
        waited = False
        while True:
            for i in range(self.size):
                lock = FileLock(str(self.directory / f"{self.kind}-{i}.lock"))
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                if waited:
                    log.info("%s slot %d free after %.1f s", self.kind, i, time.monotonic() - started)
                return Slot(lock, self.kind, i)
            if not waited:
                log.info("waiting for a %s slot: all %d taken (%s)", self.kind, self.size, self.describe)
                waited = True
            if time.monotonic() - started >= timeout:
                raise GuestBudgetTimeout(
                    f"no {self.kind} guest slot became free within {timeout:g}s: {self.describe}; "
                    "other workers or runs on this host hold them all")
            time.sleep(poll)


#: guest kind -> the ASID range (and so the slot pool) its guests take: SEV-SNP
#: guests take SEV-ES ASIDs (KVM gives both from 1..min_sev_asid-1)
ASID_POOLS = {"sev-snp": "sev-es"}


def asid_pool(kind: str) -> str:
    """The slot pool of a guest kind: SEV-SNP shares SEV-ES's, so the two count together."""
    return ASID_POOLS.get(kind, kind)


def acquire_for(budget: Budget, kind: str, directory: Path, timeout: float) -> list[Slot]:
    """The slots a guest of *kind* needs: a plain one, plus its ASID kind's
    (an SNP guest takes an SEV-ES slot: the same ASIDs)."""
    kinds = ["plain"] if kind == "plain" else ["plain", asid_pool(kind)]
    held: list[Slot] = []
    try:
        for k in kinds:
            held.append(SlotPool(directory, k, budget.size(k), budget.describe(k)).acquire(timeout))
    except BaseException:
        for slot in held:
            slot.release()
        raise
    return held


#: QEMU's SEV INIT failure (format captured on real hosts, e.g. AMDESE/AMDSEV#215:
#: ``sev_kvm_init: failed to initialize ret=-22 fw_error=0 ''``); ret=-16 is EBUSY,
#: which KVM's sev_asid_new() returns when no ASID of the kind is free or the misc
#: cgroup's sev/sev_es limit is reached (reconstructed from the kernel source).
_SEV_INIT_FAILED = re.compile(r"sev_kvm_init: failed to initialize ret=(-?\d+)")


def asid_exhaustion(qemu_output: str) -> str | None:
    """Name ASID exhaustion in what QEMU printed, or None when it is not that."""
    m = _SEV_INIT_FAILED.search(qemu_output)
    if not m or int(m.group(1)) != -16:
        return None
    return ("SEV ASIDs exhausted: KVM refused SEV INIT with EBUSY (ret=-16), so no ASID of this kind was free "
            "or the misc cgroup limit (misc.max sev / sev_es) was reached; the guest budget only waits for "
            "ASIDs it can count, so another tenant or cgroup holds them")
