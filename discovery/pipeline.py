"""The buffer between the trades stream and the stores: flushed by size or time, bounded, retried.

Trades are appended as they arrive. A flush takes up to `flush_max_trades` of them, writes them to
PostgreSQL in one transaction and only then removes them from the buffer; then it marks the traders active
in Redis (after the rows exist, so a feeder never sees a mark for an unknown trader). While PostgreSQL is
down the buffer grows up to `max_buffered_trades`, then the oldest trades are dropped and counted; while
Redis is down the unmarked activity is kept (one entry per address) and retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Iterable
from itertools import islice

import psycopg
import redis
from prometheus_client import Counter, Gauge, Histogram

from hyperfollow.core.aio import wait_any
from hyperfollow.core.logging import get_logger
from hyperfollow.discovery.batch import TradeLike, build_batch
from hyperfollow.discovery.marks import ActivityMarks
from hyperfollow.discovery.store import TraderStore

__all__ = ["DiscoveryPipeline"]

log = get_logger(__name__)

TRADES = Counter("hyperfollow_discovery_trades_total", "trades received from the stream")
NEW_TRADERS = Counter("hyperfollow_discovery_new_traders_total", "traders inserted")
FILLS = Counter("hyperfollow_discovery_fills_total", "tape fills inserted")
INVALID_ADDRESSES = Counter("hyperfollow_discovery_invalid_addresses_total", "trade sides with a bad address")
DUPLICATES = Counter("hyperfollow_discovery_duplicate_trades_total",
                     "trades received more than once (redundant links, resent after a reconnect)")
DROPPED = Counter("hyperfollow_discovery_dropped_trades_total",
                  "trades dropped because the buffer was full (PostgreSQL unavailable for too long)")
DROPPED_MARKS = Counter("hyperfollow_discovery_dropped_marks_total",
                        "activity marks dropped because Redis was unavailable for too long")
ERRORS = Counter("hyperfollow_discovery_flush_errors_total", "failed flushes", ["store"])
BUFFERED = Gauge("hyperfollow_discovery_buffered_trades", "trades waiting for a flush")
LAG = Gauge("hyperfollow_discovery_lag_seconds", "now minus the newest trade's time, at its flush")
FLUSH_SIZE = Histogram("hyperfollow_discovery_flush_trades", "trades per flush",
                       buckets=(1, 10, 100, 500, 1_000, 5_000, 20_000, 100_000))
FLUSH_SECONDS = Histogram("hyperfollow_discovery_flush_seconds", "time to write one flush")


class DiscoveryPipeline:
    def __init__(self, store: TraderStore, marks: ActivityMarks, *, flush_interval: float = 0.25,
                 flush_max_trades: int = 5_000, max_buffered_trades: int = 500_000, record_fills: bool = True) -> None:
        self.store = store
        self.marks = marks
        self.flush_interval = flush_interval
        self.flush_max_trades = flush_max_trades
        self.max_buffered_trades = max_buffered_trades
        self.record_fills = record_fills
        self._pending: deque[TradeLike] = deque()
        #: identities (coin, tid, time) of recent trades: the redundant links deliver each trade twice
        self._recent: dict[tuple[str, int, int], None] = {}
        self.recent_capacity = 200_000
        self._unmarked: dict[str, tuple[int, int]] = {}
        self._wakeup = asyncio.Event()
        self.last_flush_ok = time.monotonic()
        self.failures_in_a_row = 0
        self.received = 0  # distinct trades accepted since start

    @property
    def buffered(self) -> int:
        return len(self._pending)

    def add(self, trades: Iterable[TradeLike]) -> int:
        """Queue trades not seen recently; return how many were new."""
        added = duplicates = 0
        recent = self._recent
        for trade in trades:
            identity = (trade.coin, trade.tid, trade.time)
            if identity in recent:
                duplicates += 1
                continue
            recent[identity] = None
            self._pending.append(trade)
            added += 1
        if len(recent) > self.recent_capacity:
            for identity in list(islice(recent, len(recent) - self.recent_capacity // 2)):
                del recent[identity]
        self.received += added
        TRADES.inc(added)
        DUPLICATES.inc(duplicates)
        overflow = len(self._pending) - self.max_buffered_trades
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            DROPPED.inc(overflow)
            log.error("buffer full: dropped the oldest trades", dropped=overflow, bound=self.max_buffered_trades)
        BUFFERED.set(len(self._pending))
        if len(self._pending) >= self.flush_max_trades:
            self._wakeup.set()
        return added

    async def flush_once(self) -> int:
        """Write up to `flush_max_trades` pending trades; return how many were written. Raises on failure."""
        count = min(len(self._pending), self.flush_max_trades)
        if count:
            chunk = list(islice(self._pending, count))
            batch = build_batch(chunk, record_fills=self.record_fills)
            started = time.perf_counter()
            try:
                result = await self.store.write(batch)
            except (psycopg.Error, OSError):
                ERRORS.labels("postgres").inc()
                raise
            FLUSH_SECONDS.observe(time.perf_counter() - started)
            for _ in range(count):
                self._pending.popleft()
            BUFFERED.set(len(self._pending))
            FLUSH_SIZE.observe(count)
            NEW_TRADERS.inc(result.new_traders)
            FILLS.inc(result.fills_inserted)
            INVALID_ADDRESSES.inc(batch.invalid_addresses)
            DUPLICATES.inc(batch.duplicate_trades)
            LAG.set(max(0.0, time.time() - max(t.time for t in chunk) / 1000))
            for address, (first, last) in batch.activity.items():
                known = self._unmarked.get(address)
                self._unmarked[address] = (first, last) if known is None else (min(known[0], first),
                                                                                 max(known[1], last))
        if self._unmarked:
            await self._flush_marks()
        return count

    async def _flush_marks(self) -> None:
        try:
            await self.marks.mark(self._unmarked)
        except (redis.RedisError, OSError):
            ERRORS.labels("redis").inc()
            overflow = len(self._unmarked) - self.max_buffered_trades
            if overflow > 0:
                for address in list(self._unmarked)[:overflow]:
                    del self._unmarked[address]
                DROPPED_MARKS.inc(overflow)
            raise
        self._unmarked.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Flush by size or interval until `stop` is set; failures back off (jittered, capped at 30 s)."""
        backoff = 0.0
        while not stop.is_set():
            await wait_any(self._wakeup, stop, timeout=max(self.flush_interval, backoff))  # a full flush waits
            self._wakeup.clear()
            try:
                while await self.flush_once() >= self.flush_max_trades:
                    pass  # a full flush: there may be more waiting
                backoff = 0.0
                self.failures_in_a_row = 0
                self.last_flush_ok = time.monotonic()
            except (psycopg.Error, redis.RedisError, OSError) as exc:
                self.failures_in_a_row += 1
                backoff = min(30.0, 0.5 * 2 ** min(self.failures_in_a_row, 6)) * random.uniform(0.5, 1.0)
                log.warning("flush failed; retrying", error=str(exc), retry_in_s=round(backoff, 2),
                            buffered=len(self._pending), failures=self.failures_in_a_row)

    async def drain(self, timeout: float) -> bool:
        """Flush everything pending (at shutdown); True when nothing is left."""
        deadline = time.monotonic() + timeout
        while (self._pending or self._unmarked) and time.monotonic() < deadline:
            try:
                await self.flush_once()
            except (psycopg.Error, redis.RedisError, OSError) as exc:
                log.warning("flush at shutdown failed", error=str(exc), buffered=len(self._pending))
                await asyncio.sleep(0.5)
        return not (self._pending or self._unmarked)
