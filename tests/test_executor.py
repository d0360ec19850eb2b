"""``engine.executor()`` and ``hybrid.to_process``: the stdlib interfaces over real workers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hybrid

from . import async_tasks, tasks
from .conftest import MakeEngine
from .helpers import pid_alive, wait_for_full_strength, wait_until_gone, worker_pids


async def test_run_in_executor_runs_in_a_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    loop = asyncio.get_running_loop()
    pid = await loop.run_in_executor(engine.executor(), tasks.pid_of, None)
    assert pid in worker_pids(engine)
    assert pid != os.getpid()


async def test_submit_and_result_from_another_thread(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    executor = engine.executor()

    def from_a_thread() -> tuple[int, list[int]]:
        squared = executor.submit(tasks.square, 9).result(timeout=20)
        return squared, list(executor.map(tasks.square, range(5), timeout=20))

    assert await asyncio.to_thread(from_a_thread) == (81, [0, 1, 4, 9, 16])


async def test_a_timeout_and_a_crash_fail_their_call_only(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    loop = asyncio.get_running_loop()
    with pytest.raises(hybrid.TaskTimeout):
        await loop.run_in_executor(engine.executor(timeout=0.2), tasks.sleep_then, 30)
    with pytest.raises(hybrid.WorkerCrashed):
        await loop.run_in_executor(engine.executor(), tasks.kill_self, signal.SIGKILL)
    assert await loop.run_in_executor(engine.executor(), tasks.square, 4) == 16


async def test_shutdown_waits_then_refuses_new_calls(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    executor = engine.executor()

    def submit_then_shut_down() -> concurrent.futures.Future[object]:
        future = executor.submit(tasks.sleep_then, 0.2, "slept")
        executor.shutdown(wait=True)
        return future

    future = await asyncio.to_thread(submit_then_shut_down)
    assert future.done()
    assert future.result() == "slept"
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(tasks.square, 1)


async def test_shutdown_with_cancel_futures_kills_a_running_call(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=1)
    [before] = worker_pids(engine)
    executor = engine.executor()
    started = tmp_path / "started"
    future = executor.submit(async_tasks.sleep_forever, str(started))
    async with asyncio.timeout(10):
        while not started.exists():
            await asyncio.sleep(0.01)
    executor.shutdown(wait=False, cancel_futures=True)
    assert future.cancelled()
    await wait_until_gone([before])  # the running call's worker was killed
    await wait_for_full_strength(engine)
    assert engine.stats().cancelled == 1


PROGRAM = textwrap.dedent(
    """
    import asyncio, json, os
    import hybrid
    from hybrid._core.default_engine import default_engine

    async def main():
        pid = await hybrid.to_process(os.getpid)
        pids = [w.pid for w in default_engine().stats().per_worker]
        return pid, pids

    pid, pids = asyncio.run(main())
    print(json.dumps({"parent": os.getpid(), "ran_in": pid, "workers": pids}))
    """
)


def test_to_process_starts_a_default_engine_and_closes_it_with_the_loop(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(hybrid.__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["ran_in"] != found["parent"]
    assert found["ran_in"] in found["workers"]
    assert not any(pid_alive(pid) for pid in found["workers"])
