"""Prometheus metrics of tracking (served on `HYPERFOLLOW_METRICS_PORT` by `hyperfollow worker|feeder`).

Budget waits are `hyperfollow_budget_wait_seconds{group}` (core/budget.py), exchange requests
`hyperfollow_exchange_requests_total{type,outcome}` (core/hl_info.py).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_WAITING",
    "ACTIVITY_LAG",
    "BATCHES",
    "BATCH_SECONDS",
    "EVENTS",
    "FAILURES",
    "FEEDER_LEADER",
    "LIQUIDATION_CHECKS",
    "PREEMPTIONS",
    "PUBLISHED",
    "QUEUE_DEPTH",
    "REFRESHES",
    "REFRESH_SECONDS",
    "STALENESS",
]

REFRESHES = Counter("hyperfollow_tracking_refreshes_total", "Trader state refreshes by outcome (ok, stale, failed)",
                    ["shard", "outcome"])
EVENTS = Counter("hyperfollow_tracking_events_total", "Position events stored", ["shard", "type"])
FAILURES = Counter("hyperfollow_tracking_failures_total",
                   "Failed trader refreshes by kind (rate_limited, unavailable, malformed, rejected, budget, other)",
                   ["shard", "kind"])
REFRESH_SECONDS = Histogram("hyperfollow_tracking_refresh_seconds",
                            "One trader's refresh: budget wait, fetch, store, publish", ["shard"],
                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
BATCH_SECONDS = Histogram("hyperfollow_tracking_batch_seconds", "Duration of a batch job", ["shard", "kind"],
                          buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
BATCHES = Counter("hyperfollow_tracking_batches_total", "Batches enqueued by the feeder", ["shard", "kind"])
ACTIVITY_LAG = Histogram("hyperfollow_tracking_activity_lag_seconds",
                         "From a trader's earliest unrefreshed trade (activity mark) to the state that covers it",
                         ["shard"], buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600))
PREEMPTIONS = Counter("hyperfollow_tracking_preemptions_total",
                      "Rotation batches that yielded to a waiting active batch", ["shard"])
LIQUIDATION_CHECKS = Counter("hyperfollow_tracking_liquidation_checks_total",
                             "userFillsByTime lookups for reductions near the liquidation price, by result",
                             ["shard", "result"])
PUBLISHED = Counter("hyperfollow_tracking_published_total", "Events put on the stream and channel, by path",
                    ["path"])
QUEUE_DEPTH = Gauge("hyperfollow_tracking_queue_depth", "Batches waiting in the shard's queue", ["shard", "kind"])
ACTIVE_WAITING = Gauge("hyperfollow_tracking_active_waiting",
                       "Activity marks in the shard's buckets (traders seen trading, not yet refreshed)", ["shard"])
STALENESS = Gauge("hyperfollow_tracking_staleness_seconds",
                  "Age of the least recently refreshed active trader of the shard", ["shard"])
FEEDER_LEADER = Gauge("hyperfollow_tracking_feeder_leader", "1 while this process holds the shard's feeder lease",
                      ["shard"])
