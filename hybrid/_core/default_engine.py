"""``hybrid.to_process``: one call in a worker process, without making an engine first.

The default engine is started on first use, one per event loop, and closed when the
loop's main task ends: ``asyncio.run`` cancels the tasks left at the end, and a task
kept waiting here closes the engine as it is cancelled. Workers also exit on their own
when this process dies, however it ends.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple, overload

from .engine import Engine

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine] = weakref.WeakKeyDictionary()
_keepers: set[asyncio.Task[None]] = set()


@overload
async def to_process(
    fn: Callable[[*Ts], Coroutine[Any, Any, R]], *args: *Ts, timeout: float | None = None
) -> R: ...


@overload
async def to_process(fn: Callable[[*Ts], R], *args: *Ts, timeout: float | None = None) -> R: ...


async def to_process(fn: Callable[[*Ts], Any], *args: *Ts, timeout: float | None = None) -> Any:
    """Run ``fn(*args)`` in a worker of this loop's default engine and return its result.

    The engine (``Engine()``'s defaults: a worker per usable CPU) starts on the first
    call and closes when the loop's main task ends. Raises what
    :meth:`Engine.run` raises.

    Cancellation: as for :meth:`Engine.run`: a queued call is dropped, a running one has
    its worker killed and replaced.
    """
    return await default_engine().run(fn, *args, timeout=timeout)


def default_engine() -> Engine:
    """This loop's default engine, made (not yet started) on first use."""
    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None or engine.closed:
        engine = _engines[loop] = Engine()
        keeper = loop.create_task(_close_when_cancelled(engine), name="hybrid-default-engine")
        _keepers.add(keeper)
        keeper.add_done_callback(_keepers.discard)
    return engine


async def _close_when_cancelled(engine: Engine) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await engine.close(cancel=True)
