"""A bounded set that forgets its oldest half when full (two generations of sets)."""

from __future__ import annotations


class RecentSet:
    """Remembers at least the last ``limit // 2`` and at most ``limit`` strings added."""

    def __init__(self, limit: int) -> None:
        self._current: set[str] = set()
        self._previous: set[str] = set()
        self._half = max(1, limit // 2)

    def add_new(self, item: str) -> bool:
        """Add ``item``; False when it was already remembered."""
        if item in self._current or item in self._previous:
            return False
        self._current.add(item)
        if len(self._current) >= self._half:
            self._previous, self._current = self._current, set()
        return True

    def __contains__(self, item: str) -> bool:
        return item in self._current or item in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
