"""Outages of PostgreSQL or Redis: trades wait in a bounded buffer, overflow is dropped and counted, and
everything buffered is written once the server is back. A SIGTERM flushes and exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine, text
from support import free_port, trade, wait_for

from hyperfollow.core.budget import BudgetConfig, WeightBudget
from hyperfollow.core.hl_info import InfoClient
from hyperfollow.core.hl_models import Trade
from hyperfollow.core.keys import RedisKeys, active_bucket
from hyperfollow.core.slots import slot
from hyperfollow.discovery.backfill import Backfill
from hyperfollow.discovery.marks import ActivityMarks
from hyperfollow.discovery.pipeline import DROPPED, DiscoveryPipeline
from hyperfollow.discovery.store import TraderStore
from hyperfollow.sim.server import SimConfig, SimServer


def trades(n: int, start: int = 0) -> list[Trade]:
    return [trade("BTC", "B", 100, 1, 1_000 + i, i, f"0x{2 * i + 1:040x}", f"0x{2 * i + 2:040x}")
            for i in range(start, start + n)]


async def test_database_outage_buffers_drops_beyond_the_bound_and_recovers(db: Engine, database_url: str,
                                                                           redis_url: str, keys: RedisKeys) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    store = TraderStore(dead)
    client = aioredis.Redis.from_url(redis_url)
    pipeline = DiscoveryPipeline(store, ActivityMarks(client, keys), flush_max_trades=100, max_buffered_trades=1_000)
    dropped_before = DROPPED._value.get()
    try:
        pipeline.add(trades(800))
        with pytest.raises(psycopg.OperationalError):
            await pipeline.flush_once()
        assert pipeline.buffered == 800  # nothing lost while the database is down
        pipeline.add(trades(400, start=800))
        assert pipeline.buffered == 1_000
        assert DROPPED._value.get() - dropped_before == 200  # the oldest 200 went, loudly
        store.database_url = database_url  # the database is back
        assert await pipeline.drain(timeout=30)
        with db.connect() as conn:
            addresses = {r.address for r in conn.execute(text("SELECT address FROM traders"))}
        expected = {t.buyer for t in trades(1_000, start=200)} | {t.seller for t in trades(1_000, start=200)}
        assert addresses == expected
    finally:
        await store.close()
        await client.aclose()


async def test_redis_outage_keeps_the_marks_and_writes_them_later(db: Engine, database_url: str, redis_url: str,
                                                                  keys: RedisKeys) -> None:
    store = TraderStore(database_url)
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    marks = ActivityMarks(dead, keys)
    pipeline = DiscoveryPipeline(store, marks, flush_max_trades=1_000)
    live = aioredis.Redis.from_url(redis_url)
    try:
        pipeline.add(trades(10))
        with pytest.raises(redis.ConnectionError):
            await pipeline.flush_once()
        assert pipeline.buffered == 0  # the traders are in PostgreSQL ...
        with db.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM traders")).scalar_one() == 20
        marks.client = live  # ... and their marks land once Redis is back
        assert await pipeline.drain(timeout=10)
        address = trades(1)[0].buyer
        assert await live.zscore(keys.active(active_bucket(slot(address))), address) == 1_000
    finally:
        await store.close()
        await dead.aclose()
        await live.aclose()


async def test_a_backfill_round_survives_a_redis_outage_and_counts_what_it_could_not_read(
        database_url: str, redis_url: str, keys: RedisKeys) -> None:
    dead = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    live = aioredis.Redis.from_url(redis_url)
    store = TraderStore(database_url)
    pipeline = DiscoveryPipeline(store, ActivityMarks(live, keys))
    config = BudgetConfig(group="backfill", weight_per_minute=60_000)
    try:
        with SimServer(SimConfig(seed=4, traders=100, coins=2, trades_per_second=0), port=0) as sim:
            sim.step(400)
            coins = [asset["name"] for asset in sim.info({"type": "meta"})["universe"]]
            after_the_trades = int(time.time() * 1000) + 1_000   # a gap that began after every trade made
            async with InfoClient(sim.info_url, budget=WeightBudget(dead, keys, config)) as info:
                backfill = Backfill(info, pipeline)
                await backfill.round(coins, after_the_trades)   # the budget's Redis is down: nothing read
            assert backfill.incomplete_coins == len(coins) and backfill.recovered == 0 == pipeline.buffered
            async with InfoClient(sim.info_url, budget=WeightBudget(live, keys, config)) as info:
                backfill.info = info
                await backfill.round(coins, after_the_trades)
            expected = sum(len(sim.info({"type": "recentTrades", "coin": coin})) for coin in coins)
        assert expected == 2 * 100 and backfill.recovered == pipeline.buffered == expected
        assert backfill.incomplete_coins == len(coins) and backfill.rounds == 2   # the second round covered all
    finally:
        await store.close()
        await dead.aclose()
        await live.aclose()


@pytest.mark.slow
def test_sigterm_flushes_and_exits_zero(db: Engine, service_env: dict[str, str]) -> None:
    config = SimConfig(seed=3, traders=300, coins=4, trades_per_second=100, ws_max_new_connections_per_minute=0)
    with SimServer(config) as sim:
        env = dict(service_env, HYPERLIQUID_API_URL=sim.info_url, WEBSOCKET_URL=sim.ws_url,
                   HYPERFOLLOW_DISCOVERY_FLUSH_INTERVAL_MS="60000", HYPERFOLLOW_METRICS_PORT=str(free_port()))
        proc = subprocess.Popen([sys.executable, "-m", "hyperfollow.core", "discovery"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            port = env["HYPERFOLLOW_METRICS_PORT"]
            import httpx

            wait_for(lambda: _healthy(httpx, port), timeout=30, what="discovery healthy")
            emitted = sim.stats()["trades_emitted"]
            wait_for(lambda: sim.stats()["trades_emitted"] > emitted + 300, timeout=20, what="trades flowing")
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        assert proc.returncode == 0, output
        assert '"discovery stopped"' in output and '"drained":true' in output
        with db.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM traders")).scalar_one()
        # the flush interval is a minute: only the shutdown flush wrote them
        assert stored > 50


def _healthy(httpx: object, port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200  # type: ignore[attr-defined]
    except Exception:
        return False


def test_pipeline_add_drops_redundant_copies() -> None:
    pipeline = DiscoveryPipeline(None, None)  # type: ignore[arg-type]  (no I/O in add)
    batch = trades(5)
    assert pipeline.add(batch) == 5
    assert pipeline.add(batch) == 0  # the second link's copy
    assert pipeline.buffered == 5
