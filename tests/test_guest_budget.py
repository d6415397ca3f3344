"""The host's guest budget: sizes from CPUs, memory and ASIDs (recorded
hosts), and slots that make a guest wait, never fail, for a free ASID."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from pytest_sev.errors import GuestBudgetTimeout
from pytest_sev.guest.budget import (
    SlotPool,
    acquire_for,
    budget_for,
    default_max_guests,
    parse_misc,
)
from pytest_sev.host.recorded import load_recorded

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def test_default_by_cpus_and_memory():
    assert default_max_guests(cpus=2, mem_mib=24 * 1024) == 4  # 2 per CPU
    assert default_max_guests(cpus=128, mem_mib=16 * 1024) == 8  # memory-bound
    assert default_max_guests(cpus=1, mem_mib=512) == 1  # never zero


def test_misc_cgroup_lines():
    assert parse_misc("sev 3\nsev_es 1\n") == {"sev": 3, "sev_es": 1}
    assert parse_misc("sev max\nsev_es 0\n") == {"sev_es": 0}


def _facts(es_asids: int, total: int = 509) -> dict[str, str]:
    return {"sev_es_asids": str(es_asids), "encrypted_guests": str(total)}


@pytest.mark.parametrize("es_asids", [1, 4, 99])
def test_sev_es_budget_from_asids(es_asids):
    budget = budget_for(_facts(es_asids), max_guests=200)
    assert budget.size("sev-es") == es_asids
    assert budget.sev == 509 - es_asids and budget.size("sev") == min(509 - es_asids, 200)
    assert f"{es_asids} SEV-ES ASIDs" in budget.describe("sev-es")


def test_in_use_asids_and_the_plain_budget_bound_sev_guests():
    budget = budget_for(_facts(4), max_guests=200, in_use={"sev_es": 3})
    assert budget.size("sev-es") == 1
    assert budget_for(_facts(99), max_guests=2).size("sev-es") == 2  # every guest is a guest


def test_unknown_asid_counts_fall_back_to_the_plain_budget():
    budget = budget_for({"sev_es_asids": "unknown"}, max_guests=3)
    assert (budget.sev_es, budget.size("sev-es")) == (None, 3)


def test_recorded_ready_host_gives_its_asid_budget(tmp_path):
    report = load_recorded(HOSTS / "epyc-milan-6.8-ready", tmp_path).probe()
    budget = budget_for(report.facts, max_guests=50)
    assert budget.sev_es == int(report.facts["sev_es_asids"]) > 0


@pytest.mark.parametrize("es_asids", [1, 4, 99])
def test_guest_beyond_the_asids_waits_then_runs(tmp_path, es_asids):
    """es_asids guests hold every SEV-ES slot; the next one waits until one is
    released, then runs (it never fails for want of an ASID)."""
    budget = budget_for(_facts(es_asids), max_guests=200)
    held = [acquire_for(budget, "sev-es", tmp_path, timeout=1) for _ in range(es_asids)]
    got: list[float] = []

    def next_guest() -> None:
        t0 = time.monotonic()
        slots = acquire_for(budget, "sev-es", tmp_path, timeout=30)
        got.append(time.monotonic() - t0)
        for s in slots:
            s.release()

    waiter = threading.Thread(target=next_guest)
    waiter.start()
    time.sleep(0.6)
    assert not got, "the extra guest must wait while every SEV-ES ASID is taken"
    for s in held.pop():
        s.release()
    waiter.join(10)
    assert got and got[0] >= 0.5
    for slots in held:
        for s in slots:
            s.release()


def test_wait_times_out_naming_the_budget(tmp_path):
    budget = budget_for(_facts(1), max_guests=10)
    first = acquire_for(budget, "sev-es", tmp_path, timeout=1)
    with pytest.raises(GuestBudgetTimeout, match=r"no sev-es guest slot became free within 0.3s: sev-es budget 1 \(1 SEV-ES ASIDs"):
        acquire_for(budget, "sev-es", tmp_path, timeout=0.3)
    assert not SlotPool(tmp_path, "plain", 10).acquire(0.1).release()  # the plain slot was given back
    for s in first:
        s.release()


def test_no_asids_at_all_is_named_at_once(tmp_path):
    with pytest.raises(GuestBudgetTimeout, match="no sev-es guest can run on this host: sev-es budget 0"):
        acquire_for(budget_for(_facts(0), max_guests=4), "sev-es", tmp_path, timeout=60)


def test_bad_max_guests_is_a_start_up_error(pytester):
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    for bad in ("0", "-1", "two"):
        result = pytester.runpytest_subprocess(f"--max-guests={bad}")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*--max-guests {bad!r} is not a positive whole number*"])


def test_too_many_workers_for_the_budget_is_a_start_up_error(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest_subprocess("--max-guests=2", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*-n 2 workers holding up to 2 guests each could wait on each other for ever "
                                 "with a guest budget of 2 (--max-guests; at most 1 workers)*"])
    accepted = pytester.runpytest_subprocess("--max-guests=3", "-n", "2", "--sev-mode=off")
    assert accepted.ret == pytest.ExitCode.TESTS_FAILED  # started: its one test ran (and raised)


def test_workers_never_wait_on_each_other_for_ever():
    """Each worker may hold GUESTS_PER_WORKER guests; with one slot left over once
    every worker holds all but its last, one of them can always finish."""
    from pytest_sev.plugin.hooks import GUESTS_PER_WORKER, workers_for
    assert GUESTS_PER_WORKER == 2
    assert [workers_for(b) for b in (1, 2, 3, 4, 5, 8)] == [1, 1, 2, 3, 4, 7]
    for budget in range(1, 20):
        n = workers_for(budget)
        assert n == 1 or n * (GUESTS_PER_WORKER - 1) + 1 <= budget
        assert (n + 1) * (GUESTS_PER_WORKER - 1) + 1 > budget  # one more could deadlock


def test_asid_exhaustion_named_from_qemu_output():
    from pytest_sev.guest.budget import asid_exhaustion
    # ret=-16 reconstructed on the format of a real capture (AMDESE/AMDSEV#215 shows ret=-22)
    said = "qemu-system-x86_64: sev_kvm_init: failed to initialize ret=-16 fw_error=0 ''\n" \
           "qemu-system-x86_64: failed to initialize kvm: Device or resource busy\n"
    assert "SEV ASIDs exhausted" in (asid_exhaustion(said) or "")
    # captured (AMDESE/AMDSEV#215): EINVAL is another failure, not exhaustion
    assert asid_exhaustion("qemu-system-x86_64: sev_kvm_init: failed to initialize ret=-22 fw_error=0 ''") is None
    assert asid_exhaustion("qemu-system-x86_64: -accel kvm: failed to initialize kvm") is None


def test_auto_workers_follow_the_budget(pytester):
    """``-n auto`` asks the plugin: as many workers as the budget serves without deadlock."""
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_one(): pass")
    for budget, workers in (("1", "1/1 worker"), ("4", "3/3 workers")):
        result = pytester.runpytest_subprocess("-n", "auto", f"--max-guests={budget}", "--sev-mode=off")
        assert result.ret == 0
        result.stdout.fnmatch_lines([f"*created: {workers}*"])


def test_snp_guests_take_sev_es_slots(tmp_path):
    """SNP guests use the SEV-ES ASID range: an SNP guest and an SEV-ES guest
    count against the same slots, and an SNP guest waits like an SEV-ES one."""
    from pytest_sev.guest.budget import asid_pool
    assert (asid_pool("sev-snp"), asid_pool("sev-es"), asid_pool("sev")) == ("sev-es", "sev-es", "sev")
    budget = budget_for(_facts(1), max_guests=10)
    snp = acquire_for(budget, "sev-snp", tmp_path, timeout=1)
    assert [s.kind for s in snp] == ["plain", "sev-es"]
    with pytest.raises(GuestBudgetTimeout, match=r"no sev-es guest slot became free within 0.3s: sev-es budget 1"):
        acquire_for(budget, "sev-es", tmp_path, timeout=0.3)
    for s in snp:
        s.release()
