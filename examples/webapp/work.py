"""The CPU-bound call behind the example's ``/cpu`` endpoint."""

from __future__ import annotations

DEFAULT_ROUNDS = 500_000  # about 20 ms of pure Python on a 2020s x86 core


def crunch(rounds: int = DEFAULT_ROUNDS) -> int:
    """Pure-Python arithmetic that holds the GIL for the whole call."""
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total
