"""The crawler's store seam: an async, transactional store of rows.

``adapters.sqlite`` implements :class:`Store` (and defines the :class:`~adapters.sqlite.Write`
it takes). Writes are grouped: every
:class:`Write` of one :meth:`Store.write` call commits in the same transaction, so a
caller can record a result and the state that says it is done atomically. Several calls
may share one transaction (the store batches them), which never splits a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from adapters.sqlite import Row, Write


@runtime_checkable
class Store(Protocol):
    """An async store with batched, atomic writes and reads that never block writes."""

    async def write(self, writes: Sequence[Write]) -> None:
        """Commit ``writes`` together; returns once they are durable.

        Cancellation: the caller stops waiting; the writes still commit.
        """
        ...

    async def read(self, sql: str, params: Row = ()) -> list[Row]:
        """Run a query on a reader and return every row."""
        ...

    async def flush(self) -> None:
        """Wait until every write submitted so far has committed."""
        ...

    async def close(self) -> None:
        """Commit what is pending and close."""
        ...
