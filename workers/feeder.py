"""The shard's feeder: keeps the shard's RQ queue topped up with batches, active traders first.

Exactly one feeder per shard feeds (the lease in workers/election.py); every `hyperfollow worker` pod runs a
candidate, so a Deployment of identical pods is complete. Each tick (`HYPERFOLLOW_WORKER_FEED_INTERVAL_MS`):

1. look at the queue (job ids, front first) and the number of live workers on it;
2. active first: traders with an activity mark in the shard's buckets, oldest activity first, not already
   claimed, in batches of `HYPERFOLLOW_WORKER_ACTIVE_BATCH`, at most one queued per worker, put at the
   front of the queue;
3. rotation: when no rotation batch is queued, the `BATCH_SIZE` active traders with the oldest
   `last_tracked_at` (never tracked first; `ix_traders_slot_last_tracked`), not already claimed.

Traders are claimed in `feeder:{shard}:pending` (`claim.lua`, only while holding the lease) before they are
enqueued, so no trader is in two pending batches. The queue holds a few batches at most: workers take
batches only as fast as the budget serves their refreshes, and the feeder adds one only when one was taken,
so nothing piles up. `oldest_first` selection (`HYPERFOLLOW_WORKER_SELECTION`) skips step 2: the seed's
plain rotation, kept as the benchmark's baseline.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from rq import Queue, Retry
from rq.worker_registration import get_keys as worker_keys
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger
from hyperfollow.core.slots import SlotRange
from hyperfollow.workers.election import FeederLease
from hyperfollow.workers.marks import MarkReader
from hyperfollow.workers.metrics import ACTIVE_WAITING, BATCHES, FEEDER_LEADER, QUEUE_DEPTH, STALENESS
from hyperfollow.workers.selection import (
    ACTIVE,
    IDLE,
    Kind,
    QueueView,
    active_at_front,
    active_room,
    batch_job_id,
    pick_active,
    split,
    wants_idle_batch,
)
from hyperfollow.workers.settings import TrackingSettings

__all__ = ["Feeder", "TickResult"]

log = get_logger(__name__)

_CLAIM = (Path(__file__).parent / "claim.lua").read_text()

JOB_FUNCTION = "hyperfollow.workers.jobs.track_batch"

_IDLE = text("""
    SELECT address FROM traders
    WHERE is_active AND slot >= :start AND slot < :end AND NOT (address = ANY(:pending))
    ORDER BY last_tracked_at ASC NULLS FIRST, id
    LIMIT :limit
""")
_STALENESS = text("""
    SELECT extract(epoch FROM now() - min(coalesce(last_tracked_at, first_seen_at)))
    FROM traders WHERE is_active AND slot >= :start AND slot < :end
""")

#: How often the (heavier) staleness query runs.
STALENESS_EVERY_S = 10.0
#: Pause of the rotation query after it found nothing to do.
IDLE_QUIET_S = 1.0


@dataclass(frozen=True)
class TickResult:
    active_batches: int = 0
    active_traders: int = 0
    idle_traders: int = 0


class Feeder:
    def __init__(self, settings: TrackingSettings, *, client: redis.Redis, engine: Engine, keys: RedisKeys,
                 shard: str, slots: SlotRange, owner: str) -> None:
        self.settings = settings
        self.client = client
        self.engine = engine
        self.keys = keys
        self.shard = shard
        self.slots = slots
        self.owner = owner
        self.queue = Queue(keys.track_queue(shard), connection=client)
        self.pending_key = keys.feeder_pending(shard)
        self.lease = FeederLease(client, keys, shard, owner, settings.worker_lease_ttl_s)
        self.marks = MarkReader(client, keys, slots)
        self._claim = client.register_script(_CLAIM)
        self.leader = False
        self._renewed_at = 0.0
        self._staleness_at = 0.0
        self._idle_quiet_until = 0.0
        FEEDER_LEADER.labels(shard).set(0)

    # --- leadership ------------------------------------------------------------------------------------------
    def hold_lease(self) -> bool:
        """Acquire or renew the lease as due; return whether this feeder holds it now."""
        now = time.monotonic()
        ttl = self.settings.worker_lease_ttl_s
        if self.leader:
            if now - self._renewed_at >= ttl / 3:
                self.leader = self.lease.renew()
                self._renewed_at = now
                if not self.leader:
                    log.warning("feeder lease lost", shard=self.shard, owner=self.owner)
        elif now - self._renewed_at >= min(1.0, ttl / 4):
            self._renewed_at = now
            self.leader = self.lease.acquire()
            if self.leader:
                log.info("feeder lease acquired", shard=self.shard, owner=self.owner)
        FEEDER_LEADER.labels(self.shard).set(1 if self.leader else 0)
        return self.leader

    def release(self) -> None:
        if self.leader:
            try:
                self.lease.release()
            except redis.RedisError as exc:
                log.warning("releasing the feeder lease failed (it expires)", shard=self.shard, error=str(exc))
        self.leader = False
        FEEDER_LEADER.labels(self.shard).set(0)

    # --- feeding ---------------------------------------------------------------------------------------------
    def view(self) -> QueueView:
        queued = tuple(job_id.decode() if isinstance(job_id, bytes) else job_id
                       for job_id in self.client.lrange(self.queue.key, 0, -1))
        return QueueView(queued=queued, workers=len(worker_keys(self.queue)))

    def pending(self, now_ms: int) -> set[str]:
        """Addresses claimed by a live batch (expired claims are dropped on the way)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(self.pending_key, "-inf", now_ms)
            pipe.zrange(self.pending_key, 0, -1)
            _, members = pipe.execute()
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    def tick(self) -> TickResult:
        """One round of feeding (the caller holds the lease)."""
        now_ms = int(time.time() * 1000)
        view = self.view()
        pending = self.pending(now_ms)
        s = self.settings
        active_batches = active_traders = idle_traders = 0
        if s.worker_selection == "active_first":
            room = active_room(view)
            if room:
                wanted = room * s.worker_active_batch
                chosen = pick_active(self.marks.oldest(wanted, pending), pending, self.marks.in_shard, wanted)
                at_front = active_at_front(view, now_ms, int(s.worker_idle_max_wait_s * 1000))
                for batch in split(chosen, s.worker_active_batch):
                    claimed = self._enqueue(ACTIVE, batch, now_ms, at_front=at_front)
                    active_batches += bool(claimed)
                    active_traders += len(claimed)
                    pending.update(claimed)
        if wants_idle_batch(view) and time.monotonic() >= self._idle_quiet_until:
            idle = self._oldest(pending, s.batch_size)
            if not idle:  # an empty shard, or every trader claimed: ask the database less often
                self._idle_quiet_until = time.monotonic() + IDLE_QUIET_S
            idle_traders = len(self._enqueue(IDLE, idle, now_ms, at_front=False))
        self._observe(view, now_ms)
        return TickResult(active_batches=active_batches, active_traders=active_traders, idle_traders=idle_traders)

    def _oldest(self, pending: set[str], limit: int) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(_IDLE, {"start": self.slots.start, "end": self.slots.end,
                                        "pending": sorted(pending), "limit": limit}).all()
        return [row.address for row in rows]

    def _enqueue(self, kind: Kind, addresses: list[str], now_ms: int, *, at_front: bool) -> list[str]:
        """Claim the traders, then enqueue the claimed ones as one batch; return them."""
        if not addresses:
            return []
        deadline = now_ms + int(self.settings.worker_queue_claim_s * 1000)
        reply = self._claim(keys=[self.keys.feeder_lock(self.shard), self.pending_key],
                            args=[self.owner, now_ms, deadline, *addresses])
        if not reply or int(reply[0]) != 1:
            self.leader = False  # the lease is gone: stop feeding at once
            FEEDER_LEADER.labels(self.shard).set(0)
            return []
        claimed = [item.decode() if isinstance(item, bytes) else item for item in reply[1:]]
        if not claimed:
            return []
        s = self.settings
        retry = Retry(max=s.worker_job_retries, interval=[5, 30]) if s.worker_job_retries else None
        self.queue.enqueue_call(JOB_FUNCTION, args=(self.shard, claimed, now_ms, kind),
                                timeout=s.worker_job_timeout_s, result_ttl=60, failure_ttl=86_400,
                                job_id=batch_job_id(kind, now_ms), at_front=at_front, retry=retry)
        BATCHES.labels(self.shard, kind).inc()
        return claimed

    def _observe(self, view: QueueView, now_ms: int) -> None:
        QUEUE_DEPTH.labels(self.shard, ACTIVE).set(len(view.batches(ACTIVE)))
        QUEUE_DEPTH.labels(self.shard, IDLE).set(len(view.batches(IDLE)))
        if time.monotonic() - self._staleness_at >= STALENESS_EVERY_S:
            self._staleness_at = time.monotonic()
            ACTIVE_WAITING.labels(self.shard).set(self.marks.count())
            with self.engine.connect() as conn:
                age = conn.execute(_STALENESS, {"start": self.slots.start, "end": self.slots.end}).scalar()
            STALENESS.labels(self.shard).set(float(age or 0))

    # --- the loop --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Compete for the lease and feed while holding it, until `stop` is set; then give the lease up."""
        interval = self.settings.worker_feed_interval_ms / 1000
        log.info("feeder candidate started", shard=self.shard, slots=str(self.slots), owner=self.owner)
        try:
            while not stop.is_set():
                try:
                    if self.hold_lease():
                        self.tick()
                except (redis.RedisError, SQLAlchemyError) as exc:
                    log.warning("feeder round failed; retrying", shard=self.shard, error=str(exc)[:300])
                    stop.wait(1.0)
                stop.wait(interval)
        finally:
            self.release()
            log.info("feeder stopped", shard=self.shard, owner=self.owner)
