"""``engine.map``: an async iterator over results with a bounded window of work in flight.

Once a function is known to be tiny, inputs travel in chunks (one task, one pickled
list of arguments), so the parent spends little per call; the workers still report
every call on its own, so a crash settles exactly the calls it touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._errors import WorkerCrashed
from . import batching as _batching
from .area import MAX_BATCH
from .dispatch import PIPELINE_DEPTH
from .map_payloads import MapPayloads
from .outcome import Outcome, rebuild_error
from .task import Task, function_key, function_name

if TYPE_CHECKING:
    from .engine import Engine

R = TypeVar("R")

MIN_WINDOW = 4  # inputs in flight per worker while task times are unknown or long
_DONE = object()  # the end of a chunk's values


class MapResults(Generic[R]):
    """Results of ``engine.map``; use with ``async for`` (and optionally ``async with``)."""

    __slots__ = (
        "_async_source",
        "_buffer",
        "_changed",
        "_chunk",
        "_chunk_problems",
        "_chunk_values",
        "_closed",
        "_completed",
        "_engine",
        "_exhausted",
        "_fast",
        "_feeder",
        "_fn",
        "_fn_key",
        "_ordered",
        "_outstanding",
        "_payloads",
        "_pending_calls",
        "_pool_name",
        "_position",
        "_retries",
        "_source_error",
        "_submitting",
        "_sync_source",
        "_timeout",
        "_window",
    )

    def __init__(
        self,
        engine: Engine,
        fn: Callable[[Any], R],
        iterable: Iterable[Any] | AsyncIterable[Any],
        *,
        ordered: bool,
        timeout: float | None,
        retries: int,
        window: int | None,
        pool: str,
    ) -> None:
        if window is not None and (not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be a whole number >= 1 or None, not {window!r}")
        self._engine = engine
        self._fn = fn
        self._fn_key = function_key(fn)
        self._ordered = ordered
        self._timeout = timeout
        self._retries = retries
        self._window = window
        self._pool_name = pool
        self._sync_source: Iterator[Any] | None = None
        self._async_source: AsyncIterator[Any] | None = None
        if isinstance(iterable, AsyncIterable):
            self._async_source = aiter(iterable)
        else:
            self._sync_source = iter(iterable)
        self._buffer: list[Any] = []  # inputs read, not yet submitted
        self._outstanding: deque[Task] = deque()  # submitted, not yet taken, in input order
        self._completed: deque[Task] = deque()  # unordered mode: done, not yet taken
        self._fast: Iterator[Any] = iter(())  # the values of a chunk whose calls all succeeded
        self._chunk: Task | None = None  # a chunk with failed calls, yielded one by one
        self._chunk_values: list[Any] = []
        self._chunk_problems: dict[int, Outcome] = {}  # its calls that did not succeed
        self._position = 0  # next result of that chunk to yield
        self._pending_calls = 0  # inputs submitted and not yet taken back
        self._changed = asyncio.Event()
        self._submitting = asyncio.Lock()
        self._exhausted = False
        self._source_error: BaseException | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._closed = False
        threshold = engine._share_threshold_bytes
        self._payloads = MapPayloads(threshold) if threshold is not None else None

    def __aiter__(self) -> MapResults[R]:
        return self

    async def __aenter__(self) -> MapResults[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Breaking out of ``async for`` drops the last reference: cancel what is left now.
        if getattr(self, "_outstanding", None):
            # A closed loop raises here; the engine's close has settled everything then.
            with contextlib.suppress(RuntimeError):
                self._cancel_outstanding()

    async def aclose(self) -> None:
        """Cancel every task still outstanding and stop reading the input."""
        self._cancel_outstanding()
        if self._feeder is not None:
            await asyncio.gather(self._feeder, return_exceptions=True)

    async def __anext__(self) -> R:
        value = next(self._fast, _DONE)
        if value is not _DONE:
            return value  # type: ignore[return-value]
        try:
            return await self._next_result()
        except BaseException:
            # A failed task, a failing input or our own cancellation ends the map.
            self._cancel_outstanding()
            raise

    async def _next_result(self) -> R:
        while True:
            position = self._position
            if position < len(self._chunk_values):
                assert self._chunk is not None
                assert self._chunk.calls is not None
                item = self._chunk.calls[position]
                self._position += 1
                if position not in self._chunk_problems:
                    return self._chunk_values[position]  # type: ignore[no-any-return]
                return await self._unwrap(self._chunk_problems[position], item)
            if self._closed:
                raise StopAsyncIteration
            task = await self._next_task()
            if task is None:
                self._closed = True
                raise StopAsyncIteration
            result = await task.future
            if not task.is_chunk:
                self._pending_calls -= 1
                if self._payloads is not None and self._payloads.leases:
                    return await self._payloads.take(task, result)  # type: ignore[no-any-return]
                return result  # type: ignore[no-any-return]
            self._pending_calls -= len(result)
            if not result.problems:
                self._fast = iter(result.values)
                return next(self._fast)  # type: ignore[no-any-return]
            self._chunk, self._position = task, 0
            self._chunk_values, self._chunk_problems = result.values, result.problems

    async def _unwrap(self, outcome: Outcome, item: Any) -> R:
        assert outcome is not None
        ok, _, payload = outcome
        if ok:
            return payload  # type: ignore[no-any-return]
        error = rebuild_error(payload, function_name(self._fn))
        if isinstance(error, WorkerCrashed) and self._retries > 0:
            # The chunk ran it once; it gets its remaining retries on its own.
            return await self._engine.run(
                self._fn,
                item,
                timeout=self._timeout,
                retries=self._retries - 1,
                pool=self._pool_name,
            )
        raise error

    async def _next_task(self) -> Task | None:
        if self._sync_source is not None:
            await self._fill_from_sync()
        else:
            if self._feeder is None:
                self._feeder = asyncio.get_running_loop().create_task(self._feed_from_async())
            await self._flush()
        while True:
            task = self._take_ready_task()
            if task is not None:
                self._changed.set()  # room for the feeder
                return task
            if self._exhausted and not self._outstanding and not self._buffer:
                if self._source_error is not None:
                    raise self._source_error
                return None
            self._changed.clear()
            await self._changed.wait()
            await self._flush()

    def _take_ready_task(self) -> Task | None:
        if self._ordered:
            return self._outstanding.popleft() if self._outstanding else None
        if self._completed:
            task = self._completed.popleft()
            self._outstanding.remove(task)
            return task
        return None

    def _window_size(self) -> int:
        if self._window is not None:
            return self._window
        workers = self._workers()
        return max(MIN_WINDOW * workers, 2 * workers * PIPELINE_DEPTH * self._chunk_size())

    def _workers(self) -> int:
        pool = self._engine._pools.get(self._pool_name)
        return len(pool.slots) if pool is not None else self._engine.workers

    def _chunk_size(self) -> int:
        if self._timeout is not None:
            return 1
        pool = self._engine._pools.get(self._pool_name)
        estimate_s = pool.times.estimate(self._fn_key) if pool is not None else None
        if estimate_s is None or not _batching.is_batchable(estimate_s):
            return 1
        size = min(_batching.batch_limit(estimate_s), MAX_BATCH)
        limit = pool.max_tasks_per_child if pool is not None else None
        return size if limit is None else max(1, min(size, limit))

    async def _fill_from_sync(self) -> None:
        source = self._sync_source
        assert source is not None
        room = self._window_size() - self._pending_calls - len(self._buffer)
        if room > 0 and not self._exhausted:
            had = len(self._buffer)
            try:
                self._buffer.extend(itertools.islice(source, room))
            except Exception as exc:
                self._exhausted = True
                self._source_error = exc
            if len(self._buffer) - had < room:
                self._exhausted = True
        await self._flush()

    async def _feed_from_async(self) -> None:
        source = self._async_source
        assert source is not None
        try:
            async for item in source:
                self._buffer.append(item)
                if len(self._buffer) >= self._chunk_size() or not self._outstanding:
                    await self._flush()
                while self._pending_calls + len(self._buffer) >= self._window_size():
                    if self._closed:
                        return
                    self._changed.clear()
                    await self._changed.wait()
        except Exception as exc:
            self._source_error = exc
        finally:
            self._exhausted = True
            self._changed.set()

    async def _flush(self) -> None:
        """Submit buffered inputs, in order, as chunks (or single calls while times are unknown)."""
        async with self._submitting:
            while self._buffer and not self._closed:
                size = self._chunk_size()
                if len(self._buffer) <= size:
                    items, self._buffer = self._buffer, []
                else:
                    items = self._buffer[:size]
                    del self._buffer[:size]
                if self._payloads is not None:
                    items, rest = self._payloads.split(items)
                    if rest:
                        self._buffer[:0] = rest
                task = await self._submit(items)
                self._pending_calls += len(items)
                self._outstanding.append(task)
                if not self._ordered:
                    task.future.add_done_callback(functools.partial(self._on_done, task))
                self._changed.set()

    async def _submit(self, items: list[Any]) -> Task:
        if len(items) == 1:
            if self._payloads is not None and self._payloads.is_large(items[0]):
                return await self._payloads.submit(
                    self._engine,
                    self._fn,
                    items[0],
                    timeout=self._timeout,
                    retries=self._retries,
                    pool=self._pool_name,
                )
            return await self._engine._submit_calls(
                self._fn,
                [(items[0],)],
                chunk=False,
                timeout=self._timeout,
                retries=self._retries,
                pool=self._pool_name,
            )
        return await self._engine._submit_calls(
            self._fn,
            items,
            chunk=True,
            timeout=self._timeout,
            pool=self._pool_name,
            one_arg=True,
        )

    def _on_done(self, task: Task, _: asyncio.Future[Any]) -> None:
        if not task.future.cancelled():
            self._completed.append(task)
            self._changed.set()

    def _cancel_outstanding(self) -> None:
        if self._closed and not self._outstanding:
            return
        self._closed = True
        outstanding, self._outstanding = self._outstanding, deque()
        self._completed.clear()
        self._chunk_values, self._chunk_problems, self._position = [], {}, 0
        self._fast = iter(())
        self._buffer.clear()
        for task in outstanding:
            if not task.future.done():
                self._engine._cancel(task)
            elif not task.future.cancelled():
                task.future.exception()  # mark retrieved: nobody will read it now
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()
        if self._payloads is not None:
            self._payloads.release_all()
        self._changed.set()
