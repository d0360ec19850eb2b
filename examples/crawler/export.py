"""Export stored pages as JSON lines or CSV, each with its encoding and its aliases."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

COLUMNS = (
    "url", "final_url", "status", "depth", "title", "text_chars",
    "meta", "canonical", "links", "extra", "transit_ms", "fetched_at", "encoding",
)  # fmt: skip
# The URLs that led to each page, space-separated (URLs never contain a space).
ALIASES = "(SELECT group_concat(alias, ' ') FROM aliases WHERE aliases.url = pages.url)"


def export_pages(db_path: str | Path, out_path: str | Path, fmt: str) -> int:
    """Write every stored page to ``out_path`` as ``jsonl`` or ``csv``; return the count."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        columns = ", ".join((*COLUMNS, ALIASES))
        rows = connection.execute(f"SELECT {columns} FROM pages ORDER BY id")
        with open(out_path, "w", newline="", encoding="utf-8") as out:
            if fmt == "csv":
                return _write_csv(rows, out)
            return _write_jsonl(rows, out)
    finally:
        connection.close()


def _write_jsonl(rows: sqlite3.Cursor, out: object) -> int:
    count = 0
    for row in rows:
        record = dict(zip((*COLUMNS, "aliases"), row, strict=True))
        record["aliases"] = sorted((record["aliases"] or "").split())
        record["meta"] = json.loads(record["meta"])
        record["extra"] = json.loads(record["extra"])
        out.write(json.dumps(record) + "\n")  # type: ignore[attr-defined]
        count += 1
    return count


def _write_csv(rows: sqlite3.Cursor, out: object) -> int:
    writer = csv.writer(out)  # type: ignore[arg-type]
    writer.writerow((*COLUMNS, "aliases"))
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
