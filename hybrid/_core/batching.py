"""How many queued tasks go to a worker in one round trip, from measured task times."""

from __future__ import annotations

from collections.abc import Hashable

from .area import MAX_BATCH

SHORT_TASK_S = 0.025  # a task this quick may wait behind another one already sent to its worker
BATCHABLE_TASK_S = 0.002  # tasks quicker than this share round trips
BATCH_BUDGET_S = 0.004  # estimated work in one batch; bounds the wait of the tasks behind it
EWMA_WEIGHT = 0.2  # weight of the newest sample in a function's average run time


class TaskTimes:
    """Running average run time per function, as measured inside the workers."""

    def __init__(self) -> None:
        self._mean_s: dict[Hashable, float] = {}

    def observe(self, fn_key: Hashable, elapsed_s: float) -> None:
        mean = self._mean_s.get(fn_key)
        self._mean_s[fn_key] = (
            elapsed_s if mean is None else mean + EWMA_WEIGHT * (elapsed_s - mean)
        )

    def estimate(self, fn_key: Hashable) -> float | None:
        """The function's average run time; None until it has run once."""
        return self._mean_s.get(fn_key)


def is_short(estimate_s: float | None) -> bool:
    return estimate_s is not None and estimate_s < SHORT_TASK_S


def is_batchable(estimate_s: float | None) -> bool:
    return estimate_s is not None and estimate_s < BATCHABLE_TASK_S


def batch_limit(estimate_s: float) -> int:
    """How many tasks of this run time fit in one batch's budget."""
    return max(1, min(MAX_BATCH, int(BATCH_BUDGET_S / max(estimate_s, 1e-7))))
