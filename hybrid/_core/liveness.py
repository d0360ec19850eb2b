"""Is a worker alive, hung, or just busy? Heartbeats, judged by a failure detector.

Each worker stamps a heartbeat into its result area from a thread (so it beats while a
task computes). The pool feeds those stamps to a per-worker failure detector. When the
detector declares a worker dead, the pool looks at the process before convicting it: a
stopped process (SIGSTOP) or one making no CPU progress is hung and is killed; one still
burning CPU without beating is inside a long C call that holds the GIL, and is spared.
A worker that exits is seen at once from its process sentinel, not from missed beats.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A silent worker whose CPU time stands still this long is hung. Long enough that a worker
# starved of CPU on a crowded machine still shows a clock tick (10 ms) of progress.
NO_PROGRESS_S = 0.25


class Detector(Protocol):
    """What the pool needs of a failure detector (``hybrid.messaging.FailureDetector``)."""

    def observe(self, sent_time: float, received_at: float) -> None: ...

    def state(self, now: float) -> object: ...

    def heartbeat_interval(self) -> float: ...


@dataclass
class WorkerLiveness:
    """What the pool knows of one worker process's heartbeats."""

    detector: Detector
    pid: int
    beats_seen: int = 0
    last_beat_at: float | None = None
    cpu_ticks: int | None = None
    cpu_ticks_at: float = 0.0  # when its CPU time last moved (or was first read)
    state: str = "alive"
    spared: int = field(default=0)  # times it looked dead but was computing (GIL held)

    def observe(self, beat_count: int, sent_monotonic_s: float, now: float) -> None:
        """Feed a new stamp, if the worker wrote one since the last look."""
        if beat_count != self.beats_seen:
            self.beats_seen = beat_count
            self.last_beat_at = now
            # Same host: the worker's monotonic clock is ours, so transit is measured directly.
            self.detector.observe(sent_monotonic_s, now)

    def judge(self, pid: int, now: float) -> str:
        """Return ``"alive"``, ``"suspect"`` or ``"hung"`` for this worker now."""
        verdict = _state_name(self.detector.state(now))
        if verdict == "alive":
            self.state, self.cpu_ticks = verdict, None
            return verdict
        activity = process_activity(pid)
        ticks = None if activity is None else activity[1]
        if ticks is None or self.cpu_ticks is None or ticks > self.cpu_ticks:
            progressed = ticks is not None and self.cpu_ticks is not None
            self.cpu_ticks, self.cpu_ticks_at = ticks, now
        else:
            progressed = False
        if verdict != "dead":
            self.state = verdict
        elif activity is not None and activity[0] in "Tt":
            self.state = "hung"  # stopped by a signal or a debugger
        elif progressed or (activity is not None and activity[0] == "R"):
            # Silent but computing (a long call holding the GIL), or runnable and waiting
            # for a CPU other processes hold: neither is hung.
            self.spared += 1
            self.state = "suspect"
        elif ticks is not None and now - self.cpu_ticks_at < NO_PROGRESS_S:
            self.state = "suspect"  # not long enough without CPU to tell (a busy machine)
        else:
            self.state = "hung"
        return self.state


def _state_name(state: object) -> str:
    name = getattr(state, "name", None) or getattr(state, "value", None) or str(state)
    return str(name).lower()


def process_activity(pid: int) -> tuple[str, int] | None:
    """A process's scheduler state letter and its CPU time in clock ticks (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man proc).
    return fields[0].decode(), int(fields[11]) + int(fields[12])
