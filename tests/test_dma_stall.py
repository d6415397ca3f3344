"""pytest_sev.dma.stall: synthetic timestamps, no sleeping."""

from pathlib import Path

import pytest

from pytest_sev.dma import load
from pytest_sev.dma.stall import FINISHED, RUNNING, STALLED, Sample, StallDetector


def feed(det, samples):
    return [det.observe(Sample(*s)) for s in samples]


def test_progress_then_finish():
    det = StallDetector(10)
    states = feed(det, [(0, 0, 1), (5, 100, 2), (9, 200, 2), (30, 300, 0, True)])
    assert states == [RUNNING, RUNNING, RUNNING, FINISHED]
    assert det.done and "finished after 30.0s" in det.reason


def test_stall_fires_exactly_at_limit():
    det = StallDetector(10)
    assert feed(det, [(0, 0), (2, 50), (11.9, 50)]) == [RUNNING] * 3
    assert det.idle_seconds() == pytest.approx(9.9)
    assert det.observe(Sample(12, 50, 0)) == STALLED
    assert det.stalled_at == 12
    assert "no I/O completed for 10s" in det.reason and "stuck at 50 sectors" in det.reason
    assert "in_flight=0" in det.reason


def test_zero_in_flight_is_not_idle():
    # requeued requests are not "in flight": a real stall may show 0
    det = StallDetector(5)
    feed(det, [(0, 8, 0), (3, 8, 0)])
    assert det.observe(Sample(5, 8, 0)) == STALLED


def test_final_states_are_sticky():
    det = StallDetector(5)
    feed(det, [(0, 1), (6, 1)])
    assert det.state == STALLED
    assert det.observe(Sample(7, 999, 0, True)) == STALLED
    det2 = StallDetector(5)
    feed(det2, [(0, 1), (1, 1, 0, True)])
    assert det2.observe(Sample(100, 1)) == FINISHED


def test_silence_counts_as_no_progress():
    det = StallDetector(10)
    det.observe(Sample(0, 100))
    det.observe_silence(4)
    det.observe_silence(8)
    assert det.state == RUNNING
    assert det.observe_silence(10) == STALLED
    det = StallDetector(3)
    det.observe_silence(0)
    assert det.observe_silence(3) == STALLED and "no sample answered" in det.reason


def test_not_started_holds_the_clock():
    det = StallDetector(5)
    assert feed(det, [(0, 8, 0, False, False), (20, 8, 0, False, False)]) == [RUNNING, RUNNING]
    assert det.observe(Sample(24, 8, 0, False, True)) == RUNNING
    assert det.observe(Sample(25, 8, 0, False, True)) == STALLED


def test_time_going_back_is_an_error():
    det = StallDetector(5)
    det.observe(Sample(10, 1))
    with pytest.raises(ValueError):
        det.observe(Sample(9, 2))
    with pytest.raises(ValueError):
        StallDetector(0)


def _replay(console: str) -> StallDetector:
    """Feed a recorded console's DMAPROG lines, the guest's uptime as the clock."""
    text = (Path(__file__).resolve().parents[1] / "fixtures/recorded/dma" / console).read_text()
    det = StallDetector(30)
    for line in text.splitlines():
        if line.startswith("DMAPROG|"):
            p = load.parse_progress(line)
            if det.observe(p.sample(p.uptime_s)) != RUNNING:
                break
    return det


def test_driven_by_recorded_progress_lines():
    """The recorded 1M stalls (virtio-blk, virtio-scsi) and the 8M run that finished, replayed."""
    assert _replay("guest61-virtio-blk-1M.console.txt").state == STALLED
    det = _replay("guest61-virtio-scsi-1M.console.txt")
    assert det.state == STALLED and "in_flight=0" in det.reason

    assert _replay("guest61-virtio-blk-8M.console.txt").state == FINISHED


# -- deciding early when the kernel says the pool is full (conclusive_seconds) --

def full(t, sectors, pool_full=True):
    return Sample(t=t, sectors=sectors, in_flight=0, pool_full=pool_full)


def test_pool_full_and_idle_decides_at_the_conclusive_limit():
    det = StallDetector(20, conclusive_seconds=8)
    assert det.observe(full(0, 50)) == RUNNING
    assert det.observe(full(7.9, 50)) == RUNNING
    assert det.observe(full(8, 50)) == STALLED
    assert "limit 8s while the kernel says the SWIOTLB pool is full" in det.reason


def test_idle_without_pool_full_waits_the_full_limit():
    det = StallDetector(20, conclusive_seconds=8)
    assert det.observe(full(0, 50, pool_full=False)) == RUNNING
    assert det.observe(full(19.9, 50, pool_full=False)) == RUNNING
    assert det.observe(full(20, 50, pool_full=False)) == STALLED
    assert "limit 20s)" in det.reason


def test_pool_full_but_advancing_is_running():
    det = StallDetector(20, conclusive_seconds=8)
    states = [det.observe(full(t, 50 + t)) for t in range(0, 40, 2)]
    assert set(states) == {RUNNING}


def test_pool_full_idle_clock_restarts_at_each_advance():
    det = StallDetector(20, conclusive_seconds=8)
    feed_ = [full(0, 1), full(6, 1), full(7, 2), full(14, 2)]
    assert [det.observe(s) for s in feed_] == [RUNNING] * 4
    assert det.observe(full(15, 2)) == STALLED


def test_without_conclusive_seconds_pool_full_changes_nothing():
    det = StallDetector(20)
    assert det.observe(full(0, 5)) == RUNNING
    assert det.observe(full(19, 5)) == RUNNING
    assert det.observe(full(20, 5)) == STALLED


@pytest.mark.parametrize("bad", [0, -1, 21])
def test_conclusive_seconds_must_be_positive_and_not_longer(bad):
    with pytest.raises(ValueError):
        StallDetector(20, conclusive_seconds=bad)


def test_conclusive_equal_to_stall_seconds_is_allowed():
    assert StallDetector(20, conclusive_seconds=20).conclusive_seconds == 20


def test_progress_reads_the_pool_full_count_since_the_load_started():
    with_full = "DMAPROG|10.50 3.00|  1 0 8 5 2 0 16 4 3 9 9 0 0 0 0|7|||3|END"
    none_yet = "DMAPROG|10.50 3.00|  1 0 8 5 2 0 16 4 3 9 9 0 0 0 0|7|||0|END"
    wrapped = "DMAPROG|10.50 3.00|  1 0 8 5 2 0 16 4 3 9 9 0 0 0 0|7|||-4|END"
    older_guest = "DMAPROG|10.50 3.00|  1 0 8 5 2 0 16 4 3 9 9 0 0 0 0|7|||END"
    assert load.parse_progress(with_full).pool_full_lines == 3
    assert load.parse_progress(with_full).sample(1.0).pool_full is True
    assert load.parse_progress(none_yet).sample(1.0).pool_full is False
    assert load.parse_progress(wrapped).sample(1.0).pool_full is False  # a log that wrapped is no evidence
    assert load.parse_progress(older_guest).pool_full_lines is None
    assert load.parse_progress(older_guest).sample(1.0).pool_full is False


def test_progress_and_start_commands_count_pool_full_lines():
    assert f"grep -c '{load.POOL_FULL_TEXT}' >$D/full0;" in load.start_command("/dev/vda", load.LoadSpec(tool="fio"))
    assert "full0" in load.progress_command("/dev/vda")


# -- the detector's bookkeeping, pinned (mutation testing: scripts/mutation.sh) --

def test_a_fresh_detector_says_nothing_yet():
    det = StallDetector(10)
    assert (det.state, det.reason, det.samples, det.stalled_at) == (RUNNING, "", 0, None)
    assert det.last_in_flight is None and det.last_progress_t is None
    assert det.idle_seconds() == 0.0


def test_samples_are_counted_and_equal_timestamps_are_accepted():
    det = StallDetector(10)
    for t in (5, 5, 6):
        det.observe(Sample(t, 1))
    assert det.samples == 3
    assert det.idle_seconds() == 1.0


def test_backwards_time_is_refused_naming_both_times():
    det = StallDetector(10)
    det.observe(Sample(5, 1))
    with pytest.raises(ValueError, match="sample time went backwards: 4 < 5"):
        det.observe(Sample(4, 1))


def test_finish_reason_counts_from_the_first_sample():
    det = StallDetector(10)
    det.observe(Sample(100, 1))
    det.observe(Sample(112.5, 2, None, True))
    assert det.reason == "load finished after 12.5s"


def test_stall_reason_without_answers_or_in_flight_says_so():
    det = StallDetector(10)
    det.observe_silence(0)
    det.observe_silence(10)
    assert det.state == STALLED
    assert det.reason == "no I/O completed for 10s (limit 10s), no sample answered, in_flight=unknown, load not finished"


@pytest.mark.parametrize("kwargs, message", [
    ({"stall_seconds": 0}, "^stall_seconds must be > 0$"),
    ({"stall_seconds": 10, "conclusive_seconds": 11}, "^conclusive_seconds must be > 0 and <= stall_seconds$"),
])
def test_bad_limits_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StallDetector(**kwargs)


def test_a_conclusive_limit_below_one_second_is_allowed():
    det = StallDetector(10, conclusive_seconds=0.5)
    det.observe(full(0, 1))
    assert det.observe(full(0.5, 1)) == STALLED
