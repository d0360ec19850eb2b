"""The live wiring: envelopes over a transport, with clocks, heartbeats and detection.

An :class:`Endpoint` stamps what it sends, echoes what it received, beats towards every
known peer when nothing else went out for an interval, polls a failure detector per peer,
and hands the application only messages that passed the codec and are not past their
deadline::

    async with Endpoint(network.connect("a"), key=KEY) as a:
        a.add_peer("b")
        await a.send("b", "task", body=b"...", deadline_s=2.0)
        message = await a.receive()
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hybrid import ticks
from hybrid.messaging.clock import PeerClock
from hybrid.messaging.codec import Codec
from hybrid.messaging.deadline import DeadlineGate
from hybrid.messaging.detector import DetectorConfig, FailureDetector, PeerState
from hybrid.messaging.envelope import Echo, Envelope, new_id
from hybrid.messaging.group import PeerGroup
from hybrid.messaging.heartbeat import HeartbeatSchedule
from hybrid.messaging.transport import Transport

from .._errors import RejectedMessage, TransportClosed, UnknownPeer

logger = logging.getLogger("hybrid.messaging")

HEARTBEAT = "heartbeat"
INTERVAL_HEADER = "hb-interval-s"  # the interval the receiver asks the sender to beat at
TICK_S = 0.02  # how often heartbeats are considered and detectors polled
MAX_PEERS = 1024  # peers an endpoint tracks at most, by default
FORGET_AFTER_S = 60.0  # a learned peer DEAD this long is forgotten
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")  # Linux: changes at every boot

_boot_id: bytes | None = None


@dataclass
class _Received:
    seq: int
    sent_ns: int
    at_mono_ns: int


class Endpoint:
    r"""One peer's messaging: send, receive, beat, and judge the other peers.

    What it trusts: without a ``key``, everything a message says, its ``sender`` included:
    anyone who can write to the transport can speak as any peer, skew its clock estimate
    or keep it looking alive; use a key wherever the transport is shared. With a key,
    only holders of the key are heard (unsigned or tampered input is rejected and
    counted); key holders are trusted to name themselves truly. Either way what peers
    send cannot grow this endpoint without bound: at most ``max_peers`` peers are
    tracked, and a peer learned from its messages (not :meth:`add_peer`\ ed) that stays
    DEAD for ``forget_after_s`` is forgotten with all its state.

    Args:
        transport: where datagrams go; its address is this peer's id.
        key: shared HMAC-SHA256 key; when set, unsigned or tampered input is rejected.
        config: failure-detector configuration for every peer.
        boot_id: the host's boot id (equal boot ids mean a shared monotonic clock);
            by default the kernel's, or a random id per process where there is none.
        wall_ns: the wall clock to stamp ``sent_ns`` with (tests pass a skewed one).
        max_peers: peers tracked at most; messages from further new senders are dropped
            (counted in ``refused_peers``) until some are forgotten.
        forget_after_s: how long a learned peer may stay DEAD before it is forgotten.
    """

    def __init__(
        self,
        transport: Transport,
        key: bytes | None = None,
        config: DetectorConfig | None = None,
        boot_id: bytes | None = None,
        wall_ns: Callable[[], int] = time.time_ns,
        max_peers: int = MAX_PEERS,
        forget_after_s: float = FORGET_AFTER_S,
    ) -> None:
        if max_peers < 1:
            raise ValueError(f"max_peers must be >= 1, not {max_peers!r}")
        self.transport = transport
        self.max_peers = max_peers
        self.forget_after_s = forget_after_s
        self.refused_peers = 0  # messages dropped because max_peers peers were tracked
        self._chosen: set[str] = set()  # peers the application added: never forgotten
        self._dead_since: dict[str, float] = {}
        self.codec = Codec(key)
        self.peers: PeerGroup[str] = PeerGroup(config)
        self.clocks: dict[str, PeerClock] = {}
        self.deadlines = DeadlineGate()
        self.boot_id = boot_id or host_boot_id()
        self._wall_ns = wall_ns
        self._seq = 0
        self._schedules: dict[str, HeartbeatSchedule] = {}
        self._last_received: dict[str, _Received] = {}
        self._inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def peer_id(self) -> str:
        """This endpoint's address."""
        return self.transport.address

    def add_peer(self, peer: str) -> None:
        """Start beating towards ``peer`` and judging it (it is never forgotten)."""
        self._chosen.add(peer)
        self._track(peer)

    def _track(self, peer: str) -> None:
        default_s = self.peers.config.shortest_interval_s
        self._schedules.setdefault(peer, HeartbeatSchedule(default_s))
        self.peers.detector(peer)

    def forget(self, peer: str) -> None:
        """Drop everything known of ``peer``: its clock, schedule and detector."""
        self._chosen.discard(peer)
        self._schedules.pop(peer, None)
        self.clocks.pop(peer, None)
        self._last_received.pop(peer, None)
        self._dead_since.pop(peer, None)
        self.peers.remove(peer)

    def _has_room_for(self, peer: str) -> bool:
        if peer in self._schedules or len(self._schedules) < self.max_peers:
            return True
        self._forget_dead(time.monotonic(), patience_s=0.0)
        return len(self._schedules) < self.max_peers

    def _forget_dead(self, now_s: float, patience_s: float) -> None:
        """Forget learned peers DEAD for longer than ``patience_s``."""
        for peer in list(self._schedules):
            if peer in self._chosen:
                continue
            if self.peers.detector(peer).current is not PeerState.DEAD:
                self._dead_since.pop(peer, None)
                continue
            since = self._dead_since.setdefault(peer, now_s)
            if now_s - since >= patience_s:
                self.forget(peer)

    def state(self, peer: str) -> PeerState:
        """Return the peer's current state."""
        return self.peers.detector(peer).current

    async def send(
        self,
        destination: str,
        kind: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        deadline_s: float | None = None,
    ) -> Envelope:
        """Send a message; ``deadline_s`` is the time budget from now, in seconds."""
        self._track(destination)
        self._seq += 1
        sent_ns, mono_ns = self._wall_ns(), time.monotonic_ns()
        detector = self.peers.detector(destination)
        envelope = Envelope(
            kind=kind,
            sender=self.peer_id,
            seq=self._seq,
            sent_ns=sent_ns,
            mono_ns=mono_ns,
            boot_id=self.boot_id,
            deadline_ns=None if deadline_s is None else sent_ns + int(deadline_s * 1e9),
            echo=self._echo_for(destination, mono_ns),
            headers={**(headers or {}), INTERVAL_HEADER: f"{detector.heartbeat_interval():.6f}"},
            body=body,
        )
        await self.transport.send(destination, self.codec.encode(envelope))
        self._schedules[destination].note_sent(mono_ns / 1e9, heartbeat=kind == HEARTBEAT)
        return envelope

    def _echo_for(self, destination: str, now_mono_ns: int) -> Echo | None:
        last = self._last_received.get(destination)
        if last is None:
            return None
        return Echo(last.seq, last.sent_ns, now_mono_ns - last.at_mono_ns)

    async def receive(self) -> Envelope:
        """Wait for the next application message (heartbeats and rejects are consumed)."""
        return await self._inbox.get()

    def accept(self, data: bytes) -> Envelope | None:
        """Process one datagram; return it if the application should see it."""
        wall_ns, mono_ns = self._wall_ns(), time.monotonic_ns()
        try:
            envelope = self.codec.decode(data)
        except RejectedMessage:
            return None
        peer = envelope.sender
        if not self._has_room_for(peer):
            self.refused_peers += 1
            return None
        clock = self.clocks.get(peer)
        if clock is None:
            clock = self.clocks[peer] = PeerClock(same_host=envelope.boot_id == self.boot_id)
        transit_s = self._time(envelope, clock, wall_ns, mono_ns)
        self._track(peer)
        interval = envelope.headers.get(INTERVAL_HEADER)
        if interval is not None:
            self._schedules[peer].interval_s = _bounded_interval(interval, self.peers.config)
        if transit_s is None:
            transit_s = clock.transit.srtt_s
        if envelope.kind == HEARTBEAT or not self.deadlines.admit(envelope, transit_s):
            return None
        return envelope

    def _time(
        self, envelope: Envelope, clock: PeerClock, wall_ns: int, mono_ns: int
    ) -> float | None:
        peer = envelope.sender
        self._last_received[peer] = _Received(envelope.seq, envelope.sent_ns, mono_ns)
        if envelope.echo is not None:
            echo = envelope.echo
            clock.add_echo(echo.sent_ns, echo.held_ns, envelope.sent_ns, wall_ns)
        if clock.same_host:
            transit_s = clock.add_transit(envelope.mono_ns, mono_ns)
            sent_s = envelope.mono_ns / 1e9
        else:
            transit_s = clock.add_transit(envelope.sent_ns, wall_ns)
            sent_s = envelope.sent_ns / 1e9
        self.peers.observe(peer, sent_s, mono_ns / 1e9)
        return transit_s

    async def tick(self) -> None:
        """Send the heartbeats that are due and poll every peer's detector.

        A peer judged DEAD still gets a heartbeat every ``max_interval_s``, so two sides
        that lost each other (a partition) find each other again when it heals.
        """
        now_s = time.monotonic()
        for peer, schedule in list(self._schedules.items()):
            due_s = schedule.due_at()
            if self.peers.detector(peer).current is PeerState.DEAD:
                due_s += self.peers.config.max_interval_s - schedule.interval_s
            if now_s >= due_s:
                try:
                    await self.send(peer, HEARTBEAT)
                except (UnknownPeer, TransportClosed, OSError) as error:
                    logger.debug("heartbeat to %s failed: %s", peer, error)
        self.peers.states(now_s)
        self._forget_dead(now_s, self.forget_after_s)

    def detector(self, peer: str) -> FailureDetector:
        """Return the failure detector judging ``peer``."""
        return self.peers.detector(peer)

    # Both loops also stop on _closing, not on cancellation alone: a transport may swallow
    # a cancellation (redis-py times its sends with Python 3.11's asyncio.wait_for, which
    # returns the result when the task is cancelled just as the send completes).

    async def _receive_forever(self) -> None:
        while not self._closing:
            try:
                _, data = await self.transport.receive()
            except TransportClosed:
                return
            envelope = self.accept(data)
            if envelope is not None:
                self._inbox.put_nowait(envelope)

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            await self.tick()
            await asyncio.sleep(ticks.until_next(loop.time(), TICK_S))

    async def __aenter__(self) -> Endpoint:
        self._closing = False
        self._tasks = [
            asyncio.create_task(self._receive_forever()),
            asyncio.create_task(self._tick_forever()),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.aclose()


def host_boot_id() -> bytes:
    """Return 16 bytes naming this host's current boot (Linux), else this process's."""
    global _boot_id
    if _boot_id is None:
        try:
            _boot_id = uuid.UUID(BOOT_ID_PATH.read_text().strip()).bytes
        except (OSError, ValueError):
            _boot_id = new_id()
    return _boot_id


def _bounded_interval(text: str, config: DetectorConfig) -> float:
    """Parse a peer's requested interval, kept within our own bounds (it is untrusted)."""
    try:
        requested_s = float(text)
    except ValueError:
        return config.shortest_interval_s
    if requested_s != requested_s:  # NaN
        return config.shortest_interval_s
    return min(config.max_interval_s, max(config.shortest_interval_s, requested_s))
