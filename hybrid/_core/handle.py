"""The public handle of a submitted call: awaitable, cancellable, with its timings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .progress import deliver_final

if TYPE_CHECKING:
    from .engine import Engine
    from .task import Task

R = TypeVar("R")


class TaskHandle(Generic[R]):
    """A call submitted with :meth:`hybrid.Engine.submit`; ``await handle`` gives its result.

    Awaiting raises what :meth:`hybrid.Engine.run` raises. Cancelling the coroutine that
    awaits the handle cancels the call, as :meth:`cancel` does: a queued call is removed,
    a running one has its worker killed and replaced.

    Attributes:
        function: the function's qualified name.
        pool: the pool the call runs in.
    """

    __slots__ = ("_engine", "_future", "_task", "function", "pool")

    def __init__(
        self,
        engine: Engine,
        future: asyncio.Future[R],
        function: str,
        pool: str,
        task: Task | None = None,
    ) -> None:
        self._engine = engine
        self._future = future
        self._task = task  # the engine task running the call, once there is one
        self.function = function
        self.pool = pool

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else "done" if self.done() else "pending"
        return f"<TaskHandle {self.id} {self.function} {state}>"

    def __await__(self) -> Generator[Any, None, R]:
        return self._engine._await_handle(self).__await__()

    @property
    def id(self) -> int | None:
        """The engine's id of the call (as on worker log records); None before it is queued."""
        return None if self._task is None else self._task.id

    @property
    def worker_pid(self) -> int | None:
        """The process the call was last sent to; None until it is sent."""
        return None if self._task is None else self._task.worker_pid

    @property
    def queue_wait_s(self) -> float | None:
        """Seconds the call waited to run (in the queue, or on a worker behind another
        call); until it settles, so far. None if it never ran."""
        return self._times()[0]

    @property
    def run_s(self) -> float | None:
        """Seconds the call ran, as its worker timed it; None if it never ran."""
        return self._times()[1]

    @property
    def progress(self) -> tuple[float, float | None] | None:
        """``(done, total)`` the call last reported with :func:`hybrid.report_progress`
        (``total`` None if it gave none); None before its first report."""
        task = self._task
        if task is None:
            return None
        if task.future.done():
            deliver_final(task)
        return task.progress

    def _times(self) -> tuple[float | None, float | None]:
        if self._task is None:
            return None, None
        return self._task.times(self._future.get_loop().time())

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def cancel(self) -> bool:
        """Withdraw the call; False if it had already settled."""
        if self._future.done():
            return False
        self._engine._withdraw(self)
        return True

    def result(self) -> R:
        """The call's result; raises its error, or ``asyncio.InvalidStateError`` if pending."""
        return self._future.result()

    def exception(self) -> BaseException | None:
        return self._future.exception()

    def add_done_callback(self, callback: Callable[[TaskHandle[R]], object]) -> None:
        """Call ``callback(handle)`` on the loop once the call settles."""
        self._future.add_done_callback(lambda _: callback(self))
