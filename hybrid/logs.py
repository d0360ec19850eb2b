"""Workers' log records in the parent's handlers: one stream, tagged by worker pid and task id.

In the parent::

    import logging

    import hybrid
    from hybrid.logs import LogForwarding, call_with_task_id, install_worker_logging

    async def main() -> None:
        with LogForwarding() as forwarding:
            async with hybrid.Engine(
                workers=1, initializer=install_worker_logging, initargs=forwarding.initargs
            ) as engine:
                # logging.warning runs in the worker; its record is logged here.
                await engine.run(call_with_task_id, "order-17", logging.warning, "from a worker")

    if __name__ == "__main__":  # workers re-import this module
        hybrid.run(main())

Every record a task logs in a worker reaches the parent's logger of the same name with
two extra attributes, ``worker_pid`` and ``task_id`` (None unless the caller named the
task with :func:`call_with_task_id` or set :data:`task_id_var` in the worker). Parent
formatters can show them with ``logging.Formatter(fmt, defaults={"worker_pid": "-",
"task_id": "-"})`` so that the parent's own records still format.

The engine may call :func:`install_worker_logging` itself at worker start-up; it is a
plain initializer taking ``(queue, level)``.

Why not a plain ``multiprocessing.Queue``: its feeder thread loses the last records of a
worker that dies at once (``os._exit``, a segfault, a timeout's SIGKILL), and a worker
killed while holding the queue's shared write lock silences every other worker for good.
:class:`LogQueue` sends each record as one datagram on a Unix socket: the send is done
before ``logger.info`` returns and is atomic, so there is no lock to leave held. Any
object with ``put_nowait`` (a ``multiprocessing.Queue`` included) also works as the queue.
Handlers a worker inherited through ``fork`` are removed, so no inherited lock or file is
used in the worker.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import pickle
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar, TypeVarTuple

from ._core.worker import current_task_id

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

MAX_RECORD_BYTES = 60_000  # a datagram this size fits the default Unix socket buffers
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024  # room for bursts while the listener catches up
RECEIVE_LIMIT_BYTES = 256 * 1024  # above the largest datagram a default send buffer allows
SEND_TIMEOUT_S = 1.0  # a worker drops a record rather than block longer than this

task_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hybrid_task_id", default=None
)


class RecordQueue(Protocol):
    """Where a worker's :class:`~logging.handlers.QueueHandler` puts records."""

    def put_nowait(self, item: Any) -> None: ...


class LogQueue:
    """A one-way queue of log records from worker processes to the parent.

    Build it in the parent and pass it to workers in ``initargs``; it pickles only while
    a process is being started (its socket travels as a file descriptor).
    """

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        # A timeout, not blocking mode: workers share this socket's O_NONBLOCK flag.
        self._writer.settimeout(SEND_TIMEOUT_S)
        self.dropped = 0  # records this process could not send in time

    def __reduce__(self) -> tuple[Callable[[socket.socket], LogQueue], tuple[socket.socket]]:
        return _writer_end, (self._writer,)

    def put_nowait(self, item: Any) -> None:
        """Send one record (or the listener's stop sentinel); drop it if the parent is stuck."""
        data = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_RECORD_BYTES and isinstance(item, logging.LogRecord):
            data = pickle.dumps(_shortened(item, len(data)), pickle.HIGHEST_PROTOCOL)
        try:
            self._writer.send(data)
        except (TimeoutError, BlockingIOError, OSError):
            self.dropped += 1

    def get(self, block: bool = True) -> Any:
        """Receive the next record; used by the parent's listener thread.

        A datagram that cannot be read becomes a warning record instead of stopping the
        listener (whose thread would otherwise die and silence every worker).
        """
        data = self._reader.recv(RECEIVE_LIMIT_BYTES)
        try:
            return pickle.loads(data)
        except Exception as exc:
            return logging.makeLogRecord(
                {
                    "name": "hybrid.logs",
                    "levelno": logging.WARNING,
                    "levelname": "WARNING",
                    "msg": f"a worker's log record ({len(data)} bytes) could not be read: {exc!r}",
                }
            )

    def close(self) -> None:
        for end in (self._reader, self._writer):
            if end is not None:
                end.close()


def _writer_end(writer: socket.socket) -> LogQueue:
    queue = LogQueue.__new__(LogQueue)
    writer.settimeout(SEND_TIMEOUT_S)
    queue._writer = writer
    queue._reader = None  # type: ignore[assignment]
    queue.dropped = 0
    return queue


def _shortened(record: logging.LogRecord, size: int) -> logging.LogRecord:
    keep = max(0, len(str(record.msg)) - (size - MAX_RECORD_BYTES) - 200)
    record.msg = f"{str(record.msg)[:keep]} [record cut to fit {MAX_RECORD_BYTES} bytes]"
    record.stack_info = None
    return record


class _TagRecords(logging.Filter):
    """Adds ``worker_pid`` and ``task_id`` to each record a worker sends."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker_pid = os.getpid()
        named = task_id_var.get()
        record.task_id = current_task_id() if named is None else named
        return True


def install_worker_logging(queue: RecordQueue, level: int = logging.INFO) -> None:
    """Send this process's log records to the parent through ``queue``; a worker initializer.

    Replaces the root logger's handlers (inherited ones are dropped, not closed: their
    files and locks belong to the parent) with one QueueHandler that tags every record
    with ``worker_pid`` and ``task_id``, and sets the root level to ``level``.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.handlers.QueueHandler(queue)  # type: ignore[arg-type]
    handler.addFilter(_TagRecords())
    root.addHandler(handler)
    root.setLevel(level)


class WithTaskId(Generic[R]):
    """``fn`` wrapped so that every record it logs in the worker carries ``task_id``.

    Picklable when ``fn`` is; named and timed as ``fn`` itself by the engine's metrics
    (it exposes ``fn`` as ``func``, as ``functools.partial`` does)::

        await engine.run(WithTaskId("order-17", fn), x)
    """

    __slots__ = ("func", "task_id")

    def __init__(self, task_id: str, fn: Callable[..., R]) -> None:
        self.task_id = task_id
        self.func = fn

    def __call__(self, *args: Any) -> R:
        return call_with_task_id(self.task_id, self.func, *args)

    def __reduce__(self) -> tuple[type[WithTaskId[R]], tuple[str, Callable[..., R]]]:
        return type(self), (self.task_id, self.func)


def call_with_task_id(task_id: str, fn: Callable[[*Ts], R], *args: *Ts) -> R:
    """Run ``fn(*args)`` with ``task_id`` on every record it logs; send this to a worker.

    ``await engine.run(call_with_task_id, "order-17", fn, x)``
    """
    token = task_id_var.set(task_id)
    try:
        return fn(*args)
    finally:
        task_id_var.reset(token)


class _Relay(logging.Handler):
    """Hands a forwarded record to the parent's logger of the same name."""

    def handle(self, record: logging.LogRecord) -> bool:
        target = logging.getLogger(record.name)
        if target.isEnabledFor(record.levelno):
            target.handle(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:  # handle() does the work
        pass


def lowest_level_in_use() -> int:
    """The lowest level the root logger or any logger with its own level accepts."""
    levels = [logging.getLogger().getEffectiveLevel()]
    for named in logging.Logger.manager.loggerDict.values():
        if isinstance(named, logging.Logger) and named.level != logging.NOTSET:
            levels.append(named.level)
    return min(levels)


class LogForwarding:
    """Receives workers' records on a thread and logs them through the parent's loggers.

    Args:
        queue: where workers send records; a fresh :class:`LogQueue` by default.
        level: the lowest level workers send; by default the lowest level any of the
            parent's loggers is set to now (the parent filters again on arrival).

    Pass :attr:`initargs` with ``initializer=install_worker_logging`` to the engine.
    """

    def __init__(self, queue: LogQueue | None = None, level: int | None = None) -> None:
        self.queue = queue or LogQueue()
        self.level = lowest_level_in_use() if level is None else level
        self._listener: logging.handlers.QueueListener | None = None

    @property
    def initargs(self) -> tuple[LogQueue, int]:
        return (self.queue, self.level)

    def start(self) -> None:
        if self._listener is None:
            self._listener = logging.handlers.QueueListener(self.queue, _Relay())
            self._listener.start()

    def stop(self) -> None:
        """Log what is still queued, then stop the listener thread and close the queue."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.queue.close()

    def __enter__(self) -> LogForwarding:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
