"""The leaderboard job: compute every trader's metrics in PostgreSQL, then invalidate the API's cache.

Entry points:

- :func:`compute_leaderboard` — no arguments, settings from the environment: what the RQ CronScheduler calls
  (every 10 minutes) and what an admin endpoint may enqueue or call on demand. Returns a JSON-able summary.
- :func:`compute` — the same with explicit servers and clock (tests, benchmark).
- `python -m hyperfollow.workers.leaderboard` — one computation from a shell, summary printed as JSON.

The computation is one set-based statement (:mod:`~hyperfollow.workers.leaderboard_sql`) in one transaction,
serialized by an advisory lock: readers see the previous leaderboard until the new one commits, and rerunning
with the same clock writes the same rows. When it has landed, the generation counter
(`RedisKeys.leaderboard_generation`) is incremented first and the cached pages
(`RedisKeys.leaderboard_cache_pattern`) are deleted second, so a reader that built a page from the old rows
can no longer store it under the current generation.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import redis
from prometheus_client import Counter, Gauge, Histogram
from pydantic import AliasChoices, Field
from sqlalchemy import Engine

from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger
from hyperfollow.core.runtime import bootstrap, resolve_servers
from hyperfollow.core.settings import Settings, load_settings
from hyperfollow.workers.leaderboard_reference import METRICS_VERSION, window_start
from hyperfollow.workers.leaderboard_sql import ADVISORY_LOCK_KEY, LEADERBOARD_UPSERT

__all__ = [
    "LeaderboardSettings",
    "LeaderboardSummary",
    "compute",
    "compute_leaderboard",
    "invalidate_cache",
]

log = get_logger(__name__)

COMPUTATION_SECONDS = Histogram("hyperfollow_leaderboard_computation_seconds",
                                "Time to compute and store the leaderboard (database part)",
                                buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
ROWS = Gauge("hyperfollow_leaderboard_rows", "leaderboard_metrics rows written by the last computation")
LAST_SUCCESS = Gauge("hyperfollow_leaderboard_last_success_timestamp_seconds",
                     "Unix time at which the last leaderboard computation landed")
INVALIDATION_FAILURES = Counter("hyperfollow_leaderboard_cache_invalidation_failures_total",
                                "Computations whose cache invalidation failed (pages expire by TTL instead)")

_SCAN_BATCH = 500
WORK_MEM_PATTERN = r"^[1-9][0-9]{0,6}(kB|MB|GB)$"


class LeaderboardSettings(Settings):
    """Settings of the leaderboard computation."""

    leaderboard_min_trades: int = Field(
        5, ge=1, le=100_000,
        description="closed trades a trader needs in a window to be ranked among real records (low_sample below)",
        validation_alias=AliasChoices("HYPERFOLLOW_LEADERBOARD_MIN_TRADES"))
    leaderboard_work_mem: str = Field(
        "128MB", pattern=WORK_MEM_PATTERN,
        description="PostgreSQL work_mem for the computation's sorts and hashes (SET LOCAL)",
        validation_alias=AliasChoices("HYPERFOLLOW_LEADERBOARD_WORK_MEM"))


@dataclass(frozen=True)
class LeaderboardSummary:
    computed_at: datetime
    metrics_version: int
    traders: int
    rows: int
    seconds: float
    generation: int | None
    cache_keys_deleted: int
    cache_invalidated: bool

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["computed_at"] = self.computed_at.isoformat()
        return data


def _store(engine: Engine, now: datetime, min_trades: int, work_mem: str) -> int:
    """Compute and upsert every row in one transaction; return the number of rows written."""
    if not re.fullmatch(WORK_MEM_PATTERN, work_mem):  # SET takes no bind parameters: only this shape passes
        raise ValueError(f"work_mem must look like 64MB (got {work_mem!r})")
    params = {"now": now, "start_7d": window_start("7d", now), "start_30d": window_start("30d", now),
              "min_trades": min_trades}
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{work_mem}'")
        # The planner cannot estimate rows coming out of JSON and window-numbered CTEs (it guesses a dozen where
        # there are 10^5) and would pick nested loops over them; this batch statement wants hash and merge joins.
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        # ... and that setting's cost penalty would trigger JIT compilation: seconds of LLVM for nothing.
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(key)s)", {"key": ADVISORY_LOCK_KEY})
        return conn.exec_driver_sql(LEADERBOARD_UPSERT, params).rowcount


def invalidate_cache(redis_client: redis.Redis, keys: RedisKeys) -> tuple[int, int]:
    """Bump the generation, then delete every cached leaderboard page; return (generation, keys deleted)."""
    generation = int(redis_client.incr(keys.leaderboard_generation))
    deleted = 0
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=keys.leaderboard_cache_pattern, count=_SCAN_BATCH):
        batch.append(key)
        if len(batch) >= _SCAN_BATCH:
            deleted += int(redis_client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(redis_client.unlink(*batch))
    return generation, deleted


def compute(engine_or_url: Engine | str, redis_client: redis.Redis | None, keys: RedisKeys,
            now: datetime | None = None, *, min_trades: int = 5, work_mem: str = "128MB") -> LeaderboardSummary:
    """Compute the leaderboard as of `now` (default: the current time), store it, invalidate the cache.

    Idempotent: the same data and `now` give the same rows. `redis_client=None` skips the invalidation.
    A Redis failure after the rows landed is logged and counted, not raised: the rows are the truth and
    cached pages expire by their TTL.
    """
    if min_trades < 1:
        raise ValueError("min_trades must be at least 1")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    engine = make_engine(engine_or_url, pool_size=1) if isinstance(engine_or_url, str) else engine_or_url
    started = time.perf_counter()
    try:
        with COMPUTATION_SECONDS.time():
            rows = _store(engine, now, min_trades, work_mem)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    seconds = time.perf_counter() - started
    ROWS.set(rows)
    LAST_SUCCESS.set_to_current_time()
    generation: int | None = None
    deleted, invalidated = 0, False
    if redis_client is not None:
        try:
            generation, deleted = invalidate_cache(redis_client, keys)
            invalidated = True
        except redis.RedisError as exc:
            INVALIDATION_FAILURES.inc()
            log.warning("leaderboard cache invalidation failed", error=str(exc))
    summary = LeaderboardSummary(computed_at=now, metrics_version=METRICS_VERSION, traders=rows // 3, rows=rows,
                                 seconds=round(seconds, 3), generation=generation, cache_keys_deleted=deleted,
                                 cache_invalidated=invalidated)
    log.info("leaderboard computed", **summary.as_dict())
    return summary


def compute_leaderboard() -> dict[str, object]:
    """The scheduled/on-demand job: settings from the environment, servers resolved like every service."""
    settings = load_settings(LeaderboardSettings)
    servers = resolve_servers(settings)
    client = redis.Redis.from_url(servers.redis_url)
    try:
        summary = compute(servers.database_url, client, RedisKeys(settings.redis_namespace),
                          min_trades=settings.leaderboard_min_trades, work_mem=settings.leaderboard_work_mem)
    finally:
        client.close()
    return summary.as_dict()


def main() -> None:
    settings, runtime = bootstrap("leaderboard", LeaderboardSettings)
    client = redis.Redis.from_url(runtime.redis_url)
    try:
        summary = compute(runtime.database_url, client, runtime.keys, min_trades=settings.leaderboard_min_trades,
                          work_mem=settings.leaderboard_work_mem)
    finally:
        client.close()
    print(json.dumps(summary.as_dict()))


if __name__ == "__main__":
    main()
