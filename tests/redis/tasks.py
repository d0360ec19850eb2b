"""Functions that worker nodes in the Redis tests may run (the nodes --import this module)."""

from __future__ import annotations

import os
import time


class TaskFailed(ValueError):
    """Raised on purpose by :func:`fail`."""


def add(a: int, b: int) -> int:
    return a + b


def noop(x: int) -> int:
    return x


def where(x: int) -> list[int]:
    """The call's input and the pid of the process that ran it."""
    return [x, os.getpid()]


def slow(x: int, seconds: float) -> list[int]:
    """Sleep, then report the input and the running pid (a stand-in for long work)."""
    time.sleep(seconds)
    return [x, os.getpid()]


def fail(message: str) -> None:
    raise TaskFailed(message)


def crash() -> None:
    os._exit(3)


def record(path: str, x: int, seconds: float) -> int:
    """Append this run to ``path`` (one line per execution), sleep, return ``x``."""
    with open(path, "a") as file:
        file.write(f"{x} {os.getpid()}\n")
    time.sleep(seconds)
    return x


def echo(value: object) -> object:
    return value


def record_end(path: str, x: int, seconds: float) -> int:
    """Sleep, then append ``x`` to ``path``: a side effect only a finished run leaves."""
    time.sleep(seconds)
    with open(path, "a") as file:
        file.write(f"{x} {os.getpid()}\n")
    return x


def started_then_ended(started: str, ended: str, seconds: float) -> int:
    """Write this worker's pid to ``started``, sleep, then touch ``ended``."""
    with open(started, "w") as file:
        file.write(str(os.getpid()))
    time.sleep(seconds)
    with open(ended, "w") as file:
        file.write("ended")
    return os.getpid()
