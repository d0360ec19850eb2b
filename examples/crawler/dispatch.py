"""Sends fetched pages to the worker processes in adaptive batches.

Each engine call costs a round trip through the parent's executor machinery, so pages
are grouped: while fewer than ``max_outstanding`` calls are out, whatever pages are
waiting go together in one call (alone when the workers keep up, in larger batches
when they fall behind). Each page still gets its own result.
"""

from __future__ import annotations

import asyncio
import contextlib

import hybrid

from .inworker import PARSE_PAGES
from .parsed import Parsed
from .urls import Scope

PARSE_TIMEOUT_S = 60.0  # a batch whose parsing (with the user hook) takes longer fails
MAX_BATCH_PAGES = 16  # pages in one engine call at most

_Waiting = tuple[str, bytes, bool, str | None, "asyncio.Future[Parsed]"]


class ParseDispatcher:
    """Parses pages in the engine's workers; use as ``async with``.

    Args:
        engine: the engine whose workers parse.
        scope: the crawl's scope, used to filter links in the workers.
        hook: the user hook, ``"module:function"``.
        max_outstanding: engine calls in flight at once (default: twice the workers).
    """

    def __init__(
        self,
        engine: hybrid.Engine,
        scope: Scope,
        hook: str | None,
        max_outstanding: int | None = None,
    ) -> None:
        self._engine = engine
        self._scope = scope
        self._hook = hook
        self._max_outstanding = max_outstanding or 2 * engine.workers
        self._waiting: list[_Waiting] = []
        self._outstanding = 0
        self._calls: set[asyncio.Task[None]] = set()
        self.calls_made = 0

    async def __aenter__(self) -> ParseDispatcher:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for call in list(self._calls):
            call.cancel()
        for call in list(self._calls):
            with contextlib.suppress(asyncio.CancelledError):
                await call

    async def parse(
        self, url: str, body: bytes, follow: bool = True, charset: str | None = None
    ) -> Parsed:
        """Parse one page in a worker; errors come back as ``Parsed.error``.

        With ``follow`` False the page's links are not wanted (and not returned);
        ``charset`` is the one its ``Content-Type`` header declared.
        """
        future: asyncio.Future[Parsed] = asyncio.get_running_loop().create_future()
        self._waiting.append((url, body, follow, charset, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._waiting and self._outstanding < self._max_outstanding:
            batch = self._waiting[:MAX_BATCH_PAGES]
            del self._waiting[:MAX_BATCH_PAGES]
            self._outstanding += 1
            call = asyncio.create_task(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _call(self, batch: list[_Waiting]) -> None:
        try:
            results = await self._engine.run(
                PARSE_PAGES,
                [(url, body, follow, charset) for url, body, follow, charset, _ in batch],
                self._scope,
                self._hook,
                timeout=PARSE_TIMEOUT_S,
                retries=1,
            )
        except Exception as exc:
            failed = Parsed(error=f"parse: {type(exc).__name__}: {exc}")
            results = [failed] * len(batch)
        finally:
            self._outstanding -= 1
            self.calls_made += 1
        for (*_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._dispatch()
