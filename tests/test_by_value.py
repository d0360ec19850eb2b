"""Functions a worker cannot import by name still run there, sent by value (cloudpickle).

Each way of starting a program is a real ``python`` subprocess, and the work is shown to
have run in a worker by its pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import hybrid

from .conftest import MakeEngine

PROGRAM = textwrap.dedent(
    """
    import asyncio, json, os
    import hybrid

    class Point:
        def __init__(self, x):
            self.x = x

    def square(x):
        return x * x

    # Globals of __main__ are not shared between things sent by value apart, so the
    # initializer leaves its mark in the process, as a module's would be.
    def remember(value):
        os.environ["REMEMBERED"] = value

    def remembered(_):
        return os.environ["REMEMBERED"], os.getpid()

    async def main():
        offset = 10

        def add_offset(x):
            return x + offset, os.getpid()

        async with hybrid.Engine(workers=1, initializer=remember, initargs=("set",)) as engine:
            found = {
                "parent": os.getpid(),
                "main_function": await engine.run(square, 7),
                "lambda": await engine.run(lambda x: (x * 2, os.getpid()), 4),
                "closure": await engine.run(add_offset, 1),
                "main_class_argument": await engine.run(lambda p: p.x, Point(5)),
                "initializer": await engine.run(remembered, None),
            }
        print(json.dumps(found))

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


def run_program(how: str, tmp_path: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(Path(hybrid.__file__).parent.parent)}
    if how == "-c":
        command, stdin = [sys.executable, "-c", PROGRAM], None
    elif how == "-":
        command, stdin = [sys.executable, "-"], PROGRAM
    else:
        script = tmp_path / "program.py"
        script.write_text(PROGRAM)
        command, stdin = [sys.executable, str(script)], None
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("how", ["-c", "-", "script"])
def test_functions_of_the_main_module_run_in_a_worker(how: str, tmp_path: Path) -> None:
    found = run_program(how, tmp_path)
    parent = found["parent"]
    assert found["main_function"] == 49
    doubled, lambda_pid = found["lambda"]
    assert doubled == 8
    assert lambda_pid != parent
    assert found["closure"] == [11, lambda_pid]
    assert found["main_class_argument"] == 5
    assert found["initializer"] == ["set", lambda_pid]


async def test_a_lambda_and_a_closure_run_in_a_worker(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    factor = 3

    def times(x: int) -> tuple[int, int]:
        return x * factor, os.getpid()

    value, pid = await engine.run(times, 2)
    assert value == 6
    assert pid != os.getpid()
    assert await engine.run(lambda: os.getpid()) == pid


async def test_what_cannot_go_by_value_either_is_named(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    lock = threading.Lock()

    def locked() -> bool:
        with lock:
            return True

    with pytest.raises(hybrid.NotPicklable, match=r"function '.*locked'.*_thread.lock"):
        await engine.run(locked)
    with pytest.raises(hybrid.NotPicklable, match=r"argument 0 .*lock"):
        await engine.run(lambda held: held, lock)
    assert engine.stats().submitted == 0
