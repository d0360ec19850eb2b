"""Where the job stream may be cut: below what every consumer group has acknowledged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from .features import FeatureCache
    from .scripts import Scripts


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_id(client: aioredis.Redis, stream: bytes) -> bytes | None:
    """The lowest id any group still needs: its oldest pending entry, else its next one.

    Every entry below it has been delivered to and acknowledged by every group, so
    ``XTRIM MINID`` at it drops nothing unprocessed. None when the stream has no group.
    """
    groups: list[dict[str, Any]] = await client.xinfo_groups(stream)
    needed: list[tuple[int, int]] = []
    for group in groups:
        summary = await client.xpending(stream, group["name"])
        if summary["pending"]:
            needed.append(parse_id(summary["min"]))
        else:
            last_ms, last_seq = parse_id(group["last-delivered-id"])
            needed.append((last_ms, last_seq + 1))
    if not needed:
        return None
    ms, seq = min(needed)
    return f"{ms}-{seq}".encode()


async def trim_acknowledged(
    client: aioredis.Redis, scripts: Scripts, jobs: bytes, features: FeatureCache
) -> None:
    """Drop entries every group has acknowledged; nothing unprocessed is ever dropped."""
    if features.current.ackdel:
        await scripts.trim_acked(keys=[jobs])
        return
    min_id = await safe_trim_id(client, jobs)
    if min_id is not None:
        await client.xtrim(jobs, minid=min_id, approximate=False)
