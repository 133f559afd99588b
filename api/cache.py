"""The leaderboard page cache in Redis.

Keys are the seed's `leaderboard_cache:{sort_by}:{order}` plus a suffix for window, page and filters
(`RedisKeys.leaderboard_cache`). A value is `<generation>\\n<JSON body>`: the generation is the value of
`RedisKeys.leaderboard_generation` read BEFORE the page was queried. A lookup reads the current generation and
the entry in one MGET and serves the entry only when the two agree, so a page computed from old metrics can
never outlive a new computation, even if it was written after the computation deleted the cache keys.
(The computation must bump the generation after its transaction commits.)

Redis being down never fails a request: the lookup counts an error and the page is served from PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from hyperfollow.api.metrics import CACHE_LOOKUPS
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger

__all__ = ["CacheLookup", "LeaderboardCache"]

log = get_logger(__name__)

_NO_GENERATION = b"0"


@dataclass(frozen=True)
class CacheLookup:
    body: bytes | None
    #: The generation to stamp on a page computed now (None: Redis unreachable, do not store).
    generation: bytes | None


class LeaderboardCache:
    def __init__(self, redis: Redis, keys: RedisKeys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_s

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    def key(self, sort_by: str, order: str, suffix: str) -> str:
        return self._keys.leaderboard_cache(sort_by, order, suffix)

    async def get(self, key: str) -> CacheLookup:
        if not self.enabled:
            return CacheLookup(None, None)
        try:
            generation, value = await self._redis.mget(self._keys.leaderboard_generation, key)
        except (RedisError, OSError) as exc:
            CACHE_LOOKUPS.labels("error").inc()
            log.debug("leaderboard cache unavailable", error=str(exc))
            return CacheLookup(None, None)
        generation = generation or _NO_GENERATION
        if value is None:
            CACHE_LOOKUPS.labels("miss").inc()
            return CacheLookup(None, generation)
        stamp, _, body = value.partition(b"\n")
        if stamp != generation:
            CACHE_LOOKUPS.labels("stale").inc()
            return CacheLookup(None, generation)
        CACHE_LOOKUPS.labels("hit").inc()
        return CacheLookup(body, generation)

    async def put(self, key: str, generation: bytes | None, body: bytes) -> None:
        if not self.enabled or generation is None:
            return
        try:
            await self._redis.set(key, generation + b"\n" + body, ex=self._ttl)
        except (RedisError, OSError) as exc:
            log.debug("leaderboard cache not written", error=str(exc))

    async def clear(self) -> int:
        """Delete every leaderboard page of this namespace; return how many there were."""
        cleared = 0
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=self._keys.leaderboard_cache_pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                cleared += await self._redis.unlink(*batch)
                batch = []
        if batch:
            cleared += await self._redis.unlink(*batch)
        return cleared
