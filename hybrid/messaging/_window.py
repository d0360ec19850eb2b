"""Constant-time sliding statistics the detector keeps per peer."""

from __future__ import annotations


class WindowMax:
    """The largest value seen over roughly the last ``horizon_s`` seconds.

    Values fall into ``buckets`` time buckets; the maximum covers the current bucket and
    the ones before it, so it forgets a value between ``horizon_s * (1 - 1/buckets)`` and
    ``horizon_s`` after it was added. Adding is O(1); moving to a new bucket is O(buckets).
    """

    __slots__ = ("_bucket_s", "_current", "_maxima", "value")

    def __init__(self, horizon_s: float, buckets: int = 8, initial: float = 0.0) -> None:
        self._bucket_s = horizon_s / buckets
        self._maxima = [initial] * buckets
        self._current = 0
        self.value = initial

    def add(self, value: float, now_s: float) -> None:
        """Record ``value`` observed at ``now_s``."""
        index = int(now_s / self._bucket_s)
        if index > self._current:
            self._advance(index)
        elif index < self._current:  # a clock read out of order: count it as current
            index = self._current
        slot = index % len(self._maxima)
        if value > self._maxima[slot]:
            self._maxima[slot] = value
            if value > self.value:
                self.value = value

    def _advance(self, index: int) -> None:
        count = len(self._maxima)
        for skipped in range(max(self._current + 1, index - count + 1), index + 1):
            self._maxima[skipped % count] = 0.0
        self._current = index
        self.value = max(self._maxima)


class WindowMean:
    """The mean of the last ``size`` values, kept with a running sum."""

    __slots__ = ("_next", "_sum", "_values", "count")

    def __init__(self, size: int) -> None:
        self._values = [0.0] * size
        self._next = 0
        self._sum = 0.0
        self.count = 0

    def add(self, value: float) -> None:
        """Append ``value``, dropping the oldest once the window is full."""
        size = len(self._values)
        self._sum += value - self._values[self._next]
        self._values[self._next] = value
        self._next = (self._next + 1) % size
        if self._next == 0:
            self._sum = sum(self._values)  # drop the rounding the running sum accumulated
        if self.count < size:
            self.count += 1

    @property
    def mean(self) -> float:
        """The mean of the values in the window (0.0 when empty)."""
        return self._sum / self.count if self.count else 0.0
