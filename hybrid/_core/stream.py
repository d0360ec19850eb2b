"""``engine.stream``: a generator run in a worker, its items yielded on the loop as they come.

The parent listens on a Unix socket in a private directory; the worker's side
(:mod:`.stream_worker`) connects and sends items, and waits for credit when ``window``
items are unacknowledged. A credit byte goes back each time the consumer asks for the
next item, so the generator never runs more than ``window`` items ahead of its consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import shutil
import socket
import tempfile
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from .stream_worker import END, FRAME, run_stream

if TYPE_CHECKING:
    from .engine import Engine
    from .task import Task

STOP_GRACE_S = 1.0  # a stopped stream's generator may take this long to notice, then is killed
_CREDIT = b"\x01"


async def stream_items(
    engine: Engine,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    window: int,
    timeout: float | None,
    pool: str,
) -> AsyncGenerator[Any, None]:
    """Yield the items of ``fn(*args)`` run in a worker (see :meth:`Engine.stream`)."""
    folder = tempfile.mkdtemp(prefix="hybrid-stream-")  # mode 0700: only this user connects
    path = os.path.join(folder, "items")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    writer: asyncio.StreamWriter | None = None
    task: Task | None = None
    finished = False
    try:
        listener.bind(path)
        listener.listen(1)
        listener.setblocking(False)
        task = await engine._submit_calls(
            run_stream, [(path, window, fn, args)], chunk=False, timeout=timeout, pool=pool,
            described_as=fn,
        )  # fmt: skip
        connection = await _accept_or_fail(engine, listener, task)
        if connection is None:  # the call ended without connecting (e.g. not a generator)
            await engine._result_of(task)
            finished = True
            return
        reader, writer = await asyncio.open_unix_connection(sock=connection)
        while (data := await _next_frame(reader)) is not None:
            yield pickle.loads(data)
            writer.write(_CREDIT)
        writer.close()  # the worker waits for this to free itself
        await engine._result_of(task)  # the generator's exception, a crash or a timeout
        finished = True
    finally:
        listener.close()
        shutil.rmtree(folder, ignore_errors=True)
        if writer is not None:
            writer.close()  # the worker's next send or wait for credit stops its generator
        if task is not None and not finished:
            engine._in_background(_stop(engine, task))


async def _accept_or_fail(
    engine: Engine, listener: socket.socket, task: Task
) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    accept = loop.create_task(loop.sock_accept(listener))
    try:
        await asyncio.wait({accept, task.future}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not accept.done():
            accept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accept
    if accept.cancelled():
        return None
    connection, _ = accept.result()
    return connection


async def _next_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next item's pickle, or None at the end (the generator is done, or its worker died)."""
    try:
        header = await reader.readexactly(FRAME.size)
        (length,) = FRAME.unpack(header)
        if length == END:
            return None
        return await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


async def _stop(engine: Engine, task: Task) -> None:
    """Let a stopped stream's call end on its own, or kill its worker after a grace."""
    try:
        await asyncio.wait_for(asyncio.shield(task.future), STOP_GRACE_S)
    except TimeoutError:
        engine._cancel(task)
    except BaseException:  # its outcome has no one left to hear it
        return
