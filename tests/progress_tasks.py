"""Functions that report progress from a worker (importable by name)."""

from __future__ import annotations

import os
import time

import hybrid


def steps(n: int, go_on_path: str | None = None) -> int:
    """Report each of ``n`` steps; after the first, wait for ``go_on_path`` if given."""
    for i in range(1, n + 1):
        hybrid.report_progress(i, n)
        if go_on_path is not None and i == 1:
            deadline = time.monotonic() + 30
            while not os.path.exists(go_on_path) and time.monotonic() < deadline:
                time.sleep(0.005)
    return os.getpid()


def without_total() -> None:
    hybrid.report_progress(42)
