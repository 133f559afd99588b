"""Periodic jobs of the tracking side, run by `hyperfollow scheduler` (RQ CronScheduler): no arguments,
settings from the process (or the environment), JSON-able summaries.

- :func:`republish_events`: the outbox's other half. Events stored but not published for
  `HYPERFOLLOW_WORKER_REPUBLISH_AFTER_S` (their worker died between commit and publish, or Redis was down)
  are published, oldest first; the publish script skips any that did reach the stream.
- :func:`prune_snapshots`: heartbeat snapshots older than `HYPERFOLLOW_WORKER_SNAPSHOT_RETENTION_DAYS` are
  deleted, except each trader's latest (the diff baseline); snapshots that record a change are kept.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import text

from hyperfollow.core.logging import get_logger
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.metrics import PUBLISHED
from hyperfollow.workers.publish import event_message
from hyperfollow.workers.store import mark_published

__all__ = ["prune_snapshots", "republish_events", "republish_pending"]

log = get_logger(__name__)

_UNPUBLISHED = text("""
    SELECT e.id, e.trader_id, t.address, e.timestamp, e.event_type, e.details
    FROM trade_events e JOIN traders t ON t.id = e.trader_id
    WHERE e.published_at IS NULL AND e.id > :after AND e.created_at < now() - CAST(:age AS float8) * interval '1 second'
    ORDER BY e.id
    LIMIT :limit
""")
_PRUNE = text("""
    DELETE FROM user_state_history
    WHERE id IN (
        SELECT s.id FROM user_state_history s
        WHERE s.is_heartbeat AND s.timestamp < now() - CAST(:days AS float8) * interval '1 day'
          AND EXISTS (SELECT 1 FROM user_state_history n
                      WHERE n.trader_id = s.trader_id AND (n.timestamp, n.id) > (s.timestamp, s.id))
        LIMIT :limit)
""")

PAGE = 500


def republish_pending(context: TrackingContext, older_than_s: float | None = None) -> int:
    """Publish every stored event left unpublished for longer than `older_than_s`; return how many."""
    age = context.settings.worker_republish_after_s if older_than_s is None else older_than_s
    total, after = 0, 0
    while True:
        with context.engine.connect() as conn:
            rows = conn.execute(_UNPUBLISHED, {"after": after, "age": age, "limit": PAGE}).all()
        if not rows:
            return total
        messages = [event_message(r.id, r.trader_id, r.address, r.timestamp, r.event_type, r.details) for r in rows]
        context.publisher.publish(messages)
        mark_published(context.engine, [r.id for r in rows])
        PUBLISHED.labels("republisher").inc(len(rows))
        total += len(rows)
        after = rows[-1].id


def republish_events() -> dict[str, Any]:
    started = time.perf_counter()
    count = republish_pending(tracking_context.current())
    if count:
        log.info("republished events", events=count)
    return {"republished": count, "seconds": round(time.perf_counter() - started, 3)}


def prune_snapshots() -> dict[str, Any]:
    context = tracking_context.current()
    days = context.settings.worker_snapshot_retention_days
    deleted = 0
    while True:
        with context.engine.begin() as conn:
            batch = conn.execute(_PRUNE, {"days": days, "limit": 5000}).rowcount
        deleted += batch
        if batch < 5000:
            break
    if deleted:
        log.info("pruned heartbeat snapshots", deleted=deleted, retention_days=days)
    return {"deleted": deleted}
