"""Activity marks in Redis: the traders seen trading, per slot bucket, for the tracking feeders.

Per address two scores (core/keys.py): the earliest trade not yet covered by a refresh (`ZADD NX`, so an
existing mark keeps its older time) and the latest trade (`ZADD GT`). One script call per flush
(`marks.lua`), each bucket's traders packed into one argument.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import redis.asyncio as aioredis

from hyperfollow.core.keys import RedisKeys, active_bucket
from hyperfollow.core.slots import slot

__all__ = ["ActivityMarks"]

_SCRIPT = (Path(__file__).parent / "marks.lua").read_text()


class ActivityMarks:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys

    async def mark(self, activity: dict[str, tuple[int, int]]) -> int:
        """Mark every address active; return the number of buckets touched."""
        buckets: dict[int, list[str]] = defaultdict(list)
        for address, (first, last) in activity.items():
            buckets[active_bucket(slot(address))].append(f"{first} {address} {last}")
        if not buckets:
            return 0
        keys: list[str] = []
        payloads: list[str] = []
        for bucket in sorted(buckets):
            keys += [self.keys.active(bucket), self.keys.active_latest(bucket)]
            payloads.append(" ".join(buckets[bucket]))
        # the client is swapped when Redis comes back after an outage, so the script is bound per call
        await self.client.register_script(_SCRIPT)(keys=keys, args=payloads)
        return len(buckets)
