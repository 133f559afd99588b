"""A shard's figures from PostgreSQL and Redis, and the Redis cleanup when a shard is deleted.

Synchronous clients (SQLAlchemy + psycopg, redis-py, RQ) are used from the operator's handlers through
`asyncio.to_thread`: a status refresh is one small query and three Redis commands per shard and interval.
Either store may be absent (not configured) or down; the figures are then unknown, never invented.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis
from rq import Queue
from sqlalchemy import Engine, text

from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger
from hyperfollow.core.slots import SlotRange
from hyperfollow.operator.status import Numbers

__all__ = ["ShardStats"]

log = get_logger(__name__)

#: Active traders of a slot range, and the age of the least recently refreshed one (never refreshed = since
#: first seen). Served by ix_traders_slot_last_tracked (slot, last_tracked_at) WHERE is_active.
TRADERS_QUERY = text("""
    SELECT count(*) AS traders,
           floor(extract(epoch FROM now() - min(coalesce(last_tracked_at, first_seen_at))))::bigint AS staleness
    FROM traders
    WHERE slot >= :start AND slot < :end AND is_active
""")


@dataclass
class ShardStats:
    """Reads figures and cleans up keys; build once per operator process and close at shutdown."""

    engine: Engine | None
    redis: redis.Redis | None
    keys: RedisKeys

    @classmethod
    def connect(cls, database_url: str | None, redis_url: str | None, keys: RedisKeys) -> ShardStats:
        engine = make_engine(database_url, pool_size=2, application_name="hyperfollow-operator") \
            if database_url else None
        client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5) if redis_url else None
        return cls(engine=engine, redis=client, keys=keys)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self.redis is not None:
            self.redis.close()

    def read(self, shard: str, slots: SlotRange) -> Numbers:
        """The figures that can be had right now; a store that fails is logged and its figures left unknown."""
        traders = staleness = queued = None
        feeder: str | None = None
        if self.engine is not None:
            try:
                with self.engine.connect() as conn:
                    row = conn.execute(TRADERS_QUERY, {"start": slots.start, "end": slots.end}).one()
                traders = int(row.traders)
                staleness = max(0, int(row.staleness)) if row.staleness is not None else None
            except Exception as exc:  # the database being down must not stop the operator
                log.warning("shard figures from PostgreSQL unavailable", shard=shard, error=str(exc))
        if self.redis is not None:
            try:
                queued = Queue(self.keys.track_queue(shard), connection=self.redis).count
                holder = self.redis.get(self.keys.feeder_lock(shard))
                feeder = holder.decode(errors="replace")[:253] if holder else ""
            except Exception as exc:
                log.warning("shard figures from Redis unavailable", shard=shard, error=str(exc))
                queued, feeder = None, None
        return Numbers(tracked_traders=traders, staleness_seconds=staleness, queued_jobs=queued, feeder=feeder)

    def cleanup(self, shard: str) -> list[str]:
        """Remove the shard's RQ queue (with its jobs), feeder lease and pending set; return what was removed.

        Raises redis errors (the caller retries a few times, then gives up: the lease has a TTL anyway).
        """
        if self.redis is None:
            return []
        queue = Queue(self.keys.track_queue(shard), connection=self.redis)
        removed = []
        if self.redis.exists(queue.key):
            removed.append(queue.key)
        queue.delete(delete_jobs=True)
        for key in (self.keys.feeder_lock(shard), self.keys.feeder_pending(shard)):
            with contextlib.suppress(redis.ResponseError):
                if self.redis.delete(key):
                    removed.append(key)
        return removed
