"""The discovery service: the exchange's trades stream -> traders, activity marks and tape fills.

Subscribes `trades` for every listed perp (or POPULAR_COINS), re-reading `meta` periodically so new
listings are picked up and delisted coins dropped. The stream has no replay, so every coin is received on
`redundancy` independent links (two by default, well inside the exchange's 10 connections and 1000
subscriptions per IP): a trade is missed only when every link is down at once, which is measured
(`hyperfollow_discovery_stream_gap_seconds_total`, each link's downtime counted from the last frame it
received) and followed by a backfill from `recentTrades` (discovery/backfill.py). Each WebSocket client
(core/hl_ws.py) keeps its subscriptions alive across disconnects and skips malformed frames; duplicates are
dropped by trade identity; the pipeline batches the writes. On SIGTERM/SIGINT the stream is closed, what is
buffered is flushed, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter as Tally

import redis.asyncio as aioredis
from prometheus_client import Counter, Gauge

from hyperfollow.core.budget import BudgetConfig, WeightBudget
from hyperfollow.core.errors_exchange import ExchangeError
from hyperfollow.core.hl_info import InfoClient
from hyperfollow.core.hl_ws import WsClient
from hyperfollow.core.hl_ws_protocol import Reconnected, Trades
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger
from hyperfollow.core.observability import serve_observability
from hyperfollow.discovery.backfill import Backfill
from hyperfollow.discovery.coins import plan_subscriptions, wanted_coins
from hyperfollow.discovery.gaps import GapTracker
from hyperfollow.discovery.marks import ActivityMarks
from hyperfollow.discovery.pipeline import DiscoveryPipeline
from hyperfollow.discovery.settings import DiscoverySettings
from hyperfollow.discovery.store import TraderStore

__all__ = ["DiscoveryService", "run"]

log = get_logger(__name__)

BACKFILL_GRACE_S = 10.0  # at shutdown, how long a backfill round under way may still take

SUBSCRIBED = Gauge("hyperfollow_discovery_subscribed_coins", "coins whose trades are subscribed")
CONNECTIONS = Gauge("hyperfollow_discovery_ws_connections", "open WebSocket connections", ["link"])
GAP_SECONDS = Counter("hyperfollow_discovery_stream_gap_seconds_total",
                      "seconds during which every redundant link was down (the stream's trades then were missed)")


class DiscoveryService:
    def __init__(self, settings: DiscoverySettings, database_url: str, redis_url: str, keys: RedisKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.redis = aioredis.Redis.from_url(redis_url)
        self.store = TraderStore(database_url, known_capacity=settings.known_cache_size,
                                 last_seen_granularity_ms=int(settings.last_seen_granularity_s * 1000))
        self.pipeline = DiscoveryPipeline(
            self.store, ActivityMarks(self.redis, keys), flush_interval=settings.flush_interval_ms / 1000,
            flush_max_trades=settings.flush_max_trades, max_buffered_trades=settings.max_buffered_trades,
            record_fills=settings.record_fills)
        budget = WeightBudget(self.redis, keys, BudgetConfig.from_settings(settings))
        self.info = InfoClient.from_settings(settings, budget=budget)
        # the exchange's per-IP limits on new connections and sent messages, shared by the links
        self.links = [WsClient.from_settings(settings, reconnect_base=settings.reconnect_base_s,
                                             new_connections_per_minute=30 // settings.redundancy,
                                             messages_per_minute=2000 // settings.redundancy)
                      for _ in range(settings.redundancy)]
        self.gaps = GapTracker(len(self.links))
        self.gap_seconds = 0.0
        self.backfill = (Backfill(self.info, self.pipeline, max_coins=settings.backfill_max_coins)
                         if settings.backfill else None)
        self.trades_by_coin: Tally[str] = Tally()   # since start: which coins are busiest
        self.stop = asyncio.Event()
        self.coins: set[str] = set()

    def is_healthy(self) -> bool:
        """Subscribed and connected, and the stores accepted a flush within the last two minutes."""
        stores_ok = self.pipeline.failures_in_a_row == 0 or time.monotonic() - self.pipeline.last_flush_ok < 120
        return bool(self.coins) and any(link.connections > 0 for link in self.links) and stores_ok

    async def refresh_coins(self) -> None:
        """Align the subscriptions with the listed perps (meta costs weight 20, taken from the budget)."""
        meta = await self.info.meta()
        wanted = wanted_coins(((a.name, bool(a.is_delisted)) for a in meta.universe), self.settings.popular_coins)
        plan = plan_subscriptions(self.coins, wanted)
        if plan.subscribe:
            await asyncio.gather(*(link.subscribe_trades(plan.subscribe) for link in self.links))
            self.coins.update(plan.subscribe)
        for coin in plan.unsubscribe:
            await asyncio.gather(*(link.unsubscribe({"type": "trades", "coin": coin}) for link in self.links))
            self.coins.discard(coin)
        if plan.subscribe or plan.unsubscribe:
            log.info("subscriptions changed", subscribed=plan.subscribe, unsubscribed=plan.unsubscribe,
                     coins=len(self.coins))
        SUBSCRIBED.set(len(self.coins))

    async def _refresh_forever(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=self.settings.meta_refresh_s)
            if self.stop.is_set():
                return
            try:
                await self.refresh_coins()
            except (ExchangeError, OSError) as exc:
                log.warning("meta refresh failed; keeping the current subscriptions", error=str(exc))

    async def _consume(self, index: int) -> None:
        link = self.links[index]
        async for event in link:
            if isinstance(event, Trades):
                self.pipeline.add(event.trades)
                self.trades_by_coin[event.trades[0].coin] += len(event.trades)  # a trades message is of one coin
            elif isinstance(event, Reconnected):
                now = time.monotonic()
                gap = self.gaps.link_recovered(index, now - event.downtime, now)
                if gap is not None:
                    self.gap_seconds += gap.seconds
                    GAP_SECONDS.inc(gap.seconds)
                    log.error("every link was down at once: the stream's trades in between were missed",
                              gap_s=round(gap.seconds, 3), link=index, backfill=self.backfill is not None)
                    if self.backfill is not None:
                        self.backfill.request(int((time.time() - (now - gap.start)) * 1000))
                else:
                    log.info("link reconnected; the other link covered the gap", link=index,
                             downtime_s=round(event.downtime, 3))
            CONNECTIONS.labels(str(index)).set(link.connections)

    def coins_busiest_first(self) -> list[str]:
        return sorted(self.coins, key=lambda coin: -self.trades_by_coin[coin])

    async def _initial_subscribe(self) -> None:
        """Subscribe once, retrying until the exchange answers (discovery is useless without it)."""
        delay = 1.0
        while not self.stop.is_set():
            try:
                await self.refresh_coins()
                return
            except (ExchangeError, OSError) as exc:
                log.warning("cannot read the perp universe yet; retrying", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
                delay = min(30.0, delay * 2)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        observability = serve_observability(self.settings.metrics_port, self.is_healthy)
        flusher = asyncio.create_task(self.pipeline.run(self.stop), name="flusher")
        consumers = [asyncio.create_task(self._consume(i), name=f"consumer-{i}") for i in range(len(self.links))]
        backfill = (asyncio.create_task(self.backfill.run(self.stop, self.coins_busiest_first), name="backfill")
                    if self.backfill is not None else None)
        try:
            await self._initial_subscribe()
            log.info("discovery running", coins=len(self.coins), exchange=self.settings.websocket_url)
            refresher = asyncio.create_task(self._refresh_forever(), name="meta-refresh")
            await self.stop.wait()
            refresher.cancel()
        finally:
            self.stop.set()
            await asyncio.gather(*(link.close() for link in self.links))
            for consumer in consumers:
                consumer.cancel()
            if backfill is not None:  # a round under way holds trades nothing else has: let it finish, briefly
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(backfill, timeout=BACKFILL_GRACE_S)
            await asyncio.gather(flusher, *consumers, return_exceptions=True)
            drained = await self.pipeline.drain(timeout=20)
            log.info("discovery stopped", drained=drained, left=self.pipeline.buffered)
            await self.info.aclose()
            await self.store.close()
            await self.redis.aclose()
            if observability is not None:
                observability.close()


def run() -> None:
    """Entry point of `hyperfollow discovery`."""
    from hyperfollow.core.runtime import bootstrap

    settings, runtime = bootstrap("discovery", DiscoverySettings)
    service = DiscoveryService(settings, runtime.database_url, runtime.redis_url, runtime.keys)
    asyncio.run(service.run())
