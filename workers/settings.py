"""Settings of the tracking workers, feeders and scheduler (`HYPERFOLLOW_WORKER_*`), on top of the exchange's.

`BATCH_SIZE` (the seed's name, set per shard by the operator) is the size of a rotation batch; batches of
traders seen trading are smaller (`HYPERFOLLOW_WORKER_ACTIVE_BATCH`) so they start at once on any free worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from hyperfollow.core.hl_settings import ExchangeSettings

__all__ = ["TrackingSettings"]


def _env(name: str) -> dict[str, object]:
    return {"validation_alias": AliasChoices(f"HYPERFOLLOW_WORKER_{name}")}


class TrackingSettings(ExchangeSettings):
    # --- the feeder ---------------------------------------------------------------------------------------------
    worker_selection: Literal["active_first", "oldest_first"] = Field(
        "active_first", description="active_first: traders seen trading first; oldest_first: the seed's rotation",
        **_env("SELECTION"))
    worker_active_batch: int = Field(4, ge=1, le=1000, description="traders per batch of active traders",
                                     **_env("ACTIVE_BATCH"))
    worker_feed_interval_ms: int = Field(100, ge=10, le=10_000, description="how often the feeder looks for work",
                                         **_env("FEED_INTERVAL_MS"))
    worker_lease_ttl_s: float = Field(10.0, ge=1, le=600,
                                      description="feeder lease lifetime; a dead feeder is replaced after it",
                                      **_env("LEASE_TTL_S"))
    worker_idle_max_wait_s: float = Field(
        30.0, gt=0, le=3600, description="a queued rotation batch older than this is no longer overtaken",
        **_env("IDLE_MAX_WAIT_S"))
    worker_queue_claim_s: float = Field(
        300.0, ge=5, le=86_400, description="how long a queued batch's traders stay claimed before it starts",
        **_env("QUEUE_CLAIM_S"))
    # --- the job --------------------------------------------------------------------------------------------------
    worker_claim_lease_s: float = Field(
        60.0, ge=1, le=3600,
        description="a running batch renews its traders' claims; a crashed one's expire after this",
        **_env("CLAIM_LEASE_S"))
    worker_failure_backoff_s: float = Field(30.0, ge=0, le=3600,
                                            description="a trader whose refresh failed waits this long for a retry",
                                            **_env("FAILURE_BACKOFF_S"))
    worker_preempt_after_ms: int = Field(
        250, ge=0, le=600_000,
        description="a rotation batch yields to an active batch that has waited this long at the queue's front",
        **_env("PREEMPT_AFTER_MS"))
    worker_job_timeout_s: int = Field(600, ge=30, le=86_400, description="RQ timeout of one batch",
                                      **_env("JOB_TIMEOUT_S"))
    worker_job_retries: int = Field(2, ge=0, le=20, description="RQ retries of a failed or abandoned batch",
                                    **_env("JOB_RETRIES"))
    leaderboard_interval_s: int = Field(600, ge=10, le=86_400,
                                        description="seconds between leaderboard computations (the first one at "
                                                    "the scheduler's start)",
                                        validation_alias=AliasChoices("HYPERFOLLOW_LEADERBOARD_INTERVAL_S"))
    worker_maintenance_s: int = Field(60, ge=5, le=3600,
                                      description="how often RQ cleans registries (abandoned jobs are retried)",
                                      **_env("MAINTENANCE_S"))
    worker_heartbeat_snapshot_s: float = Field(
        900.0, ge=10, le=86_400, description="an unchanged state is still stored this often (account value series)",
        **_env("HEARTBEAT_SNAPSHOT_S"))
    worker_snapshot_retention_days: float = Field(
        35.0, ge=1, le=3650, description="heartbeat snapshots older than this are pruned (change snapshots kept)",
        **_env("SNAPSHOT_RETENTION_DAYS"))
    worker_liquidation_check: bool = Field(
        True, description="confirm closes near the liquidation price with userFillsByTime (20 weight each)",
        **_env("LIQUIDATION_CHECK"))
    worker_liquidation_margin: float = Field(
        0.01, ge=0, le=1, description="a close counts as a liquidation candidate within this fraction of liq. price",
        **_env("LIQUIDATION_MARGIN"))
    worker_liquidation_mark_max_age_ms: int = Field(
        1_000, ge=0, le=60_000, description="a closed position is judged by a mark at most this much older than "
        "its state; without one, allMids is asked (weight 2)", **_env("LIQUIDATION_MARK_MAX_AGE_MS"))
    # --- events -----------------------------------------------------------------------------------------------------
    worker_stream_maxlen: int = Field(100_000, ge=10, le=100_000_000,
                                      description="approximate length the events stream is trimmed to",
                                      **_env("STREAM_MAXLEN"))
    worker_publish_dedupe_s: float = Field(3600.0, ge=60, le=7 * 86_400,
                                           description="how long published event ids are remembered (no repeats)",
                                           **_env("PUBLISH_DEDUPE_S"))
    worker_republish_after_s: float = Field(10.0, ge=1, le=3600,
                                            description="stored events unpublished for this long are republished",
                                            **_env("REPUBLISH_AFTER_S"))
