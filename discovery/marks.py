"""Activity marks in Redis: the traders seen trading, per slot bucket, for the tracking feeders.

Per address two scores (core/keys.py): the earliest trade not yet covered by a refresh (`ZADD NX`, so an
existing mark keeps its older time) and the latest trade (`ZADD GT`). One pipeline per flush, one command
per bucket touched.
"""

from __future__ import annotations

from collections import defaultdict

import redis.asyncio as aioredis

from hyperfollow.core.keys import RedisKeys, active_bucket
from hyperfollow.core.slots import slot

__all__ = ["ActivityMarks"]


class ActivityMarks:
    def __init__(self, client: aioredis.Redis, keys: RedisKeys) -> None:
        self.client = client
        self.keys = keys

    async def mark(self, activity: dict[str, tuple[int, int]]) -> int:
        """Mark every address active; return the number of buckets touched."""
        earliest: dict[int, dict[str, int]] = defaultdict(dict)
        latest: dict[int, dict[str, int]] = defaultdict(dict)
        for address, (first, last) in activity.items():
            bucket = active_bucket(slot(address))
            earliest[bucket][address] = first
            latest[bucket][address] = last
        if not earliest:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for bucket in sorted(earliest):
                pipe.zadd(self.keys.active(bucket), earliest[bucket], nx=True)
                pipe.zadd(self.keys.active_latest(bucket), latest[bucket], gt=True)
            await pipe.execute()
        return len(earliest)
