"""hybrid.shared in a directory every user can write: files are ours, and memory comes back."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hybrid
from hybrid._core import engine as engine_module
from hybrid.shared import NamedLock, Sink, _segment, _spare

from ..conftest import MakeEngine


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_lock_file_is_created_for_this_user_only(tmp_path: Path) -> None:
    lock = NamedLock("hardening-mode", tmp_path)
    with lock.hold(timeout_s=5):
        assert mode_of(lock.path) == 0o600
    with lock.hold(timeout_s=5):  # an existing file of ours is used again
        pass


def test_a_symlink_planted_at_a_lock_name_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    lock = NamedLock("hardening-link", tmp_path)
    lock.path.symlink_to(target)
    with pytest.raises(PermissionError, match="symlink"):
        lock.acquire(timeout_s=0)
    assert target.read_text() == "keep me"


def test_a_lock_name_taken_by_a_directory_is_refused(tmp_path: Path) -> None:
    lock = NamedLock("hardening-dir", tmp_path)
    lock.path.mkdir()
    with pytest.raises(OSError):
        lock.acquire(timeout_s=0)


@pytest.mark.parametrize("locking", ["flock", "optimistic"])
def test_a_sink_is_created_for_this_user_only_unless_asked(tmp_path: Path, locking: str) -> None:
    private = tmp_path / "private.jsonl"
    with Sink(private, locking=locking) as sink:  # type: ignore[arg-type]
        sink.write({"a": 1})
    assert mode_of(private) == 0o600
    shared = tmp_path / "shared.jsonl"
    old_umask = os.umask(0o022)
    try:
        with Sink(shared, locking=locking, mode=0o644) as sink:  # type: ignore[arg-type]
            sink.write({"a": 1})
    finally:
        os.umask(old_umask)
    assert mode_of(shared) == 0o644


def test_a_sink_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "events.jsonl"
    link.symlink_to(target)
    with pytest.raises(OSError), Sink(link) as sink:
        sink.write({"a": 1})
    assert target.read_text() == "keep me\n"


def test_an_idle_spare_expires_on_a_timer_without_another_call() -> None:
    spares = _spare.SparePool(idle_s=0.05)
    spare = _spare.create(_segment.new_name(None, "hardening"), 4096)
    spares.give_back(spare)
    assert spares.idle_bytes() == 4096
    path = _segment.path_of(spare.name)
    deadline = time.monotonic() + 10
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not path.exists()
    assert spares.idle_bytes() == 0


KILLED_PARENT = textwrap.dedent(
    """
    import os, signal
    from hybrid.shared import _segment
    name = _segment.new_name()
    _segment.write_new(name, memoryview(b"left behind"))
    print(name, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


async def test_segments_of_a_sigkilled_parent_are_removed_when_an_engine_starts(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(hybrid.__file__).parent.parent)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", KILLED_PARENT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == -9
    orphan = _segment.path_of(done.stdout.strip())
    assert orphan.exists()
    mine = _segment.new_name()
    _segment.write_new(mine, memoryview(b"alive"))  # a live owner's segment stays
    monkeypatch.setattr(engine_module, "_swept", False)  # as in a fresh process
    try:
        await make_engine(workers=1)
        assert not orphan.exists()
        assert _segment.path_of(mine).exists()
    finally:
        _segment.unlink(mine)
