"""One grid for periodic wake-ups, so that the watches of a process wake together.

A sleeping process pays for every wake-up, whatever it then does: on a virtual machine
about 0.1-0.2 ms of CPU for the timer, the switch and cold caches, several times the
cost of a look at a worker's heartbeat. Watches that each sleep a fixed interval drift
apart and wake the loop one by one. Aligned on multiples of their interval on the loop's
clock, watches with the same interval (or with intervals that divide one another) share
one wake-up. The engine's worker watch, :class:`hybrid.lag.LoopLagWatch` and the aiohttp
adapter's disconnect check all use it; periodic work of an application can join them::

    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(ticks.until_next(loop.time(), 0.1))
        look_around()
"""

from __future__ import annotations

import math

# A time this close before a grid point (as a fraction of the interval) is taken as on
# it: timers may fire a little early (uvloop counts in whole milliseconds), and a watch
# that did would otherwise sleep again for a moment and wake the loop twice.
EARLY_FRACTION = 0.05


def until_next(now_s: float, interval_s: float) -> float:
    """Seconds from ``now_s`` to the next multiple of ``interval_s``.

    Args:
        now_s: the current time on the clock the grid is laid on (``loop.time()``).
        interval_s: the grid's spacing, in seconds.

    Returns:
        A delay over ``EARLY_FRACTION * interval_s`` and at most ``(1 + EARLY_FRACTION)
        * interval_s``: a time just short of a grid point counts as on it, so the next
        wake-up is a whole interval away rather than a moment later.

    Raises:
        ValueError: ``interval_s`` is not a positive number.
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be > 0, not {interval_s!r}")
    points_passed = math.floor(now_s / interval_s + EARLY_FRACTION)
    return (points_passed + 1) * interval_s - now_s
