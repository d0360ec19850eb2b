"""Errors reach the caller as the user would want them: type intact, traceback attached, clear."""

from __future__ import annotations

import socket
import sys

import pytest

import hybrid
from tests import tasks
from tests.conftest import MakeEngine


async def test_a_tasks_exception_keeps_its_type_and_the_workers_traceback(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(tasks.TaskFailure, match="bad input") as caught:
        await engine.run(tasks.raise_value_error, "bad input")
    cause = caught.value.__cause__
    assert isinstance(cause, hybrid.RemoteTraceback)
    assert "raise_value_error" in cause.text
    assert "tests/tasks.py" in cause.text


async def test_an_exception_that_will_not_unpickle_becomes_remote_error(
    make_engine: MakeEngine,
) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(hybrid.RemoteError, match="NeedsTwoArgs: 1-2"):
        await engine.run(tasks.raise_unpicklable_exception)
    assert await engine.run(tasks.square, 3) == 9


async def test_a_lambda_without_cloudpickle_fails_at_once_naming_the_extra(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await make_engine(workers=1)
    monkeypatch.setitem(sys.modules, "cloudpickle", None)  # as if it were not installed
    with pytest.raises(hybrid.NotPicklable, match=r"<lambda>.*hybrid-engine\[cloudpickle\]"):
        await engine.run(lambda: 1)
    assert engine.stats().submitted == 0


async def test_a_local_function_without_cloudpickle_fails_at_once(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await make_engine(workers=1)
    monkeypatch.setitem(sys.modules, "cloudpickle", None)

    def local(x: int) -> int:
        return x

    with pytest.raises(hybrid.NotPicklable, match="local"):
        await engine.run(local, 1)


async def test_an_unpicklable_argument_is_named(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    with socket.socket() as sock, pytest.raises(hybrid.NotPicklable, match=r"argument 1 .*socket"):
        await engine.run(tasks.sleep_then, 0, sock)
    assert await engine.run(tasks.square, 5) == 25


async def test_an_unpicklable_result_fails_that_task_only(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(hybrid.NotPicklable, match="result of return_lambda"):
        await engine.run(tasks.return_lambda)
    assert await engine.run(tasks.square, 6) == 36


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"workers": 0}, "workers must be"),
        ({"workers": 1.5}, "workers must be"),
        ({"start_method": "teleport"}, "start_method must be one of"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child"),
        ({"max_queued": -1}, "max_queued"),
    ],
)
def test_bad_engine_options_are_rejected_up_front(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        hybrid.Engine(**kwargs)  # type: ignore[arg-type]


async def test_bad_run_options_are_rejected(make_engine: MakeEngine) -> None:
    engine = await make_engine(workers=1)
    with pytest.raises(ValueError, match="timeout"):
        await engine.run(tasks.square, 1, timeout=-1)
    with pytest.raises(ValueError, match="retries"):
        await engine.run(tasks.square, 1, retries=-1)
    with pytest.raises(TypeError, match="callable"):
        await engine.run(42)  # type: ignore[call-overload]


def test_engine_errors_share_one_base() -> None:
    for error in (
        hybrid.TaskTimeout,
        hybrid.WorkerCrashed,
        hybrid.EngineClosed,
        hybrid.Overloaded,
        hybrid.NotPicklable,
        hybrid.RemoteError,
        hybrid.WorkerStartError,
    ):
        assert issubclass(error, hybrid.HybridError)
    assert issubclass(hybrid.TaskTimeout, TimeoutError)
    crashed = hybrid.WorkerCrashed("f", -9, 123, 1)
    assert crashed.signal == 9
    assert "SIGKILL" in str(crashed)


def test_public_names_are_all_exported() -> None:
    public = {name for name in dir(hybrid) if not name.startswith("_")}
    modules = {"annotations"}
    assert set(hybrid.__all__) == public - modules - {
        name for name in public if type(getattr(hybrid, name)).__name__ == "module"
    }
    assert hybrid.__all__ == sorted(hybrid.__all__)


def test_every_error_hybrid_defines_derives_from_hybrid_error() -> None:
    from adapters.redis import JobRejected
    from adapters.sqlite import SchemaTooNew
    from hybrid import _errors

    defined = [
        value
        for value in vars(_errors).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == _errors.__name__
    ]
    assert len(defined) >= 17
    for error in [*defined, JobRejected, SchemaTooNew]:
        if error is not hybrid.RemoteTraceback:  # a cause attached to the task's own error
            assert issubclass(error, hybrid.HybridError), error
        assert error.__name__ in (_errors.__doc__ or ""), f"{error.__name__} is not in the tree"
        if error in defined and error is not hybrid.RemoteTraceback:
            assert error.__name__ in hybrid.__all__
    assert issubclass(hybrid.LockTimeout, TimeoutError)
    assert issubclass(hybrid.TransportClosed, ConnectionError)


def test_the_names_type_checkers_see_are_the_exported_table() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(hybrid))
    guarded = next(node for node in tree.body if isinstance(node, ast.If))
    seen = {
        alias.name: "." * node.level + (node.module or "")
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == hybrid._EXPORTS
