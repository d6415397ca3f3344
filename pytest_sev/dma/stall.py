"""Stall detection as a pure state machine over progress samples.

Why: a SWIOTLB stall is silent (measured-here.md: no error printed, the load
never returns, dd cannot be killed). The only evidence is that completed work
stops growing. Keeping the detector free of clocks and I/O lets tests drive it
with synthetic timestamps and lets the suite feed it whatever it sampled.

How to drive it::

    det = StallDetector(stall_seconds=60)
    while det.state == RUNNING:
        try:
            p = load.parse_progress(guest.run(load.progress_command(dev), timeout=10))
            det.observe(p.sample(time.monotonic()))
        except (TimeoutError, ValueError):          # guest did not answer
            det.observe_silence(time.monotonic())
        sleep(2)
    # det.state is FINISHED or STALLED; det.reason says why

Rules:
- progress = the completed-sector counter changed (reads + writes);
  ``in_flight`` is only reported, never trusted: requests requeued because
  the pool is full are not counted in flight, so a stall may show 0;
- the stall clock starts at the first sample, restarts at every advance and
  while the load has not ``started`` its timed part (pattern generation);
- ``finished`` wins when seen before the stall fired; both end states are
  final (a load that resumes after ``stall_seconds`` of silence has still
  stalled, and the suite stops sampling anyway);
- timestamps must not go backwards (ValueError);
- with ``conclusive_seconds`` set, a load decides sooner when the evidence
  is conclusive: a sample that shows the pool overflowing (``pool_full``:
  the kernel printed "swiotlb buffer is full" during this load) and no I/O
  completed for ``conclusive_seconds`` is a stall at once. Why this is
  honest: a throttled 4 MiB request completes in a fraction of a second, so
  seconds without one completed sector while the kernel says the pool
  refused mappings is the stall itself, and waiting the full
  ``stall_seconds`` only costs time. Without that evidence the full limit
  applies, and the classifier still demands the exhaustion evidence before
  it calls the outcome a stall.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = "running"
FINISHED = "finished"
STALLED = "stalled"


@dataclass(frozen=True)
class Sample:
    t: float  # seconds, any monotonic origin
    sectors: int | None  # completed sectors so far; None = no answer
    in_flight: int | None = None
    finished: bool = False
    started: bool = True
    pool_full: bool = False  # the kernel said "swiotlb buffer is full" during this load


class StallDetector:
    def __init__(self, stall_seconds: float, conclusive_seconds: float | None = None) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be > 0")
        if conclusive_seconds is not None and not 0 < conclusive_seconds <= stall_seconds:
            raise ValueError("conclusive_seconds must be > 0 and <= stall_seconds")
        self.stall_seconds = float(stall_seconds)
        self.conclusive_seconds = conclusive_seconds
        self.state = RUNNING
        self.reason = ""
        self.samples = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.last_progress_t: float | None = None
        self.last_sectors: int | None = None
        self.last_in_flight: int | None = None
        self.stalled_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def idle_seconds(self) -> float:
        """Seconds since the last advance (0 before the first sample)."""
        if self.last_t is None or self.last_progress_t is None:  # pragma: no mutate, both are set by the first sample
            return 0.0
        return self.last_t - self.last_progress_t

    def observe_silence(self, t: float) -> str:
        """The guest did not answer the progress command: no progress at ``t``."""
        return self.observe(Sample(t=t, sectors=None))

    def observe(self, s: Sample) -> str:
        """Feed one sample; returns the (possibly new) state."""
        if self.last_t is not None and s.t < self.last_t:
            raise ValueError(f"sample time went backwards: {s.t} < {self.last_t}")
        if self.done:
            return self.state
        self.samples += 1
        self.last_t = s.t
        if self.first_t is None:
            self.first_t = s.t
            self.last_progress_t = s.t
        if s.in_flight is not None:
            self.last_in_flight = s.in_flight
        if s.finished:
            self.state = FINISHED
            self.reason = f"load finished after {s.t - self.first_t:.1f}s"
            return self.state
        advanced = s.sectors is not None and (self.last_sectors is None or s.sectors != self.last_sectors)
        if s.sectors is not None:
            if self.last_sectors is not None and advanced:
                self.last_progress_t = s.t
            self.last_sectors = s.sectors
        if not s.started:
            self.last_progress_t = s.t
        idle = s.t - (self.last_progress_t if self.last_progress_t is not None else s.t)  # pragma: no mutate, set above
        limit = self.stall_seconds
        if s.pool_full and self.conclusive_seconds is not None:
            limit = self.conclusive_seconds
        if idle >= limit:
            self.state = STALLED
            self.stalled_at = s.t
            fl = "unknown" if self.last_in_flight is None else str(self.last_in_flight)
            at = "no sample answered" if self.last_sectors is None else f"stuck at {self.last_sectors} sectors"
            why = ("while the kernel says the SWIOTLB pool is full" if limit < self.stall_seconds
                   else "")  # pragma: no mutate, message text only
            self.reason = (
                f"no I/O completed for {idle:.0f}s (limit {limit:.0f}s{' ' + why if why else ''}), "
                f"{at}, in_flight={fl}, load not finished"
            )
        return self.state
