"""Worker life cycle: initializer, recycling, close, and no orphans however the parent ends."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine
from tests.helpers import children_of, pid_alive, wait_until_gone, worker_pids

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_the_initializer_runs_once_in_each_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2, initializer=tasks.remember_init, initargs=("model",))
    pids = set(worker_pids(engine))
    seen = [await engine.run(tasks.initialized) for _ in range(20)]
    for calls in seen:
        assert len(calls) == 1
        assert calls[0][0] == "model"
        assert calls[0][1] in pids


async def test_a_failing_initializer_stops_start_with_a_clear_error() -> None:
    engine = hybrid.Engine(workers=1, initializer=tasks.failing_init)
    with pytest.raises(hybrid.WorkerStartError, match="model file is missing") as caught:
        await engine.start()
    assert isinstance(caught.value.__cause__, RuntimeError)
    await engine.close()


async def test_max_tasks_per_child_recycles_workers(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, max_tasks_per_child=3)
    pids = [await engine.run(tasks.pid_of) for _ in range(9)]
    assert [len(set(pids[i : i + 3])) for i in (0, 3, 6)] == [1, 1, 1]
    assert len(set(pids)) == 3
    # Batched tiny tasks respect the limit too.
    per_pid = Counter([pid async for pid in engine.map(tasks.pid_of, range(30))])
    assert max(per_pid.values()) <= 3
    assert not set(per_pid) & set(pids)


async def test_close_lets_running_and_queued_tasks_finish() -> None:
    engine = hybrid.Engine(workers=1)
    await engine.start()
    pids = worker_pids(engine)
    running = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.3, "first"))
    queued = asyncio.ensure_future(engine.run(tasks.sleep_then, 0.1, "second"))
    await asyncio.sleep(0.05)
    await engine.close()
    assert await running == "first"
    assert await queued == "second"
    assert not any(pid_alive(pid) for pid in pids)
    await engine.close()  # twice is fine
    with pytest.raises(hybrid.EngineClosed):
        await engine.run(tasks.square, 2)


async def test_close_with_cancel_fails_outstanding_work() -> None:
    engine = hybrid.Engine(workers=1)
    await engine.start()
    pids = worker_pids(engine)
    running = asyncio.ensure_future(engine.run(tasks.sleep_then, 30))
    queued = asyncio.ensure_future(engine.run(tasks.sleep_then, 30))
    await asyncio.sleep(0.2)
    async with asyncio.timeout(10):
        await engine.close(cancel=True)
    for future in (running, queued):
        with pytest.raises(hybrid.EngineClosed):
            await future
    assert not any(pid_alive(pid) for pid in pids)


async def test_leaving_async_with_joins_every_worker() -> None:
    async with hybrid.Engine(workers=2) as engine:
        pids = worker_pids(engine)
        await engine.run(tasks.square, 2)
    assert not any(pid_alive(pid) for pid in pids)
    assert not set(pids) & set(children_of(os.getpid()))


PARENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import hybrid
    from tests import tasks

    async def main():
        async with hybrid.Engine(workers=2) as engine:
            pids = [w.pid for w in engine.stats().per_worker]
            print(" ".join(map(str, pids)), flush=True)
            await asyncio.gather(*(engine.run(tasks.sleep_then, 60) for _ in range(2)))

    if __name__ == "__main__":
        hybrid.run(main())
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
async def test_no_orphan_workers_when_the_parent_is_signalled(tmp_path: Path, sig: int) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root},
        # As a terminal's foreground job gets it: a shell that starts this suite in the
        # background hands its children SIGINT ignored, and Ctrl-C could not be simulated.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(parent.stdout.readline), timeout=30)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2
        assert all(pid_alive(pid) for pid in pids)
        await asyncio.sleep(0.3)  # both workers are inside their 60 s tasks
        parent.send_signal(sig)
        await asyncio.wait_for(asyncio.to_thread(parent.wait), timeout=30)
        await wait_until_gone(pids, timeout_s=10)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdout is not None
        parent.stdout.close()


async def test_no_shared_memory_is_left_behind(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=2)
    with pytest.raises(hybrid.WorkerCrashed):
        await engine.run(tasks.exit_now, 1)
    with pytest.raises(hybrid.TaskTimeout):
        await engine.run(tasks.sleep_then, 10, timeout=0.1)
    assert [y async for y in engine.map(tasks.square, range(5000))][-1] == 4999**2
    await engine.close()
    leftovers = [
        name for name in os.listdir("/dev/shm") if name.startswith(f"hybrid-{os.getpid()}-")
    ]
    assert leftovers == []
