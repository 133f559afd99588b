"""The scheduler's periodic jobs on RQ's CronScheduler, and what the upkeep jobs do, in-process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.cron import CronScheduler
from sqlalchemy import Engine, text

from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.scheduler import register_jobs, run_cron
from hyperfollow.workers.settings import TrackingSettings
from hyperfollow.workers.upkeep import prune_snapshots

TRADER = "0x" + "12" * 20


@pytest.fixture()
def context(db: Engine, redis_client: redis.Redis, database_url: str, redis_url: str, redis_namespace: str,
            keys: RedisKeys) -> Iterator[TrackingContext]:
    settings = load_settings(TrackingSettings, database_url=database_url, redis_url=redis_url,
                             redis_namespace=redis_namespace, worker_republish_after_s=1)
    made = tracking_context.configure(TrackingContext(settings=settings, database_url=database_url,
                                                      redis_url=redis_url, keys=keys))
    yield made
    tracking_context.reset()


def add_trader(db: Engine) -> int:
    with db.begin() as conn:
        return conn.execute(text("INSERT INTO traders (address, slot) VALUES (:a, 1) RETURNING id"),
                            {"a": TRADER}).scalar_one()


def test_cron_enqueues_the_periodic_jobs_and_a_worker_runs_them(context: TrackingContext, db: Engine,
                                                                redis_client: redis.Redis, keys: RedisKeys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # the leaderboard job reads its settings from the environment, like every scheduled job process
    monkeypatch.setenv("DATABASE_URL", context.database_url)
    monkeypatch.setenv("REDIS_URL", context.redis_url)
    monkeypatch.setenv("HYPERFOLLOW_REDIS_NAMESPACE", keys.namespace)
    trader_id = add_trader(db)
    with db.begin() as conn:  # an event whose worker died between commit and publish, a minute ago
        conn.execute(text("""
            INSERT INTO trade_events (trader_id, timestamp, event_type, coin, details, idempotency_key, created_at)
            VALUES (:t, now(), 'position_opened', 'BTC', '{"coin": "BTC", "current_size": 1.0}', 'k1',
                    now() - interval '1 minute')"""), {"t": trader_id})
    cron = CronScheduler(connection=redis_client)
    register_jobs(cron, keys.periodic_queue)
    assert {job.func_name for job in cron.get_jobs()} == {
        "hyperfollow.workers.leaderboard.compute_leaderboard", "hyperfollow.workers.upkeep.republish_events",
        "hyperfollow.workers.upkeep.prune_snapshots"}
    stop = threading.Event()
    thread = threading.Thread(target=run_cron, args=(cron, stop))
    thread.start()
    queue = Queue(keys.periodic_queue, connection=redis_client)
    try:
        for _ in range(50):  # interval jobs run at once; the cron ones wait for their minute
            if queue.count >= 2:
                break
            stop.wait(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert sorted(job.func_name for job in queue.get_jobs()) == [
        "hyperfollow.workers.leaderboard.compute_leaderboard", "hyperfollow.workers.upkeep.republish_events"]
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    assert redis_client.get(keys.leaderboard_generation) == b"1"  # the first leaderboard landed at start
    [entry] = redis_client.xrange(keys.events_stream)
    assert b'"event_type":"position_opened"' in entry[1][b"data"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT published_at IS NOT NULL FROM trade_events")).scalar()


def test_pruning_keeps_change_snapshots_recent_ones_and_each_traders_latest(context: TrackingContext,
                                                                            db: Engine) -> None:
    trader_id = add_trader(db)
    now = datetime.now(UTC)
    rows = [(now - timedelta(days=90), False), (now - timedelta(days=80), True), (now - timedelta(days=70), True),
            (now - timedelta(days=1), True), (now - timedelta(days=60), True)]
    with db.begin() as conn:
        for at, heartbeat in rows:
            conn.execute(text("INSERT INTO user_state_history (trader_id, timestamp, state_data, is_heartbeat) "
                              "VALUES (:t, :at, '{}', :h)"), {"t": trader_id, "at": at, "h": heartbeat})
        other = conn.execute(text("INSERT INTO traders (address, slot) VALUES (:a, 2) RETURNING id"),
                             {"a": "0x" + "34" * 20}).scalar_one()
        conn.execute(text("INSERT INTO user_state_history (trader_id, timestamp, state_data, is_heartbeat) "
                          "VALUES (:t, :at, '{}', true)"), {"t": other, "at": now - timedelta(days=100)})
    assert prune_snapshots() == {"deleted": 3}
    with db.connect() as conn:
        left = conn.execute(text("SELECT trader_id, is_heartbeat, timestamp FROM user_state_history "
                                 "ORDER BY trader_id, timestamp")).all()
    assert [(r.trader_id, r.is_heartbeat) for r in left] == [(trader_id, False), (trader_id, True), (other, True)]
