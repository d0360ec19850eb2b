from __future__ import annotations

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine

pytestmark = pytest.mark.both_loops  # the engine's loop-facing code: see tests/conftest.py


async def test_run_returns_result_from_another_process(make_engine: MakeEngine) -> None:
    import os

    engine = await make_engine()
    assert await engine.run(tasks.square, 12) == 144
    assert await engine.run(tasks.pid_of) != os.getpid()
    assert isinstance(engine, hybrid.Engine)
