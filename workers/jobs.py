"""The RQ job: refresh one batch of a shard's traders, one after the other.

`track_batch(shard, addresses, created_ms, kind)` is what the feeder enqueues (`kind` "a" active, "i"
rotation). Traders are refreshed one at a time, so a worker never holds more than one reservation in the
shared weight budget: the budget's queue stays as short as the number of workers, and a trader that starts
trading waits behind little. Between traders the job

- renews its remaining traders' claims in `feeder:{shard}:pending` (a crashed job's claims then expire
  after `HYPERFOLLOW_WORKER_CLAIM_LEASE_S` and the feeder chooses those traders again);
- stops after the current trader on SIGTERM (the pod's grace period is far longer than one refresh);
- as a rotation batch, yields to an active batch waiting at the front of the queue (workers/selection.py).

A trader whose answer is bad (429 after retries, 5xx, malformed) fails alone: its claim is held for
`HYPERFOLLOW_WORKER_FAILURE_BACKOFF_S`, it stays due (its mark and `last_tracked_at` unchanged) and the batch
goes on. Traders refreshed by someone else since the batch was made (a retried job) are skipped. A database
or Redis failure fails the batch, which RQ retries.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rq import get_current_job

from hyperfollow.core.logging import get_logger
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.metrics import BATCH_SECONDS, PREEMPTIONS, REFRESH_SECONDS
from hyperfollow.workers.selection import ACTIVE, IDLE, BatchId, parse_batch_id, should_yield
from hyperfollow.workers.store import TraderRow, load_traders
from hyperfollow.workers.tracker import Tracker, TraderFailed

__all__ = ["BatchRunner", "BatchSummary", "track_batch"]

log = get_logger(__name__)

#: How long the preemption marker lives (it only has to outlive the wait of the batch it names).
PREEMPT_MARKER_MS = 60_000


@dataclass
class BatchSummary:
    refreshed: int = 0
    events: int = 0
    stale: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    released: int = 0
    stopped: str = ""  # "", "shutdown" or "preempted"
    failures: dict[str, int] = field(default_factory=dict)


class BatchRunner:
    def __init__(self, context: TrackingContext, shard: str) -> None:
        self.context = context
        self.shard = shard
        self.tracker = Tracker(context, shard)
        keys = context.keys
        self.pending_key = keys.feeder_pending(shard)
        self.queue_key = f"rq:queue:{keys.track_queue(shard)}"
        self.preempt_key = keys.feeder_preempt(shard)

    def run(self, addresses: list[str], created_ms: int, kind: str, job_id: str | None = None) -> BatchSummary:
        started = time.perf_counter()
        settings = self.context.settings
        summary = BatchSummary()
        current = parse_batch_id(job_id) or BatchId(kind=IDLE if kind == IDLE else ACTIVE, created_ms=created_ms)
        rows = load_traders(self.context.engine, addresses)
        untracked = [a for a in addresses if a not in rows or not rows[a].is_active]
        if untracked:  # not ours to track: forget their marks so the feeder stops offering them
            summary.unknown = len(untracked)
            self.context.marks.drop(untracked)
            self._release(untracked)
        todo = [rows[a] for a in addresses if a in rows and rows[a].is_active]
        done_elsewhere = [t for t in todo if _tracked_after(t, created_ms)]
        if done_elsewhere:
            summary.skipped = len(done_elsewhere)
            todo = [t for t in todo if not _tracked_after(t, created_ms)]
        lease_ms = int(settings.worker_claim_lease_s * 1000)
        self._renew([t.address for t in todo], lease_ms)
        for index, trader in enumerate(todo):
            remaining = [t.address for t in todo[index:]]
            if self.context.shutdown.is_set():
                summary.stopped = "shutdown"
            elif self._preempted(current, summary.refreshed + summary.failed):
                summary.stopped = "preempted"
                PREEMPTIONS.labels(self.shard).inc()
            if summary.stopped:
                summary.released = len(remaining)
                self._release(remaining)
                break
            self._refresh_one(trader, summary)
            self._renew(remaining[1:], lease_ms)
        BATCH_SECONDS.labels(self.shard, current.kind).observe(time.perf_counter() - started)
        return summary

    def _refresh_one(self, trader: TraderRow, summary: BatchSummary) -> None:
        started = time.perf_counter()
        try:
            refresh = self.tracker.refresh(trader)
        except TraderFailed as failure:
            self.tracker.count_failure(failure)
            summary.failed += 1
            summary.failures[failure.kind] = summary.failures.get(failure.kind, 0) + 1
            log.warning("trader refresh failed", shard=self.shard, trader=trader.address, kind=failure.kind,
                        error=str(failure)[:300])
            backoff_ms = int(self.context.settings.worker_failure_backoff_s * 1000)
            self.context.redis.zadd(self.pending_key, {trader.address: _now_ms() + backoff_ms})
            return
        finally:
            REFRESH_SECONDS.labels(self.shard).observe(time.perf_counter() - started)
        summary.refreshed += 1
        summary.events += refresh.events
        summary.stale += int(refresh.stale)
        self.context.redis.zrem(self.pending_key, trader.address)

    def _renew(self, addresses: list[str], lease_ms: int) -> None:
        if addresses:
            deadline = _now_ms() + lease_ms
            self.context.redis.zadd(self.pending_key, dict.fromkeys(addresses, deadline), xx=True)

    def _release(self, addresses: list[str]) -> None:
        if addresses:
            self.context.redis.zrem(self.pending_key, *addresses)

    def _preempted(self, current: BatchId, refreshed: int) -> bool:
        if current.kind != IDLE or refreshed < 1:
            return False
        front = self.context.redis.lindex(self.queue_key, 0)
        if not should_yield(current, refreshed, front, _now_ms(), self.context.settings.worker_preempt_after_ms):
            return False
        # one yield per waiting batch: the first worker to name it wins, the others carry on
        previous = self.context.redis.set(self.preempt_key, front, px=PREEMPT_MARKER_MS, get=True)
        return previous != front


def _now_ms() -> int:
    return int(time.time() * 1000)


def _tracked_after(trader: TraderRow, created_ms: int) -> bool:
    return trader.last_tracked_at is not None and trader.last_tracked_at.timestamp() * 1000 > created_ms


def track_batch(shard: str, addresses: list[str], created_ms: int, kind: str) -> dict[str, Any]:
    """The RQ job the feeder enqueues (see the module docstring)."""
    job = get_current_job()
    summary = BatchRunner(tracking_context.current(), shard).run(addresses, created_ms, kind,
                                                                 job_id=job.id if job is not None else None)
    if summary.failed or summary.stopped:
        log.info("batch done", shard=shard, **{k: v for k, v in asdict(summary).items() if v})
    return asdict(summary)
