"""The heavy variant's extraction: about 5 ms of pure-Python work per page.

The work is a fixed number of loop iterations, calibrated once per process, so that it
costs CPU time (not wall time) and the same for every crawler.
"""

from __future__ import annotations

import time
from typing import Any

TARGET_S = 0.005


def _spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def _calibrate() -> int:
    start = time.process_time()
    _spin(200_000)
    elapsed_s = max(1e-6, time.process_time() - start)
    return int(200_000 * TARGET_S / elapsed_s)


ITERATIONS = _calibrate()


def burn() -> int:
    """About 5 ms of CPU."""
    return _spin(ITERATIONS)


def extract(url: str, tree: Any) -> dict[str, Any]:
    """hybrid hook: the heavy step."""
    return {"checksum": burn()}
