"""A ``concurrent.futures.Executor`` over an engine, for code written against that interface.

``loop.run_in_executor(engine.executor(), fn, x)`` and ``executor.submit(fn, x).result()``
(from another thread) run ``fn`` in the engine's workers, with their isolation: a call
that crashes its worker fails alone, a timeout kills the worker, the pool carries on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from .engine import Engine

P = ParamSpec("P")
T = TypeVar("T")


class EngineExecutor(concurrent.futures.Executor):
    """An Executor whose calls run in an engine's worker processes.

    What it keeps of the ``Executor`` contract: ``submit`` returns a
    ``concurrent.futures.Future`` (keyword arguments go through ``functools.partial``);
    cancelling that future cancels the call (a running one has its worker killed);
    ``map(fn, *iterables, timeout=...)`` is the base class's, so ``timeout`` counts from
    the call to ``map`` and ``chunksize`` is ignored; after ``shutdown`` ``submit``
    raises ``RuntimeError``. ``shutdown(wait=True)`` waits for this executor's calls,
    except on the engine's own loop thread, where waiting would block the loop they need
    (it then returns at once); ``cancel_futures=True`` cancels the calls not yet done.
    Shutting down leaves the engine running: it belongs to whoever made it.

    Calling ``future.result()`` on the engine's loop thread blocks that loop for good:
    on the loop, await ``loop.run_in_executor(...)`` instead.
    """

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        *,
        timeout: float | None = None,
        retries: int = 0,
        pool: str = "default",
    ) -> None:
        self._engine = engine
        self._loop = loop
        self._options: dict[str, Any] = {"timeout": timeout, "retries": retries, "pool": pool}
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self._shut_down = False

    def submit(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        call: Callable[..., T] = functools.partial(fn, **kwargs) if kwargs else fn
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future = asyncio.run_coroutine_threadsafe(
                self._engine.run(call, *args, **self._options), self._loop
            )
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut_down = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait and not self._on_loop_thread():
            concurrent.futures.wait(pending)

    def _on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False
