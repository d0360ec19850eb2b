"""Functions the operations tests send to worker processes."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("tests.ops.worker")


def log_then_crash(message: str) -> None:
    """Log one warning, then die at once the way a segfault would (no cleanup, no flush)."""
    logger.warning(message)
    os._exit(7)


def log_lines(count: int) -> int:
    for number in range(count):
        logger.info("line %d of %d", number + 1, count)
    return os.getpid()
