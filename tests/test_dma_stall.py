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
