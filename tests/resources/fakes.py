"""A hand-driven ResourceMonitor: the tests set the pressure, the policy reacts."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from hybrid.resources import ProcessSample, ResourceSample, SystemSample

GIB = 1 << 30
MIB = 1 << 20


@dataclass
class FakeMonitor:
    """Reports whatever the test last set, at the time the test last set.

    ``cpu_percent`` is the machine's busy share; ``worker_cores`` and ``worker_rss``
    describe each worker (pids not listed use 0 cores and 30 MB); whatever of
    ``cpu_percent`` the workers do not explain is used outside the engine.
    """

    cpu_count: int = 4
    now_s: float = 0.0
    cpu_percent: float = 0.0
    steal_percent: float | None = 0.0
    memory_percent: float = 30.0
    memory_total_bytes: int = 8 * GIB
    worker_cores: dict[int, float] = field(default_factory=dict)
    worker_rss: dict[int, int] = field(default_factory=dict)
    samples_taken: int = 0

    def sample(self, pids: Collection[int]) -> ResourceSample:
        self.samples_taken += 1
        used = int(self.memory_total_bytes * self.memory_percent / 100)
        system = SystemSample(
            cpu_count=self.cpu_count,
            cpu_percent=self.cpu_percent,
            steal_percent=self.steal_percent,
            memory_total_bytes=self.memory_total_bytes,
            memory_used_bytes=used,
            memory_available_bytes=self.memory_total_bytes - used,
        )
        workers = tuple(
            ProcessSample(pid, self.worker_cores.get(pid, 0.0), self.worker_rss.get(pid, 30 * MIB))
            for pid in pids
        )
        return ResourceSample(self.now_s, system, None, workers)

    def set(self, **values: object) -> None:
        for name, value in values.items():
            if not hasattr(self, name):
                raise AttributeError(name)
            setattr(self, name, value)

    def busy_workers(self, pids: Mapping[int, float]) -> None:
        self.worker_cores = dict(pids)
