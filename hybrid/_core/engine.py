"""The public engine: CPU-bound calls of an asyncio program, run in worker processes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import multiprocessing
import os
import pstats
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Literal, TypeVar, TypeVarTuple, overload

from .._errors import EngineClosed, NotPicklable, Overloaded, TaskTimeout, WorkerCrashed
from ..autoscale import AutoscaleConfig
from ..logs import LogForwarding
from ..machine import MemoryTruth, memory_truth, usable_cpus
from ..observers import TaskEvent, TaskObserver, tell
from ..resources import DEFAULT_SAMPLE_INTERVAL_S, ResourceMonitor, find_default_monitor
from ..shared import (
    DEFAULT_THRESHOLD_BYTES,
    Cache,
    call_key,
    call_packed,
    holds_large,
    pack_async,
    remove_orphaned_segments,
)
from ..shared._payload import (
    BUFFER_TYPES,
    expected_result_bytes,
    note_result,
    returns_large,
)
from ..shared._published import is_plain_ndarray
from .autoscale_driver import AutoscaleDriver
from .context import worker_context
from .executor import EngineExecutor
from .handle import TaskHandle
from .map import MapResults
from .outcome import BatchResults, ChunkResults
from .pool import Pool
from .profiling import Profile, collect as collect_profile
from .progress import ProgressCallback, deliver_final
from .spec import PoolSpec
from .stats import EngineStats
from .stream import stream_items
from .task import Task, function_name, outcome_of

R = TypeVar("R")
T = TypeVar("T")
Ts = TypeVarTuple("Ts")

logger = logging.getLogger("hybrid")

DEFAULT_POOL = "default"
DEFAULT_STREAM_WINDOW = 16  # items a stream's generator may run ahead of its consumer


def default_start_method() -> str:
    """forkserver where it exists (safe with threads, fast to replace a worker), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods and sys.platform != "darwin" else "spawn"


def _main_preload() -> list[str]:
    """``["__main__"]`` when the main module is a file the forkserver can run again.

    With ``python -`` the main module's ``__file__`` is ``"<stdin>"``: preloading it kills
    the forkserver, and every worker with it. Without a file (``python -c``, a notebook,
    the REPL) there is nothing to preload; what it defines goes to workers by value.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return ["__main__"] if main_file is not None and os.path.isfile(main_file) else []


class Engine:
    """Runs CPU-bound functions in worker processes so the event loop never stalls.

    Each worker is the single process of its own ``ProcessPoolExecutor``, reached with
    ``loop.run_in_executor``: a worker that dies, times out or is cancelled fails only
    its own task and is replaced, and the others never notice.

    Args:
        workers: worker processes; None means the CPUs this process may really use
            (its CPU affinity and cgroup quota, not ``os.cpu_count()``).
        initializer: called once in each worker as it starts, with ``initargs``
            (to load a model or open a connection there).
        max_tasks_per_child: replace a worker after it has run this many tasks.
        start_method: ``"fork"``, ``"forkserver"`` or ``"spawn"``; None picks forkserver
            on Linux, spawn elsewhere.
        max_queued: tasks allowed to wait for a worker; beyond it, ``run`` waits for room
            (or raises :class:`Overloaded` with ``block=False``). None means no bound.
        pools: more named pools beside ``"default"`` (which the arguments above
            describe), each with its own size and limits: ``run(..., pool="parse")``.
        monitor: a :class:`~hybrid.resources.ResourceMonitor` (e.g.
            ``adapters.psutil.PsutilMonitor()``): with one, each pool follows the
            machine's CPU and memory pressure (see :mod:`hybrid.autoscale`). The
            default, ``"auto"``, is the monitor
            :func:`~hybrid.resources.find_default_monitor` finds (psutil's, when it is
            installed), with the policy's defaults except the idle shrink. None: pools
            keep the size they are given.
        autoscale: the policy's settings, one for every pool or a mapping by pool name;
            the defaults let a pool range from 1 to its ``workers``.
        sample_interval_s: how often the monitor is sampled (default 0.5 s).
        share_threshold_bytes: ``run`` sends arguments holding a buffer (bytes,
            bytearray, memoryview, NumPy array) larger than this through shared memory
            instead of the pipe, and the call's large results come back the same way;
            ``map`` does the same for inputs that are such buffers. None turns it off.
        forward_logs: workers send their log records to this process's loggers of the
            same name, tagged with ``worker_pid`` and ``task_id`` (see :mod:`hybrid.logs`);
            set up by each worker at start, before ``initializer``. Workers send records
            at the lowest level the parent's loggers accept when the engine starts.
        observers: told about every task as it is submitted, starts and settles (see
            :mod:`hybrid.observers`); more with :meth:`add_observer`.
        profile: profile every call in every worker from the start (cProfile);
            :meth:`collect_profile` gives the merged data. Off by default, at no cost.
        **limits: the default pool's other :class:`PoolSpec` settings
            (``max_rss_bytes``, ``memory_limit_bytes``, ``pin_cpus``, ``nice``).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        start_method: str | None = None,
        max_queued: int | None = None,
        pools: Mapping[str, PoolSpec] | None = None,
        monitor: ResourceMonitor | Literal["auto"] | None = "auto",
        autoscale: AutoscaleConfig | Mapping[str, AutoscaleConfig] | None = None,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        share_threshold_bytes: int | None = DEFAULT_THRESHOLD_BYTES,
        forward_logs: bool = False,
        observers: Iterable[TaskObserver] = (),
        profile: bool = False,
        **limits: Any,
    ) -> None:
        default = PoolSpec(
            workers=workers,
            initializer=initializer,
            initargs=tuple(initargs),
            max_tasks_per_child=max_tasks_per_child,
            max_queued=max_queued,
            **limits,
        )
        self._specs: dict[str, PoolSpec] = {DEFAULT_POOL: default, **(pools or {})}
        for name, spec in self._specs.items():
            if not isinstance(spec, PoolSpec):
                raise TypeError(f"pool {name!r} must be described by a PoolSpec, not {spec!r}")
        # Read once: stats() is called on every metrics scrape, and these read cgroup files.
        self._usable_cpus = usable_cpus()
        self.workers = self._usable_cpus if workers is None else workers
        self.start_method = start_method or default_start_method()
        if self.start_method not in multiprocessing.get_all_start_methods():
            methods = ", ".join(multiprocessing.get_all_start_methods())
            raise ValueError(f"start_method must be one of {methods}, not {start_method!r}")
        self._monitor_by_default = monitor == "auto"
        if monitor == "auto":
            monitor = find_default_monitor()
        if autoscale is not None and monitor is None:
            raise ValueError(
                "autoscale needs a monitor: Engine(monitor=adapters.psutil.PsutilMonitor()), "
                "or psutil installed (pip install 'hybrid-engine[monitor]')"
            )
        self._monitor = monitor
        self._share_threshold_bytes = share_threshold_bytes
        self._sample_interval_s = sample_interval_s
        self._autoscale = autoscale
        self._autoscaler: AutoscaleDriver | None = None
        self._memory_truth: MemoryTruth | None = None
        self._pools: dict[str, Pool] = {}
        self._next_task_id = 1
        self._forward_logs = forward_logs
        self._observers: list[TaskObserver] = list(observers)
        self._log_forwarding: LogForwarding | None = None  # made at start (it holds sockets)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._profile_always = profile
        self._profiling = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self._pools else "not started"
        return f"<Engine workers={self.workers} start_method={self.start_method} {state}>"

    @property
    def closed(self) -> bool:
        return self._closing is not None

    @property
    def pools(self) -> tuple[str, ...]:
        return tuple(self._specs)

    # Life cycle

    async def start(self) -> None:
        """Start the workers; done by ``async with`` or on first use. Safe to call again."""
        if self._closing is not None:
            raise EngineClosed("the engine is closed")
        if self._starting is None:
            self._loop = asyncio.get_running_loop()
            self._starting = self._loop.create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        context = worker_context(self.start_method)
        if isinstance(context, multiprocessing.context.ForkServerContext):
            # A worker forked from a server that has hybrid imported starts without
            # importing it again: the bulk of a replacement's start. (The default preload,
            # __main__, does nothing when the server is not given the main module's path.)
            context.set_forkserver_preload([*_main_preload(), "hybrid", "hybrid._core.worker"])
        log_to = None
        if self._forward_logs:
            self._log_forwarding = LogForwarding()
            self._log_forwarding.start()
            log_to = self._log_forwarding.initargs
        pools = {
            name: Pool(
                name, spec, spec.workers or self._usable_cpus, context, log_to, self._observers
            )
            for name, spec in self._specs.items()
        }
        results = await asyncio.gather(
            *(pool.start() for pool in pools.values()),
            _sweep_orphans_once(),
            return_exceptions=True,
        )
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            await asyncio.gather(*(pool.close(cancel=True) for pool in pools.values()))
            raise errors[0]
        self._pools = pools
        if self._profile_always:
            self._apply_profiling(True)
        if self._monitor is not None:
            self._autoscaler = AutoscaleDriver(
                pools, self._monitor, self._autoscale_configs(), self._sample_interval_s
            )
            self._autoscaler.start()

    def _autoscale_configs(self) -> dict[str, AutoscaleConfig]:
        chosen = self._autoscale
        configs = {}
        for name, spec in self._specs.items():
            if isinstance(chosen, AutoscaleConfig):
                config = chosen
            elif chosen is not None and name in chosen:
                config = chosen[name]
            else:
                config = AutoscaleConfig(max_workers=spec.workers or self._usable_cpus)
                if self._monitor_by_default:
                    # Followed without being asked for: it gives way to other tenants'
                    # CPU and to memory pressure, but keeps the size it was given when idle.
                    config = dataclasses.replace(config, idle_shrink_after_s=None)
            if config.max_rss_bytes is None and spec.max_rss_bytes is not None:
                config = dataclasses.replace(config, max_rss_bytes=spec.max_rss_bytes)
            configs[name] = config
        return configs

    async def close(self, *, cancel: bool = False) -> None:
        """Stop taking work, let running and queued tasks finish, and join every worker.

        With ``cancel=True``, queued and running tasks fail with :class:`EngineClosed`
        instead (running workers are killed). Safe to call more than once; every call
        waits until the workers are gone.
        """
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close(cancel))
        await asyncio.shield(self._closing)

    async def _close(self, cancel: bool) -> None:
        try:
            if self._starting is not None:
                try:
                    await self._starting
                except Exception:
                    return
            if self._autoscaler is not None:
                await self._autoscaler.stop()
            while self._background:  # stopped streams, each ending within its grace
                await asyncio.gather(*self._background, return_exceptions=True)
            await asyncio.gather(*(pool.close(cancel=cancel) for pool in self._pools.values()))
        finally:
            if self._log_forwarding is not None:
                # After the workers are gone: every record they sent is logged first.
                await asyncio.to_thread(self._log_forwarding.stop)

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Leaving on an error (Ctrl-C included) should not wait for long work to finish.
        await self.close(cancel=exc_type is not None)

    # Work

    @overload
    async def run(
        self,
        fn: Callable[[*Ts], Coroutine[Any, Any, R]],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> R: ...

    @overload
    async def run(
        self,
        fn: Callable[[*Ts], R],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> R: ...

    async def run(
        self,
        fn: Callable[[*Ts], Any],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Run ``fn(*args)`` in a worker process and return its result.

        An async ``fn`` runs to completion on the worker's own event loop (uvloop's when
        installed), kept for the worker's life; timeouts, cancellation, crashes and
        retries go as for a sync one. One call at a time runs in a worker either way.

        The same as ``await (await engine.submit(fn, *args, ...))``. Keyword arguments for
        ``fn`` go through ``functools.partial``, as with ``run_in_executor``.

        Args:
            timeout: seconds the task may run in its worker (queue time excluded); past
                it the worker is killed and replaced and :class:`TaskTimeout` is raised.
            retries: times to run the task again if its worker dies under it; the task's
                own exceptions are never retried.
            block: when the queue is full (``max_queued``), wait for room; with False,
                raise :class:`Overloaded` at once.
            pool: the named pool to run in.
            key: tasks with the same key run on the same worker while it lives, so its
                warm caches are reused; without a key, the least loaded worker runs it.
            on_progress: called on the loop as ``on_progress(done, total)`` with what the
                call reports through :func:`hybrid.report_progress` (the latest report
                about every 0.1 s, and the last one before the result is returned).
            cache: return a result kept by this :class:`~hybrid.shared.Cache`
                (``MemoryCache()``, or ``adapters.redis.RedisCache`` shared across hosts)
                under the key :func:`~hybrid.shared.call_key` gives the call, else run the
                call and keep its result there. Identical calls running at once run once.
                Exceptions are never cached.

        Raises:
            Exception: the task's own exception, with the worker's traceback as
                ``__cause__``; :class:`WorkerCrashed`, :class:`TaskTimeout`,
                :class:`NotPicklable`, :class:`EngineClosed` or :class:`Overloaded`;
                ``TypeError`` with ``cache`` for a call that cannot be cached (``fn`` has
                no importable name, or an argument does not pickle).

        Cancellation: a queued task is removed without running; a running one has its
        worker killed and replaced. With ``cache``, the call goes on while other
        identical calls still wait for it.
        """
        handle = await self.submit(
            fn, *args, timeout=timeout, retries=retries, block=block, pool=pool, key=key,
            cache=cache, on_progress=on_progress,
        )  # fmt: skip
        return await handle

    @overload
    async def submit(
        self,
        fn: Callable[[*Ts], Coroutine[Any, Any, R]],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TaskHandle[R]: ...

    @overload
    async def submit(
        self,
        fn: Callable[[*Ts], R],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> TaskHandle[R]: ...

    async def submit(
        self,
        fn: Callable[[*Ts], Any],
        *args: *Ts,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        cache: Cache | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Any:
        """Queue ``fn(*args)`` and return its :class:`TaskHandle` without waiting for it.

        Takes what :meth:`run` takes, and the call goes the same way: through ``cache``,
        then shared memory for large buffers, then a worker. Returns once the call is
        queued: with ``block`` and a full queue, after waiting for room. A call through
        ``cache`` or shared memory is queued by a task of its own, so it returns at once.

        Raises:
            ``TypeError``/``ValueError`` for bad arguments; :class:`NotPicklable`,
            :class:`EngineClosed` or :class:`Overloaded` when the call cannot be queued.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        _check_run_options(timeout, retries)
        threshold = self._share_threshold_bytes
        shared = threshold is not None and (holds_large(args, threshold) or returns_large(fn))
        if cache is None and not shared:
            task = await self._submit_calls(
                fn, [args], chunk=False, timeout=timeout, retries=retries, block=block,
                pool=pool, key=key, on_progress=on_progress,
            )  # fmt: skip
            return TaskHandle(self, task.future, task.name, pool, task)
        self._check_pool_name(pool)
        if self._closing is not None:
            raise EngineClosed("the engine is closed")
        options: dict[str, Any] = {
            "timeout": timeout, "retries": retries, "block": block, "pool": pool, "key": key,
            "on_progress": on_progress,
        }  # fmt: skip
        loop = asyncio.get_running_loop()
        handle: TaskHandle[Any] = TaskHandle(self, loop.create_future(), function_name(fn), pool)
        handle._future = loop.create_task(self._run_through(handle, fn, args, cache, options))
        return handle

    async def submit_batch(
        self,
        fn: Callable[..., R],
        calls: Sequence[tuple[Any, ...]],
        *,
        timeout: float | None = None,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        kill: bool = False,
    ) -> TaskHandle[BatchResults[R]]:
        """Queue many calls of ``fn`` as one task and return its handle.

        The calls travel to one worker in one round trip and run there one after another,
        so tiny calls cost little each; each call still succeeds or fails on its own
        (:class:`BatchResults`, one :class:`CallResult` per call). A worker's death settles
        exactly the calls it touched: the finished ones keep their results, the one it
        died on is a :class:`WorkerCrashed`, the rest run again elsewhere.

        Args:
            calls: one argument tuple per call.
            timeout: seconds the whole batch may run; past it the worker is killed and
                the calls not yet finished fail with :class:`TaskTimeout`.

            kill: on cancellation, also kill the worker running one of the calls (it is
                replaced), so that none runs past the cancel; by default it finishes.

        Cancellation: calls not yet started are skipped (``CallResult.ran`` is False);
        the running one finishes, or with ``kill`` is stopped with its worker.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        _check_run_options(timeout, 0)
        task = await self._submit_calls(
            fn, list(calls), chunk=True, timeout=timeout, block=block, pool=pool
        )
        task.kill_on_cancel = kill
        results: asyncio.Future[BatchResults[R]] = asyncio.get_running_loop().create_future()
        task.future.add_done_callback(functools.partial(_as_batch_results, results, task.name))
        return TaskHandle(self, results, task.name, pool, task)

    async def _run_through(
        self,
        handle: TaskHandle[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        cache: Cache | None,
        options: dict[str, Any],
    ) -> Any:
        """A call's way through the cache and shared memory to a worker."""
        if cache is None:
            return await self._compute(handle, fn, args, options)
        compute = functools.partial(self._compute, handle, fn, args, options)
        if holds_large(args):  # hashing 100 MB takes long: not on the loop's thread
            cache_key = await asyncio.to_thread(call_key, fn, args)
        else:
            cache_key = call_key(fn, args)
        return await cache.get_or_compute(cache_key, compute)

    async def _compute(
        self,
        handle: TaskHandle[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        options: dict[str, Any],
    ) -> Any:
        threshold = self._share_threshold_bytes
        if threshold is None or not (holds_large(args, threshold) or returns_large(fn)):
            task = await self._submit_calls(fn, [args], chunk=False, **options)
            handle._task = task
            return await self._result_of(task)
        packed_args, lease = await pack_async(args, threshold)
        try:
            lease.expect_result(expected_result_bytes(fn))
            task = await self._submit_calls(
                call_packed,
                [(fn, packed_args, lease.reply)],
                chunk=False,
                described_as=fn,
                **options,
            )
            handle._task = task
            packed_result = await self._result_of(task)
            result = await lease.take_result_async(packed_result)
            note_result(fn, result, threshold)
            return result
        finally:
            await lease.release_async()  # after success, error, timeout, crash or cancellation

    async def _await_handle(self, handle: TaskHandle[R]) -> R:
        task = handle._task
        if task is None or handle._future is not task.future:
            return await handle._future  # a batch, or the way through cache/shared memory
        result: R = await self._result_of(task)
        threshold = self._share_threshold_bytes
        if threshold is not None and (_is_buffer(result) or is_plain_ndarray(result)):
            note_result(task.fn, result, threshold)  # its next calls return through shared memory
        return result

    async def _result_of(self, task: Task) -> Any:
        try:
            return await task.future
        except asyncio.CancelledError:
            self._pool(task.pool).cancel(task)
            raise
        except (WorkerCrashed, TaskTimeout) as exc:
            exc.task_id = task.id
            raise

    def _withdraw(self, handle: TaskHandle[Any]) -> None:
        """Cancel a handle's call: remove it if queued, kill its worker if running."""
        task = handle._task
        if task is not None and (task.future is handle._future or task.is_chunk):
            self._cancel(task)  # a batch's calls not yet run are skipped
        handle._future.cancel()

    def _cancel(self, task: Task) -> None:
        if not task.future.done():
            task.future.cancel()
        self._pool(task.pool).cancel(task)

    def map(
        self,
        fn: Callable[[T], R],
        iterable: Iterable[T] | AsyncIterable[T],
        *,
        ordered: bool = True,
        timeout: float | None = None,
        retries: int = 0,
        window: int | None = None,
        pool: str = DEFAULT_POOL,
    ) -> MapResults[R]:
        """Run ``fn`` over a sync or async iterable, yielding results as an async iterator.

        Only ``window`` inputs are in flight at once (default: enough to keep every worker
        busy), whatever the iterable's length. Leaving the ``async for`` early cancels
        what is still outstanding. A failing task raises its exception at its place
        (``ordered``) or when it completes (not ``ordered``); the rest are cancelled.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        _check_run_options(timeout, retries)
        self._check_pool_name(pool)
        return MapResults(
            self,
            fn,
            iterable,
            ordered=ordered,
            timeout=timeout,
            retries=retries,
            window=window,
            pool=pool,
        )

    @overload
    def stream(
        self,
        fn: Callable[[*Ts], AsyncIterable[R]],
        *args: *Ts,
        window: int = ...,
        timeout: float | None = ...,
        pool: str = ...,
    ) -> AsyncGenerator[R, None]: ...

    @overload
    def stream(
        self,
        fn: Callable[[*Ts], Iterable[R]],
        *args: *Ts,
        window: int = ...,
        timeout: float | None = ...,
        pool: str = ...,
    ) -> AsyncGenerator[R, None]: ...

    def stream(
        self,
        fn: Callable[[*Ts], Any],
        *args: *Ts,
        window: int = DEFAULT_STREAM_WINDOW,
        timeout: float | None = None,
        pool: str = DEFAULT_POOL,
    ) -> AsyncGenerator[Any, None]:
        """Run a generator function (sync or async) in a worker; yield its items as they come.

        ``async for item in engine.stream(gen_fn, *args)``. The worker's generator runs at
        most ``window`` items ahead of the consumer (backpressure). Its exception, or the
        engine's (:class:`WorkerCrashed`, :class:`TaskTimeout`), is raised after the items
        it yielded before it. ``timeout`` bounds the whole run in the worker, waits for the
        consumer included. A stream is never retried (its items could repeat).

        Cancellation: when the consumer stops (``break``, an exception, cancellation, or
        ``aclose()``; use ``contextlib.aclosing`` to make it immediate rather than left
        to the garbage collector), the worker's generator is closed at its next ``yield``
        (its ``finally`` blocks run) and the worker takes the next task; a generator that
        does not yield within a second has its worker killed and replaced.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {fn!r}")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f"window must be a whole number >= 1, not {window!r}")
        _check_run_options(timeout, 0)
        self._check_pool_name(pool)
        return stream_items(self, fn, args, window=window, timeout=timeout, pool=pool)

    def executor(
        self, *, timeout: float | None = None, retries: int = 0, pool: str = DEFAULT_POOL
    ) -> EngineExecutor:
        """A ``concurrent.futures.Executor`` whose calls run in this engine's workers.

        For ``loop.run_in_executor(engine.executor(), fn, x)`` and for threads that call
        ``executor.submit(fn, x).result()``. Each call gets ``timeout``, ``retries`` and
        ``pool`` as with :meth:`run`. Call this on the engine's loop; the executor may
        then be used from any thread. See :class:`~hybrid.EngineExecutor` for the
        ``Executor`` semantics it keeps.
        """
        _check_run_options(timeout, retries)
        self._check_pool_name(pool)
        if self._closing is not None:
            raise EngineClosed("the engine is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not None and loop is not self._loop:
            raise RuntimeError("this engine belongs to another event loop")
        return EngineExecutor(self, loop, timeout=timeout, retries=retries, pool=pool)

    def profile(self) -> Profile:
        """Profile the calls run in every worker while ``async with engine.profile() as prof``.

        On leaving the block, ``prof.stats`` is one ``pstats.Stats`` merged from every
        worker (see :class:`~hybrid.Profile`). Only one profile may be open at a time;
        with ``Engine(profile=True)`` use :meth:`collect_profile` instead.
        """
        if self._profiling:
            raise RuntimeError("a profile is open already (or the engine profiles always)")
        return Profile(self)

    async def collect_profile(self) -> pstats.Stats:
        """The workers' profile data since the last collection, merged (``profile=True``)."""
        return await self._collect_profile(keep_profiling=self._profile_always)

    async def _set_profiling(self, on: bool) -> None:
        if on and self._profiling:
            raise RuntimeError("a profile is open already (or the engine profiles always)")
        await self.start()
        self._apply_profiling(on)

    def _apply_profiling(self, on: bool) -> None:
        self._profiling = on
        for pool in self._pools.values():
            for slot in pool.slots:  # a slot keeps its flag across restarts of its worker
                slot.profile = on

    async def _collect_profile(self, *, keep_profiling: bool) -> pstats.Stats:
        if not keep_profiling:
            await self._set_profiling(False)
        slots = [slot for pool in self._pools.values() for slot in pool.slots]
        return await collect_profile(slots)

    def _in_background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` on its own, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def resize(self, workers: int, *, pool: str = DEFAULT_POOL) -> None:
        """Grow or shrink a pool to ``workers`` processes.

        Growing waits until the new workers serve. Shrinking lets the leaving workers
        finish what they hold first: no task is lost, failed or run twice.
        """
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, not {workers!r}")
        if self._closing is not None:
            raise EngineClosed("the engine is closed")
        await self.start()
        await self._pool(pool).resize(workers)
        if self._profiling:
            self._apply_profiling(True)  # the new workers too
        if pool == DEFAULT_POOL:
            self.workers = workers

    async def _submit_calls(
        self,
        fn: Callable[..., Any],
        calls: list[Any],
        *,
        chunk: bool,
        timeout: float | None = None,
        retries: int = 0,
        block: bool = True,
        pool: str = DEFAULT_POOL,
        key: Hashable | None = None,
        described_as: Callable[..., Any] | None = None,
        one_arg: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> Task:
        """Queue calls of ``fn`` as one task; a chunk's future gets per-call outcomes.

        ``calls`` holds argument tuples, or with ``one_arg`` single arguments.
        """
        if self._closing is not None:
            self._tell_refused(described_as or fn, pool, "rejected")
            raise EngineClosed("the engine is closed")
        if not self._pools:
            await self.start()
        target = self._pool(pool)
        if target.must_wait_for_room():
            try:
                await target.reserve(block)
            except (Overloaded, EngineClosed):
                self._tell_refused(described_as or fn, pool, "rejected")
                raise
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise RuntimeError("this engine belongs to another event loop")
        try:
            task = Task(
                fn,
                calls,
                loop.create_future(),
                chunk=chunk,
                timeout_s=timeout,
                retries=retries,
                submitted_at=loop.time(),
                key=key,
                pool=pool,
                described_as=described_as,
                one_arg=one_arg,
                task_id=self._next_task_id,
            )
        except NotPicklable:
            self._tell_refused(described_as or fn, pool, "failed")
            raise
        self._next_task_id += len(calls)
        if on_progress is not None:
            task.on_progress = on_progress
            task.future.add_done_callback(lambda _: deliver_final(task))
        target.submit(task)
        if self._observers:
            tell(self._observers, "task_submitted", task.event())
            task.future.add_done_callback(functools.partial(self._tell_settled, task))
        return task

    def _tell_refused(self, fn: Callable[..., Any], pool: str, outcome: str) -> None:
        if self._observers:
            event = TaskEvent(0, function_name(fn), pool)
            tell(self._observers, "task_submitted", event)
            tell(self._observers, "task_settled", dataclasses.replace(event, outcome=outcome))

    def _tell_settled(self, task: Task, future: asyncio.Future[Any]) -> None:
        now = future.get_loop().time()
        tell(self._observers, "task_settled", task.event(outcome_of(future), now))

    def add_observer(self, observer: TaskObserver) -> None:
        """Tell ``observer`` about every task from now on (see :mod:`hybrid.observers`)."""
        if observer not in self._observers:
            self._observers.append(observer)

    def remove_observer(self, observer: TaskObserver) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def stats(self, pool: str = DEFAULT_POOL) -> EngineStats:
        """A snapshot of a pool: workers, queue, counters and task-time percentiles, the
        machine's usable CPUs and memory, and the autoscaling policy's state."""
        snapshot = self._pool(pool).stats()
        autoscale = self._autoscaler.state(pool) if self._autoscaler is not None else None
        return dataclasses.replace(
            snapshot,
            usable_cpus=self._usable_cpus,
            memory_limit_bytes=self._memory_limit_bytes(),
            autoscale=autoscale,
        )

    def _memory_limit_bytes(self) -> int:
        if self._memory_truth is None:
            self._memory_truth = memory_truth()
        return self._memory_truth.total_bytes

    def bound_worker(self, key: Hashable, *, pool: str = DEFAULT_POOL) -> int | None:
        """The index of the worker that tasks with this key go to, once it is bound."""
        return self._pool(pool).bound_worker(key)

    def _pool(self, name: str) -> Pool:
        self._check_pool_name(name)
        try:
            return self._pools[name]
        except KeyError:
            if self._closing is not None:
                raise EngineClosed("the engine is closed") from None
            raise EngineClosed("the engine has not started") from None

    def _check_pool_name(self, name: str) -> None:
        if name not in self._specs:
            raise ValueError(f"no pool named {name!r}; this engine has {', '.join(self._specs)}")


_swept = False  # this process has removed dead processes' leftover segments


async def _sweep_orphans_once() -> None:
    """Remove shared-memory segments left by processes killed before they could (SIGKILL).

    Once per process, by the first engine to start, in a thread: it lists ``/dev/shm``.
    """
    global _swept
    if _swept:
        return
    _swept = True
    try:
        removed = await asyncio.to_thread(remove_orphaned_segments)
    except OSError as exc:  # a sweep that cannot list the directory must not stop the engine
        logger.warning("could not look for dead processes' shared memory: %s", exc)
        return
    if removed:
        logger.info("removed %d shared-memory segments of dead processes", len(removed))


def _check_run_options(timeout: float | None, retries: int) -> None:
    if timeout is not None and (not isinstance(timeout, int | float) or not timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")


def _as_batch_results(
    results: asyncio.Future[BatchResults[Any]], name: str, done: asyncio.Future[ChunkResults]
) -> None:
    if results.done():
        return
    if done.cancelled():
        results.cancel()
    elif (error := done.exception()) is not None:
        results.set_exception(error)
    else:
        results.set_result(BatchResults(done.result(), name))


def _is_buffer(value: object) -> bool:
    return type(value) in BUFFER_TYPES
