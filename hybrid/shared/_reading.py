"""Reading a sink file back: whole records only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _appending
from ._records import Format, decode_line


def read_records(path: str | os.PathLike[str], format: Format = "jsonl") -> Iterator[Any]:
    """Yield the whole records of a sink file, in file order.

    A torn last line (a writer killed mid-write) is skipped. In an optimistic file only
    the committed length counts, and what a writer that died or collided left inside
    it (NUL-filled gaps, fragments of unacknowledged lines) is skipped. CSV files yield
    lists of strings, the header row included.

    Raises:
        ValueError: in a flock file, a line other than the last is not a whole record
            (the file was written by something else).
    """
    data = Path(path).read_bytes()
    optimistic = data.startswith(b"#hybrid-sink ")
    if optimistic:
        header = _appending.parse_header(data[: _appending.HEADER_BYTES])
        data = data[_appending.HEADER_BYTES : header.committed_bytes]
    *lines, _torn = data.split(b"\n")
    for line in lines:
        if not optimistic:
            yield decode_line(line, format)
            continue
        whole = line.rpartition(b"\0")[2]  # before a NUL: a dead writer's fragment
        if whole:
            try:
                record = decode_line(whole, format)
            except ValueError:
                continue
            yield record
