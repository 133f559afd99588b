"""`hyperfollow worker` and `hyperfollow feeder`: the processes of a shard.

`hyperfollow worker --shard NAME --slots START:END [--budget-group G]` is one pod of a shard's Deployment:

- an RQ **SimpleWorker** on the shard's queue in the main thread. Jobs run in this process, not in a forked
  work horse: connections, the exchange client's keep-alive and the metrics live across jobs, and nothing
  is ever forked while the feeder and metrics threads may hold a lock. A crash takes the job with it, which
  the claims' expiry and RQ's abandoned-job handling cover (docs/tracking.md);
- a **feeder candidate** in a thread: it competes for the shard's lease and feeds while it holds it, so N
  identical pods give one feeder, N workers, and a new feeder within one lease lifetime when its pod dies;
- `/metrics` and `/healthz` on `HYPERFOLLOW_METRICS_PORT`.

SIGTERM is RQ's warm shutdown: the running batch stops after the trader it is refreshing (it hands the rest
back), the worker exits, the feeder gives its lease up. A second SIGTERM is a cold shutdown.
"""

from __future__ import annotations

import re
import signal
import threading
from typing import Any

import redis
from rq import Queue, SimpleWorker

from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.logging import get_logger
from hyperfollow.core.observability import serve_observability
from hyperfollow.core.runtime import Runtime, bootstrap
from hyperfollow.core.settings import load_settings
from hyperfollow.core.slots import SlotRange
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.election import owner_id
from hyperfollow.workers.feeder import Feeder
from hyperfollow.workers.settings import TrackingSettings

__all__ = ["SHARD_NAME", "TrackingWorker", "check_shard", "rq_log_level", "run_feeder", "run_worker"]

log = get_logger(__name__)

#: A shard's name is a Kubernetes object name (it also appears in Redis key names).
SHARD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class TrackingWorker(SimpleWorker):
    """SimpleWorker whose warm shutdown also tells the running batch to stop after its current trader."""

    shutdown_event: threading.Event | None = None

    def handle_warm_shutdown_request(self) -> None:
        if self.shutdown_event is not None:
            self.shutdown_event.set()
        super().handle_warm_shutdown_request()


def _start(service: str, budget_group: str | None) -> tuple[TrackingSettings, Runtime]:
    settings, runtime = bootstrap(service, TrackingSettings)
    if budget_group:  # the command line's --budget-group wins over HYPERFOLLOW_BUDGET_GROUP (validated alike)
        settings = load_settings(TrackingSettings, budget_group=budget_group)
    return settings, runtime


def rq_log_level(settings: TrackingSettings) -> str:
    """RQ logs two lines per job at INFO: keep them for DEBUG only."""
    return "DEBUG" if settings.debug or settings.log_level == "DEBUG" else max(
        settings.log_level, "WARNING", key=["INFO", "WARNING", "ERROR", "CRITICAL"].index)


def check_shard(shard: str) -> str:
    if not SHARD_NAME.match(shard):
        raise ValueError(f"shard name must be a DNS label (lowercase letters, digits, '-'), got {shard!r}")
    return shard


def _feeder(settings: TrackingSettings, runtime: Runtime, shard: str, slots: SlotRange) -> tuple[Feeder, Any]:
    client = redis.Redis.from_url(runtime.redis_url, socket_timeout=30, socket_connect_timeout=10,
                                  health_check_interval=30)
    engine = make_engine(runtime.database_url, pool_size=1, application_name="hyperfollow-feeder")
    feeder = Feeder(settings, client=client, engine=engine, keys=runtime.keys, shard=shard, slots=slots,
                    owner=owner_id())

    def close() -> None:
        client.close()
        engine.dispose()

    return feeder, close


def run_worker(shard: str, slots: SlotRange, budget_group: str | None = None) -> None:
    shard = check_shard(shard)
    settings, runtime = _start("worker", budget_group)
    context = tracking_context.configure(TrackingContext(settings=settings, database_url=runtime.database_url,
                                                         redis_url=runtime.redis_url, keys=runtime.keys))
    feeder, close_feeder = _feeder(settings, runtime, shard, slots)
    stop_feeding = threading.Event()
    feeder_thread = threading.Thread(target=feeder.run, args=(stop_feeding,), name=f"feeder-{shard}", daemon=True)
    connection = redis.Redis.from_url(runtime.redis_url)
    worker = TrackingWorker([Queue(runtime.keys.track_queue(shard), connection=connection)], connection=connection,
                            maintenance_interval=settings.worker_maintenance_s)
    worker.shutdown_event = context.shutdown
    observability = serve_observability(settings.metrics_port, is_healthy=feeder_thread.is_alive)
    log.info("worker starting", shard=shard, slots=str(slots), budget_group=settings.budget_group,
             queue=runtime.keys.track_queue(shard), feeder_owner=feeder.owner)
    feeder_thread.start()
    try:
        worker.work(logging_level=rq_log_level(settings))
    finally:
        stop_feeding.set()
        feeder_thread.join(timeout=10)
        close_feeder()
        tracking_context.reset()
        connection.close()
        if observability is not None:
            observability.close()
        log.info("worker stopped", shard=shard)


def run_feeder(shard: str, slots: SlotRange, budget_group: str | None = None) -> None:
    """A feeder alone (no worker): competes for the lease like the workers' candidates."""
    shard = check_shard(shard)
    settings, runtime = _start("feeder", budget_group)
    feeder, close_feeder = _feeder(settings, runtime, shard, slots)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    observability = serve_observability(settings.metrics_port, is_healthy=lambda: not stop.is_set())
    try:
        feeder.run(stop)
    finally:
        close_feeder()
        if observability is not None:
            observability.close()
