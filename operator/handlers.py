"""The kopf glue: `kopf run -m hyperfollow.operator.handlers` (or `hyperfollow operator`) loads this module.

Thin on purpose: create, update and resume call the same idempotent :func:`reconcile`; a timer calls it too,
which keeps the status current (PostgreSQL/Redis figures, the Deployment's readiness) and repairs drift.
Deletion runs :func:`cleanup` behind the finalizer `hyperfollow.io/cleanup`: it exists because the shard's
RQ queue, feeder lease and pending set live in Redis, outside Kubernetes.

Every kopf setting is in :func:`configure`. Scanning of namespaces and CRDs is off, so the operator needs no
cluster-wide permission: it serves the namespaces given on the command line (the chart: its own).
One replica only (`standalone`, no peering): the chart runs it with `strategy: Recreate`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.observability import serve_observability
from hyperfollow.core.settings import load_settings
from hyperfollow.operator import metrics
from hyperfollow.operator.kube import Kube, KubeError
from hyperfollow.operator.model import GROUP, PLURAL, VERSION
from hyperfollow.operator.reconcile import cleanup, reconcile
from hyperfollow.operator.settings import OperatorSettings
from hyperfollow.operator.stats import ShardStats

__all__ = ["FINALIZER", "STATUS_INTERVAL"]

FINALIZER = "hyperfollow.io/cleanup"
#: Read at import: the timer's interval is fixed when the handlers are registered. The rest of the settings
#: are read when the operator starts.
STATUS_INTERVAL = load_settings(OperatorSettings).status_interval
#: After this many failed attempts to clean Redis up, deletion goes ahead (the feeder lease expires anyway).
CLEANUP_ATTEMPTS = 5


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    config = load_settings(OperatorSettings)
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping goes into our annotations, never into status (whose schema is strict)
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    # watches that stay open forever can silently stop delivering events: re-open them regularly
    settings.watching.server_timeout = config.watch_timeout
    settings.watching.client_timeout = config.watch_timeout + 60
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # handler logs are not Events; the handlers post their own Events with explicit reasons
    settings.posting.level = logging.WARNING
    settings.scanning.disabled = True
    settings.peering.standalone = True
    memo.kube = Kube()
    memo.defaults = config.worker_defaults()
    memo.stats = None
    if config.database_url or config.redis_url:
        memo.stats = ShardStats.connect(config.database_url, config.redis_url, RedisKeys(config.redis_namespace))
    memo.observability = serve_observability(config.metrics_port)
    logger.info("operator configured: shard figures from %s",
                ", ".join(name for name, url in (("PostgreSQL", config.database_url),
                                                 ("Redis", config.redis_url)) if url) or "nowhere")


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("stats") is not None:
        memo.stats.close()
    if memo.get("kube") is not None:
        memo.kube.close()
    if memo.get("observability") is not None:
        memo.observability.close()


@kopf.on.probe(id="reconciles")
def reconciles_probe(**_: Any) -> float:
    """Reported on the liveness endpoint (`--liveness`): reconciles done so far."""
    return sum(sample.value for sample in metrics.RECONCILES.collect()[0].samples
               if sample.name.endswith("_total"))


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, trigger: str) -> None:
    started = time.monotonic()
    try:
        outcome = await reconcile(body, kube=memo.kube, stats=memo.stats, defaults=memo.defaults)
    except KubeError as exc:
        metrics.RECONCILES.labels(trigger=trigger, result="error").inc()
        # 5xx and unreachable API: try again soon; 4xx means our object was refused: slower, it needs a fix
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=10 if exc.status in (0, 429) or exc.status >= 500
                                  else 60) from None
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels(trigger=trigger, result="ok").inc()
    patch.status.update(outcome.status)
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def trackingshard_reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, reason: str,
                                  **_: Any) -> None:
    await _reconcile(body, patch, memo, trigger=str(reason))


@kopf.timer(GROUP, VERSION, PLURAL, interval=STATUS_INTERVAL, initial_delay=STATUS_INTERVAL)
async def trackingshard_refresh(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _reconcile(body, patch, memo, trigger="timer")


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def trackingshard_cleanup(name: str, namespace: str, memo: kopf.Memo, retry: int, logger: kopf.Logger,
                                body: kopf.Body, **_: Any) -> None:
    try:
        removed = await cleanup(name, namespace, kube=memo.kube, stats=memo.stats)
    except KubeError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=10) from None
    except Exception as exc:  # Redis down: retry a few times, then let the deletion finish
        if retry + 1 < CLEANUP_ATTEMPTS:
            raise kopf.TemporaryError(f"cleanup failed, will retry: {exc}", delay=10) from None
        logger.warning("giving up cleaning Redis keys of shard %s after %d attempts: %s", name, retry + 1, exc)
        return
    logger.info("shard %s deleted; removed %s", name, ", ".join(removed) or "nothing")
