"""A transport that misbehaves on purpose, for tests: delay, jitter, spikes, loss, skewed
clocks, and stalls of the sender or the receiver.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from hybrid.messaging.transport import Transport


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What goes wrong, and how often. Durations in seconds.

    Attributes:
        latency_s: base one-way delay.
        jitter_s: extra delay drawn uniformly from [-jitter_s, +jitter_s] (never below 0).
        spike_probability: chance that a datagram is held back by a spike.
        spike_s: the largest spike delay (drawn uniformly from [0, spike_s]).
        loss: chance that a datagram is silently dropped.
        clock_offset_s: how far this endpoint's wall clock is off.
        clock_drift_ppm: how fast it drifts, in parts per million.
        seed: seeds the random draws, so a run can be replayed.
    """

    latency_s: float = 0.0
    jitter_s: float = 0.0
    spike_probability: float = 0.0
    spike_s: float = 0.0
    loss: float = 0.0
    clock_offset_s: float = 0.0
    clock_drift_ppm: float = 0.0
    seed: int = 0


class SkewedClock:
    """A wall clock that is ``offset_s`` off and drifts ``drift_ppm`` from the real one."""

    def __init__(self, offset_s: float = 0.0, drift_ppm: float = 0.0) -> None:
        self._offset_ns = offset_s * 1e9
        self._rate = 1.0 + drift_ppm * 1e-6
        self._origin_ns = time.time_ns()

    def time_ns(self) -> int:
        """Return the skewed wall clock in ns."""
        elapsed_ns = time.time_ns() - self._origin_ns
        return int(self._origin_ns + elapsed_ns * self._rate + self._offset_ns)


class FaultyTransport:
    """Wraps a transport and injects the faults of a :class:`FaultPlan` into what it sends.

    Stalls are injected explicitly: :meth:`stall_sender` holds every send for a while (the
    sending process was paused), :meth:`stall_receiver` holds receiving (the receiving loop
    was busy). ``clock`` is the skewed wall clock the owner should stamp messages with.
    """

    def __init__(self, inner: Transport, plan: FaultPlan | None = None) -> None:
        self.plan = plan = plan or FaultPlan()
        self.inner = inner
        self.clock = SkewedClock(plan.clock_offset_s, plan.clock_drift_ppm)
        self.dropped = 0
        self._random = random.Random(plan.seed)
        self._sender_stalled_until = 0.0
        self._receiver_stalled_until = 0.0
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """The wrapped transport's address."""
        return self.inner.address

    def stall_sender(self, duration_s: float) -> None:
        """Hold every send for the next ``duration_s`` seconds."""
        self._sender_stalled_until = time.monotonic() + duration_s

    def stall_receiver(self, duration_s: float) -> None:
        """Deliver nothing to ``receive`` for the next ``duration_s`` seconds."""
        self._receiver_stalled_until = time.monotonic() + duration_s

    def draw_delay_s(self) -> float | None:
        """Draw one datagram's delay in seconds, or None if it is lost."""
        plan, draw = self.plan, self._random.random
        if draw() < plan.loss:
            return None
        delay_s = plan.latency_s + (2 * draw() - 1) * plan.jitter_s
        if draw() < plan.spike_probability:
            delay_s += draw() * plan.spike_s
        return max(0.0, delay_s)

    async def send(self, destination: str, data: bytes) -> None:
        """Send ``data`` after the injected delay (or drop it); returns before delivery."""
        await _sleep_until(self._sender_stalled_until)
        delay_s = self.draw_delay_s()
        if delay_s is None:
            self.dropped += 1
            return
        task = asyncio.create_task(self._deliver_later(destination, data, delay_s))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _deliver_later(self, destination: str, data: bytes, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.inner.send(destination, data)

    async def receive(self) -> tuple[str, bytes]:
        """Receive the next datagram, after any receiver stall."""
        item = await self.inner.receive()
        await _sleep_until(self._receiver_stalled_until)
        return item

    async def aclose(self) -> None:
        """Drop datagrams still in flight and close the wrapped transport."""
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self.inner.aclose()


async def _sleep_until(deadline_monotonic_s: float) -> None:
    remaining_s = deadline_monotonic_s - time.monotonic()
    if remaining_s > 0:
        await asyncio.sleep(remaining_s)
