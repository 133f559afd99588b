"""The event producer: stored position events -> the Redis stream and the `trade_events` channel.

The contract the API relies on (docs/api.md): XADD to `RedisKeys.events_stream` (bounded, `MAXLEN ~`) with
field `data` = the :class:`~hyperfollow.core.events.TradeEventMessage` JSON, then PUBLISH the same JSON on
`RedisKeys.events_channel` with `stream_id` set to the entry id. Both happen in one Lua script
(`publish.lua`), so the channel's order is the stream's order across every worker.

Events are published after their transaction commits, so a crash in between leaves them stored but not
published (`trade_events.published_at IS NULL`); the periodic republisher (workers/upkeep.py) sends those.
A crash after publishing but before `published_at` is set would send an event twice: the script remembers
published event ids (`trade_events:published`, for `HYPERFOLLOW_WORKER_PUBLISH_DEDUPE_S`) and skips them, so
the stream holds each event once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import redis

from hyperfollow.core.keys import RedisKeys

__all__ = ["EventPublisher", "event_message"]

_SCRIPT = (Path(__file__).parent / "publish.lua").read_text()

#: Events per script call (bounds the script's run time; Redis is single-threaded).
CHUNK = 200


def event_message(event_id: int, trader_id: int, trader_address: str, timestamp: datetime, event_type: str,
                  details: Mapping[str, Any]) -> dict[str, Any]:
    """The `TradeEventMessage` of a stored event, without `stream_id` (the stream entry id sets it)."""
    return {"id": event_id, "trader_id": trader_id, "trader_address": trader_address,
            "timestamp": timestamp.isoformat(), "event_type": event_type, "details": dict(details)}


class EventPublisher:
    """Publishes messages (sync redis-py). `approximate=False` trims the stream exactly (tests of trimming)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, *, maxlen: int = 100_000, approximate: bool = True,
                 dedupe_window_s: float = 3600.0) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be positive")
        self.keys = keys
        self.maxlen = maxlen
        self.approximate = approximate
        self.dedupe_window_ms = int(dedupe_window_s * 1000)
        self._script = client.register_script(_SCRIPT)

    def publish(self, messages: Sequence[Mapping[str, Any]]) -> list[str | None]:
        """Publish each message once; return its stream entry id, or None when it had been published before."""
        entries: list[str | None] = []
        for start in range(0, len(messages), CHUNK):
            args: list[Any] = [self.keys.events_channel, self.maxlen, "1" if self.approximate else "0",
                               int(time.time() * 1000), self.dedupe_window_ms]
            for message in messages[start:start + CHUNK]:
                body = {key: value for key, value in message.items() if key != "stream_id"}
                args += [str(message["id"]), orjson.dumps(body)]
            reply = self._script(keys=[self.keys.events_stream, self.keys.events_published], args=args)
            entries += [(item.decode() if isinstance(item, bytes) else str(item)) or None for item in reply]
        return entries
