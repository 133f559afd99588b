"""Every Redis key, channel and queue name hyperfollow uses, in one place.

All names are prefixed with the namespace (`HYPERFOLLOW_REDIS_NAMESPACE`, empty by default) so that several
installs, or parallel test runs, can share one Redis. With the default namespace the seed's names hold
(`trade_events`, `leaderboard_cache:{sort_by}:{order}`).

Contract between the services (who writes, who reads):

===============================  ======  ===========================================================  =========
key                              type    meaning                                                       writer
===============================  ======  ===========================================================  =========
trade_events                     pubsub  one JSON :class:`~hyperfollow.core.events.TradeEventMessage`   workers
                                         per stored position event (the seed's channel)
trade_events:stream              stream  the same messages, bounded length, for replay (`?since=`)     workers
trade_events:published           zset    event id -> publish time (ms): dedupes republished events     workers
active:{bucket}                  zset    address -> ms time of the EARLIEST trade not yet covered by   discovery
                                         a state refresh (ZADD NX); bucket = slot // 256
active:latest:{bucket}           zset    address -> ms time of the LATEST trade (ZADD GT)              discovery
budget:{group}                   hash    GCRA state and totals of one weight budget group (budget.lua) workers
budget:{group}:penalty           string  set while the group backs off after a 429 (TTL = back-off)     workers
bench:{name}                     string  coordination of benchmark processes (start barrier)           bench
feeder:{shard}:lock              string  the shard's feeder lease (owner id, TTL, renewed)              workers
feeder:{shard}:pending           zset    address -> claim deadline (ms) of the shard's queued/running   workers
                                         batches (never twice; an expired claim is free again)
feeder:{shard}:preempt           string  id of the waiting active batch an idle batch yielded to        workers
track:{shard}                    rq      the shard's RQ queue name                                      workers
periodic                         rq      queue of the scheduler's periodic jobs (leaderboard, upkeep)   scheduler
leaderboard_cache:{sort}:{order} string  cached leaderboard pages (5 min TTL), + filters/page suffix    api
leaderboard:generation           string  bumped when a new computation lands (cache invalidation)      workers
heartbeat:{service}              string  liveness stamp of a long-running service (TTL)                 all
===============================  ======  ===========================================================  =========

A worker that refreshed a trader's state, fetched at time T, clears the activity mark only if the latest
trade is not newer than T (a trade after T is not reflected in that state); see the tracking worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hyperfollow.core.slots import SLOT_COUNT

if TYPE_CHECKING:
    import redis

__all__ = ["ACTIVE_BUCKETS", "ACTIVE_BUCKET_SLOTS", "RedisKeys", "active_bucket"]

#: Slots per activity bucket; shards' boundaries need not align with buckets (feeders filter by slot).
ACTIVE_BUCKET_SLOTS = 256
ACTIVE_BUCKETS = SLOT_COUNT // ACTIVE_BUCKET_SLOTS


def active_bucket(slot: int) -> int:
    return slot // ACTIVE_BUCKET_SLOTS


@dataclass(frozen=True)
class RedisKeys:
    """Names under one namespace. Build once per process from the settings: `RedisKeys(settings.redis_namespace)`."""

    namespace: str = ""

    def _key(self, name: str) -> str:
        return f"{self.namespace}{name}"

    # --- events ----------------------------------------------------------------------------------------
    @property
    def events_channel(self) -> str:
        return self._key("trade_events")

    @property
    def events_stream(self) -> str:
        return self._key("trade_events:stream")

    @property
    def events_published(self) -> str:
        return self._key("trade_events:published")

    # --- activity marks ----------------------------------------------------------------------------------
    def active(self, bucket: int) -> str:
        return self._key(f"active:{bucket}")

    def active_latest(self, bucket: int) -> str:
        return self._key(f"active:latest:{bucket}")

    def active_buckets_for(self, start_slot: int, end_slot: int) -> range:
        """Bucket numbers overlapping the slot range [start_slot, end_slot)."""
        return range(active_bucket(start_slot), active_bucket(end_slot - 1) + 1)

    # --- weight budget -----------------------------------------------------------------------------------
    def budget(self, group: str) -> str:
        return self._key(f"budget:{group}")

    def budget_penalty(self, group: str) -> str:
        return self._key(f"budget:{group}:penalty")

    def bench(self, name: str) -> str:
        """Scratch key of a benchmark run (e.g. the moment its worker processes start)."""
        return self._key(f"bench:{name}")

    # --- shards --------------------------------------------------------------------------------------------
    def feeder_lock(self, shard: str) -> str:
        return self._key(f"feeder:{shard}:lock")

    def feeder_pending(self, shard: str) -> str:
        return self._key(f"feeder:{shard}:pending")

    def feeder_preempt(self, shard: str) -> str:
        return self._key(f"feeder:{shard}:preempt")

    def track_queue(self, shard: str) -> str:
        """RQ queue name of a shard (RQ adds its own `rq:queue:` prefix)."""
        return self._key(f"track:{shard}")

    @property
    def periodic_queue(self) -> str:
        """RQ queue of the scheduler's periodic jobs."""
        return self._key("periodic")

    # --- leaderboard ---------------------------------------------------------------------------------------
    def leaderboard_cache(self, sort_by: str, order: str, suffix: str = "") -> str:
        return self._key(f"leaderboard_cache:{sort_by}:{order}" + (f":{suffix}" if suffix else ""))

    @property
    def leaderboard_cache_pattern(self) -> str:
        return self._key("leaderboard_cache:*")

    @property
    def leaderboard_generation(self) -> str:
        return self._key("leaderboard:generation")

    # --- liveness --------------------------------------------------------------------------------------------
    def heartbeat(self, service: str) -> str:
        return self._key(f"heartbeat:{service}")


def purge_namespace(client: redis.Redis, namespace: str) -> int:
    """Delete every key of a namespace, RQ's own included (RQ puts the queue name, and so the namespace, inside
    its keys: `rq:queue:<namespace>track:…`). For tests and benchmarks; refuses the empty namespace, which
    would match everything."""
    if not namespace:
        raise ValueError("refusing to purge the empty namespace (it matches every key)")
    stale = [*client.scan_iter(match=f"{namespace}*", count=1000),
             *client.scan_iter(match=f"rq:*{namespace}*", count=1000)]
    for start in range(0, len(stale), 500):
        client.delete(*stale[start:start + 500])
    return len(stale)
