"""`hyperfollow scheduler`: the periodic jobs, on RQ's CronScheduler (it replaces the seed's Celery beat).

The seed refreshed positions every 75 s from beat; here tracking is continuous (the feeders), and the
scheduler only runs what really is periodic:

===========================================  ==================  ===============================================
job                                          when                what
===========================================  ==================  ===============================================
workers.leaderboard.compute_leaderboard      at start, then      metrics in SQL, then the API's cache invalidated
                                             every 10 min (*)
workers.upkeep.republish_events              every 30 s          events stored but never published (outbox)
workers.upkeep.prune_snapshots               hourly (at :17)     old heartbeat snapshots
===========================================  ==================  ===============================================

(*) `HYPERFOLLOW_LEADERBOARD_INTERVAL_S`; an interval job of RQ's CronScheduler runs as soon as the scheduler
starts, so a fresh installation (or `hyperfollow up` against the simulator, which sets a shorter interval) gets
a leaderboard without waiting for the next tick.

One process does both halves: a CronScheduler loop in a thread enqueues due jobs on the `periodic` queue
(`RedisKeys.periodic_queue`), and an RQ SimpleWorker in the main thread runs them (SIGTERM lets the running
job finish). Run ONE scheduler per installation (the chart's Deployment has one replica and the `Recreate`
strategy): two would enqueue every job twice. That would be harmless (the leaderboard serializes on an
advisory lock and rewrites the same rows; republishing skips published events) but wasteful.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.cron import CronScheduler

from hyperfollow.core.logging import get_logger
from hyperfollow.core.observability import serve_observability
from hyperfollow.core.runtime import bootstrap
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.settings import TrackingSettings
from hyperfollow.workers.upkeep import prune_snapshots, republish_events

__all__ = ["periodic_jobs", "register_jobs", "run_cron", "run_scheduler"]

log = get_logger(__name__)


def _leaderboard() -> Callable[[], Any]:
    from hyperfollow.workers.leaderboard import compute_leaderboard

    return compute_leaderboard


def periodic_jobs(leaderboard_interval_s: int = 600) -> list[tuple[Callable[..., Any], dict[str, Any], int]]:
    """(function, schedule, RQ job timeout in seconds); a schedule is {"cron": ...} or {"interval": seconds}."""
    return [
        (_leaderboard(), {"interval": leaderboard_interval_s}, 900),
        (republish_events, {"interval": 30}, 300),
        (prune_snapshots, {"cron": "17 * * * *"}, 1800),
    ]


def register_jobs(cron: CronScheduler, queue_name: str, leaderboard_interval_s: int = 600) -> None:
    for function, schedule, timeout in periodic_jobs(leaderboard_interval_s):
        cron.register(function, queue_name=queue_name, job_timeout=timeout, result_ttl=3600,
                      failure_ttl=7 * 86_400, **schedule)


def run_cron(cron: CronScheduler, stop: threading.Event) -> None:
    """CronScheduler.start() without its signal handlers (it runs in a thread here): enqueue due jobs, beat,
    sleep until the next is due or `stop` is set."""
    cron.register_birth()
    try:
        while not stop.is_set():
            try:
                if cron.enqueue_jobs():
                    cron.save()
                cron.heartbeat()
                pause = cron.calculate_sleep_interval()
            except redis.RedisError as exc:
                log.warning("cron round failed; retrying", error=str(exc))
                pause = 5.0
            stop.wait(min(pause, 30.0) if pause > 0 else 0.05)
    finally:
        with contextlib.suppress(redis.RedisError):
            cron.register_death()


def run_scheduler() -> None:
    settings, runtime = bootstrap("scheduler", TrackingSettings)
    tracking_context.configure(TrackingContext(settings=settings, database_url=runtime.database_url,
                                               redis_url=runtime.redis_url, keys=runtime.keys))
    connection = redis.Redis.from_url(runtime.redis_url)
    queue_name = runtime.keys.periodic_queue
    cron = CronScheduler(connection=connection, logging_level=settings.log_level)
    register_jobs(cron, queue_name, settings.leaderboard_interval_s)
    stop = threading.Event()
    cron_thread = threading.Thread(target=run_cron, args=(cron, stop), name="cron", daemon=True)
    worker = SimpleWorker([Queue(queue_name, connection=connection)], connection=connection,
                          maintenance_interval=settings.worker_maintenance_s)
    observability = serve_observability(settings.metrics_port, is_healthy=cron_thread.is_alive)
    log.info("scheduler starting", queue=queue_name, jobs=[job.name for job in cron.get_jobs()])
    cron_thread.start()
    try:
        worker.work(logging_level=settings.log_level)  # a few jobs an hour: RQ's lines are welcome
    finally:
        stop.set()
        cron_thread.join(timeout=10)
        tracking_context.reset()
        connection.close()
        if observability is not None:
            observability.close()
