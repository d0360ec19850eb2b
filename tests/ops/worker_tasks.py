"""Functions the operations tests send to worker processes."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import hybrid

logger = logging.getLogger("tests.ops.worker")


def log_then_crash(message: str) -> None:
    """Log one warning, then die at once the way a segfault would (no cleanup, no flush)."""
    logger.warning(message)
    os._exit(7)


def log_lines(count: int) -> int:
    for number in range(count):
        logger.info("line %d of %d", number + 1, count)
    return os.getpid()


def log_own_task_id(x: int) -> int | None:
    """Log one line naming ``x`` and return the id the engine gave this call."""
    logger.info("call %d", x)
    return hybrid.current_task_id()


def mark_then_sleep(path: str, seconds: float) -> int:
    """Create ``path`` (the call has started), then sleep; return this worker's pid."""
    Path(path).touch()
    time.sleep(seconds)
    return os.getpid()
