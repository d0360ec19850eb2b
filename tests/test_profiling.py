"""``engine.profile()``: cProfile data from real workers, merged in the parent."""

from __future__ import annotations

import asyncio
import pstats
from pathlib import Path

import pytest

import hybrid

from . import tasks
from .conftest import MakeEngine


def calls_of(stats: pstats.Stats, name: str) -> int:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]]
    raw = stats.stats  # type: ignore[attr-defined]
    return sum(entry[1] for (_, _, function), entry in raw.items() if function == name)


async def test_the_profile_names_the_hot_function_from_every_worker(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = await make_engine(workers=2)
    await engine.run(tasks.hot_spot_of_the_profile, 10)  # before the profile: not counted
    async with engine.profile() as prof:
        await engine.run(tasks.hot_spot_of_the_profile, 100_000)
        pids = await asyncio.gather(
            *(engine.run(tasks.sleep_and_pid, 0.2) for _ in range(2)),
            *(engine.run(tasks.hot_spot_of_the_profile, 50_000) for _ in range(6)),
        )
    assert len(set(pids[:2])) == 2  # both workers ran calls in the profile
    assert prof.stats is not None
    assert calls_of(prof.stats, "hot_spot_of_the_profile") == 7
    assert "hot_spot_of_the_profile" in prof.top(5)
    path = tmp_path / "workers.prof"
    prof.dump_stats(str(path))
    assert calls_of(pstats.Stats(str(path)), "hot_spot_of_the_profile") == 7
    # After the block, calls are no longer profiled.
    await engine.run(tasks.hot_spot_of_the_profile, 10)
    assert calls_of(await engine.collect_profile(), "hot_spot_of_the_profile") == 0


async def test_an_engine_made_to_profile_collects_everything(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1, profile=True)
    for _ in range(3):
        await engine.run(tasks.hot_spot_of_the_profile, 1000)
    assert calls_of(await engine.collect_profile(), "hot_spot_of_the_profile") == 3
    await engine.run(tasks.hot_spot_of_the_profile, 1000)
    assert calls_of(await engine.collect_profile(), "hot_spot_of_the_profile") == 1
    with pytest.raises(RuntimeError, match="profiles always"):
        engine.profile()


def test_profile_is_public() -> None:
    assert hybrid.Profile.__name__ == "Profile"
