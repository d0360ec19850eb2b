"""``engine.map``: an async iterator over results with a bounded window of work in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _batching
from ._area import MAX_BATCH
from ._slot import PIPELINE_DEPTH
from ._task import Task, function_key

if TYPE_CHECKING:
    from ._engine import Engine

R = TypeVar("R")

MIN_WINDOW = 4  # inputs in flight per worker while task times are unknown or long


class MapResults(Generic[R]):
    """Results of ``engine.map``; use with ``async for`` (and optionally ``async with``)."""

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
        self._sync_source: Iterator[Any] | None = None
        self._async_source: AsyncIterator[Any] | None = None
        if isinstance(iterable, AsyncIterable):
            self._async_source = aiter(iterable)
        else:
            self._sync_source = iter(iterable)
        self._outstanding: deque[Task] = deque()  # submitted, not yet yielded, in input order
        self._completed: deque[Task] = deque()  # unordered mode: done, not yet yielded
        self._changed = asyncio.Event()
        self._exhausted = False
        self._source_error: BaseException | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._closed = False

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
        if self._closed:
            raise StopAsyncIteration
        try:
            task = await self._next_task()
            if task is None:
                self._closed = True
                raise StopAsyncIteration
            return await task.future  # type: ignore[no-any-return]
        except BaseException:
            # A failed task, a failing input or our own cancellation ends the map.
            self._cancel_outstanding()
            raise

    async def _next_task(self) -> Task | None:
        if self._sync_source is not None:
            await self._fill_from_sync()
        elif self._feeder is None:
            self._feeder = asyncio.get_running_loop().create_task(self._feed_from_async())
        while True:
            task = self._take_ready()
            if task is not None:
                self._changed.set()  # room for the feeder
                return task
            if self._exhausted and not self._outstanding:
                if self._source_error is not None:
                    raise self._source_error
                return None
            self._changed.clear()
            await self._changed.wait()

    def _take_ready(self) -> Task | None:
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
        workers = self._engine.workers
        estimate_s = self._pool_times().estimate(self._fn_key)
        per_batch = 1
        if estimate_s is not None and _batching.is_batchable(estimate_s):
            per_batch = _batching.batch_limit(estimate_s)
        return max(MIN_WINDOW * workers, 2 * workers * PIPELINE_DEPTH * min(per_batch, MAX_BATCH))

    def _pool_times(self) -> _batching.TaskTimes:
        pool = self._engine._pool
        return pool.times if pool is not None else _batching.TaskTimes()

    async def _fill_from_sync(self) -> None:
        source = self._sync_source
        assert source is not None
        window = self._window_size()
        while not self._exhausted and len(self._outstanding) < window:
            try:
                item = next(source)
            except StopIteration:
                self._exhausted = True
            except Exception as exc:
                self._exhausted = True
                self._source_error = exc
            else:
                await self._submit(item)

    async def _feed_from_async(self) -> None:
        source = self._async_source
        assert source is not None
        try:
            async for item in source:
                while len(self._outstanding) >= self._window_size() and not self._closed:
                    self._changed.clear()
                    await self._changed.wait()
                if self._closed:
                    return
                await self._submit(item)
                self._changed.set()
        except Exception as exc:
            self._source_error = exc
        finally:
            self._exhausted = True
            self._changed.set()

    async def _submit(self, item: Any) -> None:
        task = await self._engine.submit(
            self._fn, (item,), timeout=self._timeout, retries=self._retries
        )
        self._outstanding.append(task)
        if not self._ordered:
            task.future.add_done_callback(lambda _: self._on_done(task))

    def _on_done(self, task: Task) -> None:
        if not task.future.cancelled():
            self._completed.append(task)
            self._changed.set()

    def _cancel_outstanding(self) -> None:
        if self._closed and not self._outstanding:
            return
        self._closed = True
        outstanding, self._outstanding = self._outstanding, deque()
        self._completed.clear()
        for task in outstanding:
            if not task.future.done():
                self._engine.cancel(task)
            elif not task.future.cancelled():
                task.future.exception()  # mark retrieved: nobody will read it now
        if self._feeder is not None and not self._feeder.done():
            self._feeder.cancel()
        self._changed.set()
