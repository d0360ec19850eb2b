"""What the connected Redis can do beyond 7.0: asked once, asked again after a reconnect.

Redis 8.2 added ``XACKDEL`` and the ``ACKED`` reference policy of ``XTRIM``/``XADD``: an
entry can be acknowledged and deleted in one step once every consumer group is done with
it, so the job stream holds only live work without a separate trimming scan. Older
servers (7.0 is the floor) get ``XACK`` plus the ``XTRIM MINID`` computed from each
group's pending entries. A restarted server may be another version: callers report the
server's run id as they see it (and connection errors), and a changed one marks the
answer stale, to be asked again on next use. redis-py reconnects on its own, so a restart
can go by without any error reaching the caller: the run id is the reliable sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis


@dataclass(frozen=True, slots=True)
class Features:
    """The newer commands a server has, and its version for the logs."""

    version: str = "unknown"
    ackdel: bool = False  # XACKDEL, XTRIM/XADD ... ACKED (Redis 8.2)
    run_id: str = ""  # the server process asked: it changes when Redis restarts

    def describe(self) -> str:
        newer = "XACKDEL, XTRIM ACKED" if self.ackdel else "none: the Redis 7.0 commands"
        return f"Redis {self.version}, newer commands used: {newer}"


BASELINE = Features()


async def detect(client: aioredis.Redis) -> Features:
    """Ask the server (``INFO server`` and ``COMMAND INFO``) which newer commands it has.

    ``COMMAND INFO`` names what this server really implements (a fork may report any
    version); redis-py parses its reply badly for unknown commands, so it is read raw.
    """
    info: dict[str, Any] = await client.info("server")
    version = str(info.get("redis_version", "unknown"))
    run_id = str(info.get("run_id", ""))
    connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        await connection.send_command("COMMAND", "INFO", "XACKDEL")
        reply: Any = await connection.read_response()
    except BaseException:
        await connection.disconnect()  # a half-read reply must not reach the next user
        raise
    finally:
        await client.connection_pool.release(connection)
    return Features(version=version, ackdel=bool(reply and reply[0]), run_id=run_id)


class FeatureCache:
    """The features of the server behind one client, detected on first use after a reset."""

    def __init__(self) -> None:
        self.current = BASELINE
        self.detections = 0
        self._stale = True

    @property
    def stale(self) -> bool:
        return self._stale

    def invalidate(self) -> None:
        """Ask again on next use: the connection dropped, the server may have changed."""
        self._stale = True

    def saw_run_id(self, run_id: str) -> None:
        """Ask again on next use if the server is not the one asked (it restarted)."""
        if run_id != self.current.run_id:
            self._stale = True

    async def refresh(self, client: aioredis.Redis) -> Features:
        """The features, asking the server only when stale."""
        if self._stale:
            self.current = await detect(client)
            self.detections += 1
            self._stale = False
        return self.current
