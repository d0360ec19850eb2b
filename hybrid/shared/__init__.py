"""Sharing between processes without races or copies.

- Large buffers by shared memory: :func:`publish` once, every worker maps the handle;
  :func:`pack_async` / :func:`call_packed` / :meth:`Lease.take_result_async` move large
  arguments and results of one call, and :meth:`Lease.release` always frees them (or
  keeps them, bounded, as spares for the next large call: :func:`trim_spares`).
- Shared state: :class:`Counter` (lock-free adds), :class:`SharedValue` (atomic
  read-modify-write) and :class:`NamedLock` (a timeout, and a dead holder frees it).
- :class:`Sink`: an append-only JSON Lines / CSV file for many writers; :func:`read_records`.
- Result caches for ``engine.run(fn, *args, cache=...)``: :class:`MemoryCache` (per
  process) and the :class:`Cache` protocol (``adapters.redis.RedisCache`` shares one across
  hosts), keyed by :func:`call_key` (:func:`cache_version` marks a function's version);
  :class:`SingleFlight` makes concurrent awaits of one key in a process share one computation.

Everything here is picklable and works with the fork, forkserver and spawn start methods.
"""

from .._errors import LeaseReleased, LockTimeout, OptimisticConflict
from ._cache import Cache, MemoryCache, cache_version, call_key
from ._counter import Counter
from ._flight import SingleFlight
from ._lease import Lease, Reply
from ._lock import NamedLock
from ._payload import (
    DEFAULT_THRESHOLD_BYTES,
    call_packed,
    call_packed_kw,
    holds_large,
    pack,
    pack_async,
    pack_result,
    unpack,
    unpack_result,
)
from ._published import Published, SharedBytes, publish
from ._reading import read_records
from ._segment import leftover_segments, remove_orphaned_segments
from ._sink import Sink
from ._spare import trim_spares
from ._value import SharedValue

__all__ = [
    "DEFAULT_THRESHOLD_BYTES",
    "Cache",
    "Counter",
    "Lease",
    "LeaseReleased",
    "LockTimeout",
    "MemoryCache",
    "NamedLock",
    "OptimisticConflict",
    "Published",
    "Reply",
    "SharedBytes",
    "SharedValue",
    "SingleFlight",
    "Sink",
    "cache_version",
    "call_key",
    "call_packed",
    "call_packed_kw",
    "holds_large",
    "leftover_segments",
    "pack",
    "pack_async",
    "pack_result",
    "publish",
    "read_records",
    "remove_orphaned_segments",
    "trim_spares",
    "unpack",
    "unpack_result",
]
