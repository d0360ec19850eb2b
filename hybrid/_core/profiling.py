"""``engine.profile()``: cProfile data from every worker, merged into one ``pstats.Stats``.

While a profile is open, batches are sent with a flag that makes the worker run them
under its profiler; on leaving, each worker's data is fetched (after what it was sent
before) and merged. With no profile open nothing is done per call or per batch beyond
reading that flag.
"""

from __future__ import annotations

import asyncio
import io
import pstats
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .engine import Engine
    from .slot import Slot


class _RawStats:
    """What ``pstats.Stats.add`` takes: an object with ``create_stats`` and ``stats``."""

    def __init__(self, stats: dict[Any, Any]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        """The stats are made already."""


def merge(raw: Iterable[dict[Any, Any]]) -> pstats.Stats:
    """One ``pstats.Stats`` from workers' raw profile dicts."""
    merged = pstats.Stats(stream=io.StringIO())
    for stats in raw:
        if stats:
            merged.add(cast(pstats.Stats, _RawStats(stats)))  # it takes any such object
    return merged


async def collect(slots: Iterable[Slot]) -> pstats.Stats:
    """Fetch and merge the profile data of these workers (and end their profilers)."""
    raw = await asyncio.gather(*(slot.take_profile() for slot in slots))
    return merge(raw)


class Profile:
    """The workers' profile of the calls run inside ``async with engine.profile()``.

    After the block, :attr:`stats` is a ``pstats.Stats`` of every worker's share, as if
    one process had run them all: ``prof.stats.sort_stats("cumulative").print_stats(10)``,
    :meth:`dump_stats` to save it for ``snakeviz`` or ``python -m pstats``, :meth:`top`
    for the hottest functions. Calls still running when the block ends are waited for
    (their workers report after them). A worker that dies takes its share with it.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.stats: pstats.Stats | None = None

    async def __aenter__(self) -> Profile:
        await self._engine._set_profiling(True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stats = await self._engine._collect_profile(keep_profiling=False)

    def dump_stats(self, path: str) -> None:
        """Save the merged profile in the ``pstats`` file format."""
        self._require().dump_stats(path)

    def top(self, count: int = 10, sort: str = "cumulative") -> str:
        """The ``count`` top functions by ``sort``, as ``pstats`` prints them."""
        stats = self._require()
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(sort).print_stats(count)
        return out.getvalue()

    def _require(self) -> pstats.Stats:
        if self.stats is None:
            raise RuntimeError("the profile is collected when its async with block ends")
        return self.stats
