"""Records as lines: JSON Lines and CSV, one record per line, never a raw newline inside."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

Format = Literal["jsonl", "csv"]


def encode_lines(records: Iterable[Any], format: Format, fields: Sequence[str] | None) -> bytes:
    """Encode records as newline-terminated UTF-8 lines.

    Raises:
        ValueError: a CSV value holds a newline (it would split the record), or a CSV
            record has the wrong fields.
        TypeError: a JSON record is not serializable.
    """
    if format == "jsonl":
        return "".join(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
            for record in records
        ).encode()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for record in records:
        writer.writerow(csv_row(record, fields))
    return buffer.getvalue().encode()


def csv_header(fields: Sequence[str]) -> bytes:
    return encode_lines([list(fields)], "csv", None)


def csv_row(record: Any, fields: Sequence[str] | None) -> list[Any]:
    if isinstance(record, Mapping):
        if fields is None:
            raise ValueError("a CSV sink given dict records needs fields=[...]")
        if set(record) != set(fields):
            raise ValueError(f"CSV record keys {sorted(record)} differ from fields {list(fields)}")
        row = [record[name] for name in fields]
    else:
        row = list(record)
        if fields is not None and len(row) != len(fields):
            raise ValueError(f"CSV record has {len(row)} values for {len(fields)} fields")
    for value in row:
        if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
            raise ValueError(f"CSV values may not contain newlines or NUL: {value!r}")
    return row


def decode_line(line: bytes, format: Format) -> Any:
    """One record from one line (without its newline).

    Raises:
        ValueError: the line is not a whole record.
    """
    text = line.decode()
    if format == "jsonl":
        return json.loads(text)
    rows = list(csv.reader([text]))
    if len(rows) != 1:
        raise ValueError(f"not one CSV record: {text!r}")
    return rows[0]
