"""Prometheus metrics of the operator (served on HYPERFOLLOW_METRICS_PORT by core.observability)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["APPLIED", "RECONCILES", "RECONCILE_SECONDS", "forget_shard", "observe_shard"]

RECONCILES = Counter("hyperfollow_operator_reconciles_total", "TrackingShard reconciles", ["trigger", "result"])
RECONCILE_SECONDS = Histogram("hyperfollow_operator_reconcile_seconds", "Duration of one reconcile",
                              buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
APPLIED = Counter("hyperfollow_operator_applied_total", "Objects created or changed by the operator", ["kind"])

_SHARD = ["namespace", "shard"]
WORKERS = Gauge("hyperfollow_shard_workers", "Worker pods that exist", _SHARD)
READY_WORKERS = Gauge("hyperfollow_shard_ready_workers", "Worker pods ready", _SHARD)
TRACKED_TRADERS = Gauge("hyperfollow_shard_tracked_traders", "Active traders in the shard's range", _SHARD)
STALENESS = Gauge("hyperfollow_shard_staleness_seconds", "Age of the least recently refreshed trader", _SHARD)
QUEUED_JOBS = Gauge("hyperfollow_shard_queued_jobs", "Jobs waiting in the shard's RQ queue", _SHARD)
CONDITION = Gauge("hyperfollow_shard_condition", "1 when the condition is True", [*_SHARD, "condition"])

_BY_FIELD = {"workers": WORKERS, "readyWorkers": READY_WORKERS, "trackedTraders": TRACKED_TRADERS,
             "stalenessSeconds": STALENESS, "queuedJobs": QUEUED_JOBS}


def observe_shard(namespace: str, shard: str, status: Mapping[str, Any]) -> None:
    for key, gauge in _BY_FIELD.items():
        value = status.get(key)
        if value is None:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, shard)
        else:
            gauge.labels(namespace=namespace, shard=shard).set(value)
    for condition in status.get("conditions") or []:
        CONDITION.labels(namespace=namespace, shard=shard, condition=condition["type"]).set(
            1 if condition["status"] == "True" else 0)


def forget_shard(namespace: str, shard: str) -> None:
    for gauge in _BY_FIELD.values():
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, shard)
    for condition in ("Ready", "Progressing", "Degraded", "RangeConflict"):
        with contextlib.suppress(KeyError):
            CONDITION.remove(namespace, shard, condition)
