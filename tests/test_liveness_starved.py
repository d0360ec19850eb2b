"""A worker starved of CPU by other processes is not convicted as hung.

Nothing real starves a process on demand, so the process's /proc reading is stubbed: the
regression was a healthy worker killed as "hung" on an overloaded machine (silent, no CPU
progress, but runnable, state R), which failed its caller's task with WorkerCrashed.
"""

from __future__ import annotations

import pytest

from hybrid._core import liveness as _liveness
from hybrid._core.liveness import WorkerLiveness
from hybrid.messaging import PeerState


class Silent:
    """A detector that has given up on the worker."""

    def observe(self, sent_time: float, received_at: float) -> None:
        pass

    def state(self, now: float) -> PeerState:
        return PeerState.DEAD

    def heartbeat_interval(self) -> float:
        return 0.02


@pytest.mark.parametrize(
    ("scheduler_state", "verdict"),
    [("R", "suspect"), ("S", "hung"), ("D", "hung"), ("T", "hung")],
)
def test_only_a_runnable_silent_worker_without_cpu_progress_is_spared(
    monkeypatch: pytest.MonkeyPatch, scheduler_state: str, verdict: str
) -> None:
    monkeypatch.setattr(_liveness, "process_activity", lambda pid: (scheduler_state, 100))
    liveness = WorkerLiveness(Silent(), pid=12345)
    # CPU time that stands still for NO_PROGRESS_S settles it (a stopped one at once).
    looks = [1.0 + 0.1 * step for step in range(int(_liveness.NO_PROGRESS_S / 0.1) + 2)]
    verdicts = [liveness.judge(12345, now) for now in looks]
    assert verdicts[-1] == verdict
    assert set(verdicts) <= {"suspect", verdict}
