"""Discovery against the simulator: every address of every trade becomes a trader, also under chaos."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from sqlalchemy import Engine, text

from hyperfollow.core.keys import RedisKeys, active_bucket
from hyperfollow.core.settings import load_settings
from hyperfollow.core.slots import slot
from hyperfollow.discovery.service import DiscoveryService
from hyperfollow.discovery.settings import DiscoverySettings
from hyperfollow.sim.server import SimConfig, SimServer


@pytest.fixture()
def sim(request: pytest.FixtureRequest) -> Iterator[SimServer]:
    overrides = getattr(request, "param", {})
    # ten times the exchange's weight limit (here and in discovery_settings): a backfill after a gap must not
    # wait most of a minute for its weight in a run of a few seconds
    config = SimConfig(seed=7, traders=600, coins=8, trades_per_second=200, start_paused=True,
                       ws_max_new_connections_per_minute=0, weight_limit=12_000, **overrides)
    with SimServer(config) as server:
        yield server


def discovery_settings(sim: SimServer, database_url: str, redis_url: str, keys: RedisKeys,
                       **extra: object) -> DiscoverySettings:
    return load_settings(DiscoverySettings, database_url=database_url, redis_url=redis_url,
                         redis_namespace=keys.namespace, hyperliquid_api_url=sim.info_url,
                         websocket_url=sim.ws_url, **{"flush_interval_ms": 100, "weight_per_minute": 12_000, **extra})


async def run_discovery(service: DiscoveryService, sim: SimServer, seconds: float) -> None:
    """Subscribe while the market is paused, let it trade, pause it, and stop once everything is flushed."""
    task = asyncio.create_task(service.run())
    try:
        for _ in range(200):
            if len(service.coins) == 8 and all(link.connections > 0 for link in service.links):
                break
            await asyncio.sleep(0.05)
        assert len(service.coins) == 8, "discovery did not subscribe every coin"
        sim.resume()
        await asyncio.sleep(seconds)
        sim.pause()
        await asyncio.sleep(0.5)  # the last messages in flight
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=30)


def stored_traders(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return {row.address for row in conn.execute(text("SELECT address FROM traders"))}


def stored_fills(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM tape_fills")).scalar_one()


async def test_every_address_in_the_trades_becomes_a_trader(db: Engine, database_url: str, redis_url: str,
                                                            keys: RedisKeys, sim: SimServer) -> None:
    service = DiscoveryService(discovery_settings(sim, database_url, redis_url, keys), database_url, redis_url,
                               keys)
    await run_discovery(service, sim, seconds=3)
    seen = set(sim.traders_seen())
    assert len(seen) > 100
    assert stored_traders(db) == seen  # no missing, no extra
    stats = sim.stats()
    with db.connect() as conn:
        slots_ok = conn.execute(text("SELECT bool_and(first_seen_at <= last_seen_trading_at) FROM traders")).scalar()
    assert stored_fills(db) == 2 * stats["trades_emitted"]  # each trade once per side, though two links delivered it
    assert slots_ok
    client = aioredis.Redis.from_url(redis_url)
    try:
        some = sorted(seen)[:20]
        for address in some:
            assert await client.zscore(keys.active(active_bucket(slot(address))), address) is not None
    finally:
        await client.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("sim", [{"disconnect_interval_s": 1.5, "malformed_probability": 0.2}], indirect=True)
async def test_disconnects_and_malformed_frames_lose_no_trade(db: Engine, database_url: str, redis_url: str,
                                                              keys: RedisKeys, sim: SimServer) -> None:
    service = DiscoveryService(discovery_settings(sim, database_url, redis_url, keys), database_url, redis_url,
                               keys)
    await run_discovery(service, sim, seconds=8)
    stats = sim.stats()
    assert stats["chaos"]["disconnects"] >= 6, stats["chaos"]
    assert stats["chaos"]["malformed_frames"] > 10, stats["chaos"]
    assert sum(link.stats.malformed_frames + link.stats.invalid_trades for link in service.links) > 10
    assert stored_traders(db) == set(sim.traders_seen())
    # every trade once per side: from one of the two links or, where both were down at once, from a backfill
    assert stored_fills(db) == 2 * stats["trades_emitted"]


@pytest.mark.slow
@pytest.mark.parametrize("sim", [{"disconnect_interval_s": 1.0}], indirect=True)
async def test_what_the_stream_missed_in_a_gap_is_backfilled(db: Engine, database_url: str, redis_url: str,
                                                             keys: RedisKeys, sim: SimServer) -> None:
    # one link that reconnects slowly (up to 0.5 s): every drop is a gap in which trades go by unseen
    settings = discovery_settings(sim, database_url, redis_url, keys, redundancy=1, reconnect_base_s=0.5)
    service = DiscoveryService(settings, database_url, redis_url, keys)
    await run_discovery(service, sim, seconds=6)
    backfill = service.backfill
    assert backfill is not None
    assert service.gap_seconds > 0 and backfill.rounds >= 3
    assert backfill.recovered > 0   # trades no link delivered
    assert backfill.incomplete_coins == 0
    assert sim.stats()["info_requests"]["recentTrades"] == 8 * backfill.rounds
    assert stored_traders(db) == set(sim.traders_seen())
    assert stored_fills(db) == 2 * sim.stats()["trades_emitted"]


async def test_sigterm_like_stop_flushes_what_is_buffered(db: Engine, database_url: str, redis_url: str,
                                                          keys: RedisKeys, sim: SimServer) -> None:
    # a flush interval far longer than the run: only the shutdown drain can have written the traders
    settings = discovery_settings(sim, database_url, redis_url, keys, flush_interval_ms=60_000)
    service = DiscoveryService(settings, database_url, redis_url, keys)
    await run_discovery(service, sim, seconds=1.5)
    assert service.pipeline.buffered == 0
    assert stored_traders(db) == set(sim.traders_seen()) != set()
