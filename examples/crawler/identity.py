"""A page's canonical identity: the URL it is stored under, and the aliases that led to it.

A fetch that was redirected, or a page whose ``rel=canonical`` names another URL of the
same host, has one identity and several URLs. The page is stored under the identity
(``pages.url`` is unique: the first copy stored wins), the identity is marked done so
that it is not fetched again, and every other URL is marked ``alias`` and recorded in
``aliases``, so that resume, export and a shared frontier all see the same document once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.sqlite import Write

if TYPE_CHECKING:
    from .frontier import Outcome

QUEUED, DONE, FAILED, SKIPPED, ALIAS = 0, 1, 2, 3, 4
STATE_NAMES = {
    QUEUED: "queued", DONE: "done", FAILED: "failed", SKIPPED: "skipped", ALIAS: "alias"
}  # fmt: skip

# The identity was reached through an alias: done, unless its own fetch already said so.
MARK_IDENTITY = (
    "INSERT INTO urls (url, depth, state, status) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (url) DO UPDATE SET state = 1, status = excluded.status, reason = NULL "
    "WHERE urls.state != 1"
)
# A hop of a redirect chain: an alias, unless it was crawled (or is in flight) itself.
MARK_ALIAS = (
    "INSERT INTO urls (url, depth, state, status, reason) VALUES (?, ?, 4, ?, ?) "
    "ON CONFLICT (url) DO UPDATE SET state = 4, status = excluded.status, "
    "reason = excluded.reason WHERE urls.state = 0"
)
INSERT_ALIAS = "INSERT OR IGNORE INTO aliases (alias, url) VALUES (?, ?)"


def safe_text(text: str | None) -> str | None:
    """``text`` with what UTF-8 cannot encode (lone surrogates from hostile bytes) replaced."""
    if text is None or text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def safe_row(row: tuple[object, ...]) -> tuple[object, ...]:
    """A row whose strings can all be stored."""
    return tuple(safe_text(value) if isinstance(value, str) else value for value in row)


def alias_reason(identity: str) -> str:
    return f"alias of {identity}"


def identity_writes(
    url: str, depth: int, outcome: Outcome, insert_page: str, *, store_page: bool = True
) -> list[Write]:
    """The writes that store ``outcome``'s page under its identity and record its aliases.

    ``url`` is the URL that was asked for (its own state is set by the caller).
    """
    writes: list[Write] = []
    if outcome.page is not None and store_page:
        writes.append(Write(insert_page, [safe_row(outcome.page)]))
    identity = outcome.identity
    if identity is None or (identity == url and not outcome.aliases):
        return writes
    identity = safe_text(identity)
    reason = alias_reason(identity or "")
    others = [safe_text(alias) for alias in outcome.aliases if alias not in (url, identity)]
    if identity != url:
        writes.append(Write(MARK_IDENTITY, [(identity, depth, outcome.status)]))
    if others:
        writes.append(
            Write(MARK_ALIAS, [(alias, depth, outcome.status, reason) for alias in others])
        )
    aliases = [alias for alias in {safe_text(url), *others} if alias != identity]
    if aliases:
        writes.append(Write(INSERT_ALIAS, [(alias, identity) for alias in aliases]))
    return writes
