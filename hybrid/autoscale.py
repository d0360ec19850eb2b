"""The autoscaling policy: from measured pressure to decisions, each with its reason.

:class:`Autoscaler` is pure and deterministic: it does no I/O, reads no clock and starts
no task. The engine feeds it, once per sample and per pool, a :class:`ResourceSample`
(from a :class:`~hybrid.resources.ResourceMonitor`), the pool's :class:`PoolLoad` and the
time; it returns the :class:`Decision`\\ s to carry out now:

=========  =========================================================================
action     what the engine does
=========  =========================================================================
GROW       resize the pool to ``decision.workers`` (larger)
SHRINK     resize the pool to ``decision.workers`` (smaller; workers finish first)
PAUSE      stop handing queued work to workers (callers wait, or get ``Overloaded``)
RESUME     hand queued work to workers again
RECYCLE    replace worker ``decision.pid`` once its current task is done
KILL       kill worker ``decision.pid`` now and run its task again (not its fault)
=========  =========================================================================

The rules, with their defaults in :class:`AutoscaleConfig`:

* backlog (every worker busy, queued tasks >= ``backlog_per_worker`` per worker) held for
  ``grow_after_s`` while CPU is below ``grow_below_cpu_percent``: grow toward the cap;
* CPU above ``busy_cpu_percent`` with at least ``outside_cpu_percent`` of it used outside
  the engine (other tenants, steal), held ``outside_after_s``: the cap drops to
  ``max(min_workers, floor(cores * shrink_fraction))`` and the pool shrinks to it; the cap
  is lifted after ``calm_after_s`` of calm;
* nothing queued or running for ``idle_shrink_after_s``: shrink to ``min_workers``;
* memory at ``memory_high_percent``: pause, and recycle the largest worker (one every
  ``recycle_interval_s``) until memory is under ``memory_low_percent``, then resume;
  at ``memory_hard_percent``, kill the largest worker instead (its task is retried);
* a worker whose RSS passes ``max_rss_bytes``: recycle it after its current task.

Two resizes are always at least ``cooldown_s`` apart, and every threshold has a gap
between its on and off levels, so the pool never flaps. Every decision is counted under
its :attr:`Decision.key` (``"grow.backlog"``, ``"pause.memory_high"``...).
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .machine import usable_cpus
from .resources import ProcessSample, ResourceSample

MIB = 1 << 20


class Action(enum.Enum):
    """What the engine is asked to do (see the module's table)."""

    GROW = "grow"
    SHRINK = "shrink"
    PAUSE = "pause"
    RESUME = "resume"
    RECYCLE = "recycle"
    KILL = "kill"


class Cause(enum.Enum):
    """Why: the rule that fired."""

    BACKLOG = "backlog"
    IDLE = "idle"
    OUTSIDE_CPU = "outside_cpu"
    MEMORY_HIGH = "memory_high"
    MEMORY_LOW = "memory_low"
    MEMORY_HARD = "memory_hard"
    WORKER_RSS = "worker_rss"


@dataclass(frozen=True)
class Decision:
    """One thing to do, and why.

    Attributes:
        action: what to do.
        cause: the rule that fired.
        reason: a sentence with the figures behind it, for the log.
        at_s: the time the decision was made (the ``now_s`` it was given).
        workers: the new pool size, for GROW and SHRINK.
        pid: the worker to act on, for RECYCLE and KILL.
    """

    action: Action
    cause: Cause
    reason: str
    at_s: float
    workers: int | None = None
    pid: int | None = None

    @property
    def key(self) -> str:
        """``"action.cause"``, the name it is counted under."""
        return f"{self.action.value}.{self.cause.value}"


@dataclass(frozen=True)
class PoolLoad:
    """What one pool is doing, as the engine sees it.

    Attributes:
        workers: the pool's size as last set (slots not being removed), not only the
            live ones: a worker still starting counts.
        busy: workers running something.
        queued: tasks waiting for a worker.
        pids: the pool's worker processes (RECYCLE and KILL choose among them).
    """

    workers: int
    busy: int
    queued: int
    pids: Collection[int] = ()


@dataclass(frozen=True)
class AutoscaleConfig:
    """The policy's settings; the defaults suit a pool of CPU-bound tasks.

    Args:
        min_workers / max_workers: the size range the policy resizes within; ``max_workers``
            None means ``cores``. (A pool started larger is not shrunk for being so.)
        cores: CPUs the engine may use; None means :func:`hybrid.usable_cpus`.
        cooldown_s: least time between two resizes.
        backlog_per_worker: queued tasks per worker that make a backlog.
        grow_after_s: how long a backlog must last before growing.
        grow_below_cpu_percent: CPU has room for more workers below this.
        busy_cpu_percent / outside_cpu_percent: CPU above the first, with at least the
            second used outside the engine, is another tenant's pressure.
        outside_after_s: how long that pressure must last before shrinking.
        calm_cpu_percent / calm_outside_percent: CPU below the first, or outside use
            below the second, is calm.
        calm_after_s: how long calm must last before the cap is lifted.
        shrink_fraction: the cap under outside pressure, as a fraction of ``cores``.
        idle_shrink_after_s: shrink an idle pool to ``min_workers`` after this long;
            None never does.
        memory_high_percent / memory_low_percent: pause at the first, resume under the
            second (percent of :attr:`SystemSample.memory_total_bytes`).
        memory_hard_percent: kill the largest worker at this.
        recycle_interval_s: least time between two recycles or kills for memory.
        recycle_min_rss_bytes: a worker smaller than this is not recycled for memory
            pressure (a fresh worker would be no smaller).
        max_rss_bytes: recycle a worker whose RSS passes this; None: no limit.
    """

    min_workers: int = 1
    max_workers: int | None = None
    cores: int | None = None
    cooldown_s: float = 5.0
    backlog_per_worker: float = 1.0
    grow_after_s: float = 0.5
    grow_below_cpu_percent: float = 90.0
    busy_cpu_percent: float = 70.0
    outside_cpu_percent: float = 20.0
    outside_after_s: float = 2.0
    calm_cpu_percent: float = 50.0
    calm_outside_percent: float = 10.0
    calm_after_s: float = 10.0
    shrink_fraction: float = 0.8
    idle_shrink_after_s: float | None = 60.0
    memory_high_percent: float = 80.0
    memory_low_percent: float = 70.0
    memory_hard_percent: float = 95.0
    recycle_interval_s: float = 1.0
    recycle_min_rss_bytes: int = 64 * MIB
    max_rss_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.min_workers < 1:
            raise ValueError(f"min_workers must be >= 1, not {self.min_workers!r}")
        if self.max_workers is not None and self.max_workers < self.min_workers:
            raise ValueError("max_workers must be >= min_workers")
        if not self.memory_low_percent < self.memory_high_percent <= self.memory_hard_percent:
            raise ValueError("memory levels must rise: low < high <= hard")
        if not self.calm_cpu_percent < self.busy_cpu_percent:
            raise ValueError("calm_cpu_percent must be below busy_cpu_percent")
        if not self.calm_outside_percent < self.outside_cpu_percent:
            raise ValueError("calm_outside_percent must be below outside_cpu_percent")
        if not 0 < self.shrink_fraction <= 1:
            raise ValueError("shrink_fraction must be in (0, 1]")


@dataclass(frozen=True)
class AutoscaleState:
    """The policy's view now, for ``engine.stats()``.

    Attributes:
        cap: the most workers allowed now (lower under outside CPU pressure).
        paused: intake is paused for memory.
        outside_pressure: the cap is lowered for another tenant's CPU use.
        decisions: how many decisions of each :attr:`Decision.key` were made.
        last_decision: the key of the last decision (the rule that acted last, e.g.
            ``"shrink.outside_cpu"``); None before the first.
        last_reason: that decision's reason, in words.
    """

    cap: int
    paused: bool
    outside_pressure: bool
    decisions: dict[str, int]
    last_decision: str | None = None
    last_reason: str | None = None


class Autoscaler:
    """The policy for one pool. Not thread-safe; call from the event loop.

    Args:
        config: the settings; the defaults when omitted.
    """

    def __init__(self, config: AutoscaleConfig | None = None) -> None:
        self.config = config = config or AutoscaleConfig()
        self.cores = config.cores or usable_cpus()
        self.max_workers = max(config.min_workers, config.max_workers or self.cores)
        self.pressure_cap = max(
            config.min_workers,
            min(self.max_workers, math.floor(self.cores * config.shrink_fraction)),
        )
        self.counts: Counter[str] = Counter()
        self.last_decision: Decision | None = None
        self.paused = False
        self.outside_pressure = False
        self._last_resize_s: float | None = None
        self._last_memory_action_s: float | None = None
        self._since_s: dict[str, float] = {}  # condition name -> when it began to hold
        self._recycled: set[int] = set()  # pids already asked to go after their task
        self._killed: set[int] = set()  # pids already killed

    @property
    def cap(self) -> int:
        return self.pressure_cap if self.outside_pressure else self.max_workers

    def state(self) -> AutoscaleState:
        last = self.last_decision
        return AutoscaleState(
            self.cap,
            self.paused,
            self.outside_pressure,
            dict(self.counts),
            None if last is None else last.key,
            None if last is None else last.reason,
        )

    def decide(self, sample: ResourceSample, load: PoolLoad, now_s: float) -> list[Decision]:
        """What to do now, given a fresh sample and the pool's load at ``now_s`` seconds
        (any monotonic clock, the same on every call)."""
        self._forget_gone(load.pids)
        decisions = [
            *self._memory_decisions(sample, load, now_s),
            *self._rss_decisions(sample, load, now_s),
        ]
        resize = self._resize_decision(sample, load, now_s)
        if resize is not None:
            decisions.append(resize)
            self._last_resize_s = now_s
        self.counts.update(decision.key for decision in decisions)
        if decisions:
            self.last_decision = decisions[-1]
        return decisions

    # CPU and backlog

    def _resize_decision(
        self, sample: ResourceSample, load: PoolLoad, now_s: float
    ) -> Decision | None:
        self._track_outside_pressure(sample, now_s)
        backlog = self._backlog_held(sample, load, now_s)
        idle_s = self._held("idle", load.busy == 0 and load.queued == 0, now_s)
        if self._cooling(now_s):
            return None
        if self.outside_pressure and load.workers > self.cap:
            why = self._outside_reason(sample)
            return self._resize(load, self.cap, Cause.OUTSIDE_CPU, why, now_s)
        if backlog and load.workers < self.cap:
            wanted = math.ceil(load.queued / self.config.backlog_per_worker)
            target = min(self.cap, load.workers + wanted)
            reason = (
                f"{load.queued} tasks queued for {load.busy} busy workers, "
                f"CPU at {sample.system.cpu_percent:.0f}%"
            )
            return self._resize(load, target, Cause.BACKLOG, reason, now_s)
        idle_after_s = self.config.idle_shrink_after_s
        if idle_after_s is not None and idle_s is not None and idle_s >= idle_after_s:
            reason = f"nothing queued or running for {idle_s:.1f} s"
            return self._resize(load, self.config.min_workers, Cause.IDLE, reason, now_s)
        return None

    def _backlog_held(self, sample: ResourceSample, load: PoolLoad, now_s: float) -> bool:
        config = self.config
        backlog = (
            load.busy >= load.workers
            and load.queued >= config.backlog_per_worker * max(1, load.workers)
            and sample.system.cpu_percent < config.grow_below_cpu_percent
            and not self.paused
        )
        held_s = self._held("backlog", backlog, now_s)
        return held_s is not None and held_s >= config.grow_after_s

    def _track_outside_pressure(self, sample: ResourceSample, now_s: float) -> None:
        config, cpu_percent = self.config, sample.system.cpu_percent
        outside_percent = sample.outside_percent
        hot = (
            cpu_percent > config.busy_cpu_percent and outside_percent >= config.outside_cpu_percent
        )
        calm = (
            cpu_percent < config.calm_cpu_percent or outside_percent < config.calm_outside_percent
        )
        hot_s = self._held("outside_hot", hot, now_s)
        calm_s = self._held("outside_calm", calm, now_s)
        if not self.outside_pressure and hot_s is not None and hot_s >= config.outside_after_s:
            self.outside_pressure = True
        elif self.outside_pressure and calm_s is not None and calm_s >= config.calm_after_s:
            self.outside_pressure = False

    def _outside_reason(self, sample: ResourceSample) -> str:
        steal = sample.system.steal_percent
        steal_text = f", steal {steal:.0f}%" if steal else ""
        return (
            f"CPU at {sample.system.cpu_percent:.0f}% with {sample.outside_percent:.0f}% "
            f"used outside the engine{steal_text}: cap {self.pressure_cap} "
            f"(floor({self.cores} cores x {self.config.shrink_fraction:g}))"
        )

    def _resize(
        self, load: PoolLoad, target: int, cause: Cause, why: str, now_s: float
    ) -> Decision | None:
        target = max(self.config.min_workers, min(self.cap, target))
        if target == load.workers:
            return None
        action = Action.GROW if target > load.workers else Action.SHRINK
        reason = f"{why}: {action.value} {load.workers} -> {target} workers"
        return Decision(action, cause, reason, now_s, workers=target)

    def _cooling(self, now_s: float) -> bool:
        last_s = self._last_resize_s
        return last_s is not None and now_s - last_s < self.config.cooldown_s

    def _held(self, condition: str, holds: bool, now_s: float) -> float | None:
        """How long ``condition`` has held without a break, in seconds; None when it does not."""
        if not holds:
            self._since_s.pop(condition, None)
            return None
        return now_s - self._since_s.setdefault(condition, now_s)

    # Memory

    def _memory_decisions(
        self, sample: ResourceSample, load: PoolLoad, now_s: float
    ) -> list[Decision]:
        config, percent = self.config, sample.system.memory_percent
        decisions = []
        if not self.paused and percent >= config.memory_high_percent:
            self.paused = True
            reason = f"memory at {percent:.0f}% >= {config.memory_high_percent:g}%: pausing intake"
            decisions.append(Decision(Action.PAUSE, Cause.MEMORY_HIGH, reason, now_s))
        elif self.paused and percent < config.memory_low_percent:
            self.paused = False
            reason = f"memory at {percent:.0f}% < {config.memory_low_percent:g}%: resuming intake"
            decisions.append(Decision(Action.RESUME, Cause.MEMORY_LOW, reason, now_s))
        if self.paused and not self._memory_action_cooling(now_s):
            action = self._free_memory(sample, load, percent, now_s)
            if action is not None:
                self._last_memory_action_s = now_s
                decisions.append(action)
        return decisions

    def _free_memory(
        self, sample: ResourceSample, load: PoolLoad, percent: float, now_s: float
    ) -> Decision | None:
        config = self.config
        hard = percent >= config.memory_hard_percent
        # Past the hard limit a worker already told to go after its task may still be the
        # one growing: it is killed too.
        spared = self._killed if hard else self._recycled
        floor_bytes = 0 if hard else config.recycle_min_rss_bytes
        candidates = [
            worker
            for worker in _pool_workers(sample, load.pids)
            if worker.pid not in spared and worker.rss_bytes >= floor_bytes
        ]
        if not candidates:
            return None
        largest = max(candidates, key=lambda worker: worker.rss_bytes)
        self._recycled.add(largest.pid)
        size = f"worker {largest.pid} ({largest.rss_bytes / MIB:.0f} MB) is the largest"
        if hard:
            self._killed.add(largest.pid)
            reason = (
                f"memory at {percent:.0f}% >= hard limit {config.memory_hard_percent:g}%: "
                f"{size}; killing it, its task will run again"
            )
            return Decision(Action.KILL, Cause.MEMORY_HARD, reason, now_s, pid=largest.pid)
        reason = f"memory at {percent:.0f}% (paused): {size}; recycling it after its task"
        return Decision(Action.RECYCLE, Cause.MEMORY_HIGH, reason, now_s, pid=largest.pid)

    def _memory_action_cooling(self, now_s: float) -> bool:
        last_s = self._last_memory_action_s
        return last_s is not None and now_s - last_s < self.config.recycle_interval_s

    def _rss_decisions(
        self, sample: ResourceSample, load: PoolLoad, now_s: float
    ) -> list[Decision]:
        limit = self.config.max_rss_bytes
        if limit is None:
            return []
        decisions = []
        for worker in _pool_workers(sample, load.pids):
            if worker.rss_bytes > limit and worker.pid not in self._recycled:
                self._recycled.add(worker.pid)
                reason = (
                    f"worker {worker.pid} uses {worker.rss_bytes / MIB:.0f} MB > max_rss_bytes "
                    f"{limit / MIB:.0f} MB: recycling it after its task"
                )
                decision = Decision(Action.RECYCLE, Cause.WORKER_RSS, reason, now_s, pid=worker.pid)
                decisions.append(decision)
        return decisions

    def _forget_gone(self, pids: Collection[int]) -> None:
        # A pid asked to go is remembered only while the pool still reports it.
        self._recycled.intersection_update(pids)
        self._killed.intersection_update(pids)


def _pool_workers(sample: ResourceSample, pids: Iterable[int]) -> list[ProcessSample]:
    wanted = set(pids)
    return [worker for worker in sample.workers if worker.pid in wanted]
