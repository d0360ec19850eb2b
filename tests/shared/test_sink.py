"""File sinks written by many processes at once, some of them killed mid-write."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from hybrid.shared import Sink, read_records

from . import workers


def acknowledged(ack_paths: list[Path]) -> list[str]:
    """Ids whose batch returned; a torn last ack line (killed mid-ack) does not count."""
    ids: list[str] = []
    for path in ack_paths:
        if path.exists():
            *lines, _torn = path.read_text().split("\n")
            ids.extend(lines)
    return ids


def run_writers(
    sink: Sink, tmp_path: Path, *, killed: int, survivors: int, start_method: str
) -> list[str]:
    """Start writers (the first ``killed`` get SIGKILL mid-run); return acknowledged ids."""
    context: Any = multiprocessing.get_context(start_method)
    processes = []
    acks = []
    for writer in range(killed + survivors):
        ack = tmp_path / f"ack-{writer}"
        acks.append(ack)
        # Doomed writers send 40 MB batches, so the kill often lands inside a write.
        batches, size, pad = (1000, 400, 100_000) if writer < killed else (30, 100, 200)
        process = context.Process(
            target=workers.write_records, args=(sink, writer, batches, size, str(ack), pad)
        )
        process.start()
        processes.append(process)
    sink.write_many({"id": f"parent-{n}", "pad": ""} for n in range(50))
    for process in processes[:killed]:
        time.sleep(random.uniform(0.3, 0.8))
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
    for index, process in enumerate(processes):
        process.join(60)
        assert process.exitcode == (-signal.SIGKILL if index < killed else 0)
    return acknowledged(acks) + [f"parent-{n}" for n in range(50)]


def assert_exactly_once(path: Path, acked: list[str]) -> None:
    ids = [record["id"] for record in read_records(path)]
    counts = collections.Counter(ids)
    duplicates = [record_id for record_id, count in counts.items() if count > 1]
    assert duplicates == []
    missing = set(acked) - set(counts)
    assert missing == set()


def test_flock_sink_keeps_every_acknowledged_record_once_when_writers_are_killed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    with Sink(path) as sink:
        acked = run_writers(sink, tmp_path, killed=2, survivors=3, start_method="forkserver")
    assert_exactly_once(path, acked)
    *lines, tail = path.read_bytes().split(b"\n")
    for line in lines:  # no corrupt line anywhere but a possible torn tail
        assert set(json.loads(line)) == {"id", "pad"}
    assert tail == b"" or not tail.endswith(b"}")


def test_optimistic_sink_keeps_every_acknowledged_record_once(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with Sink(path, locking="optimistic") as sink:
        acked = run_writers(sink, tmp_path, killed=0, survivors=4, start_method="fork")
    assert_exactly_once(path, acked)
    assert len(list(read_records(path))) == 4 * 30 * 100 + 50


def test_optimistic_sink_survives_writers_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with Sink(path, locking="optimistic") as sink:
        acked = run_writers(sink, tmp_path, killed=1, survivors=2, start_method="fork")
        sink.write({"id": "after", "pad": ""})
    assert_exactly_once(path, [*acked, "after"])


def test_the_next_writer_cuts_off_a_torn_line_and_the_reader_skips_one(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"id":"a"}\n{"id":"tor')  # what a writer killed mid-line leaves
    assert list(read_records(path)) == [{"id": "a"}]
    with Sink(path) as sink:
        sink.write({"id": "b"})
    assert path.read_bytes() == b'{"id":"a"}\n{"id":"b"}\n'


def test_csv_sink_writes_one_header_and_whole_rows_from_many_processes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    with Sink(path, format="csv", fields=["id", "pad"]) as sink:
        acked = run_writers(sink, tmp_path, killed=0, survivors=3, start_method="spawn")
    rows = list(read_records(path, "csv"))
    assert rows[0] == ["id", "pad"]
    ids = [row[0] for row in rows[1:]]
    assert sorted(ids) == sorted(acked)
    with pytest.raises(ValueError, match="newlines"):
        Sink(path, format="csv", fields=["id"]).write({"id": "two\nlines"})


@pytest.mark.parametrize("fsync", ["never", "batch", 0.01])
def test_every_fsync_schedule_writes_the_records(tmp_path: Path, fsync: Any) -> None:
    path = tmp_path / "synced.jsonl"
    with Sink(path, fsync=fsync) as sink:
        for n in range(5):
            sink.write_many([{"n": n}, {"n": n}])
            time.sleep(0.005)
    assert [record["n"] for record in read_records(path)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


@pytest.mark.parametrize(
    "options",
    [{"fsync": "sometimes"}, {"fsync": 0}, {"locking": "none"}, {"format": "xml"}],
)
def test_bad_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Sink(tmp_path / "x", **options)
