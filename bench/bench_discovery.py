"""Discovery throughput: trades per second from the simulator's WebSocket into PostgreSQL.

Ours: the discovery service (one link, batched upserts, activity marks in Redis), fed by the simulator's
firehose (pre-generated trades emitted as fast as it can) running in its own process; timed from the
first trade emitted to the last one flushed, with and without tape fills recorded.

Baseline, the seed's way, in the same run on trades from the same simulator, as its discovery service did it:
per WebSocket message an ORM session; per distinct address of the message one `query(Trader).filter(...)
.first()`, and for a new one its `get_or_create_trader` (a second lookup, add, commit, refresh). Only the
database work is timed (the messages are received beforehand), which flatters the baseline.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import psycopg
import websockets
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from hyperfollow.bench.support import free_port, scratch_database, servers
from hyperfollow.core.db.engine import sqlalchemy_url
from hyperfollow.core.db.models import Trader
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings
from hyperfollow.core.slots import slot
from hyperfollow.discovery.service import DiscoveryService
from hyperfollow.discovery.settings import DiscoverySettings

__all__ = ["run"]

COINS = 20
TRADERS = 50_000


def _serve_sim(port: int, trades: int) -> None:
    from hyperfollow.sim.server import SimConfig, SimServer

    config = SimConfig(seed=11, traders=TRADERS, coins=COINS, trades_per_second=1_000_000, pregenerate_trades=trades,
                       start_paused=True, weight_limit=0, ws_send_queue=1_000_000, max_batch=2_000,
                       ws_max_new_connections_per_minute=0)
    server = SimServer(config, port=port).start(timeout=300)
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()


class Sim:
    """The simulator in a process of its own, so it does not share a core's GIL with discovery."""

    def __init__(self, trades: int) -> None:
        self.port = free_port()
        self.trades = trades
        self.process = multiprocessing.get_context("spawn").Process(target=_serve_sim, args=(self.port, trades),
                                                                    daemon=True)

    def __enter__(self) -> Sim:
        self.process.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/_sim/stats", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the simulator did not start")

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.join(10)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def traders_seen(self) -> int:
        return len(httpx.get(f"{self.base}/_sim/traders", timeout=60).json()["traders"])

    def resume(self) -> None:
        httpx.post(f"{self.base}/_sim/resume", timeout=10).raise_for_status()


async def _ours(database_url: str, redis_url: str, trades: int, record_fills: bool) -> dict[str, Any]:
    with Sim(trades) as sim:
        settings = load_settings(
            DiscoverySettings, database_url=database_url, redis_url=redis_url, redis_namespace="bench-discovery:",
            hyperliquid_api_url=f"{sim.base}/info", websocket_url=f"ws://127.0.0.1:{sim.port}/ws", redundancy=1,
            record_fills=record_fills, flush_max_trades=20_000, flush_interval_ms=200, log_level="WARNING")
        service = DiscoveryService(settings, database_url, redis_url, RedisKeys("bench-discovery:"))
        task = asyncio.create_task(service.run())
        while len(service.coins) < COINS or service.links[0].connections == 0:
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        sim.resume()
        while service.pipeline.received < trades:
            await asyncio.sleep(0.02)  # every pre-generated trade arrives once (one link)
        async with httpx.AsyncClient(timeout=120) as http:  # live generation would follow the firehose
            await http.post(f"{sim.base}/_sim/pause")
        while service.pipeline.buffered:
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        received = service.pipeline.received
        service.stop.set()
        await asyncio.wait_for(task, timeout=60)
        expected = sim.traders_seen()
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM traders").fetchone()[0]
        fills = conn.execute("SELECT count(*) FROM tape_fills").fetchone()[0]
    return {"trades": received, "seconds": round(elapsed, 2), "trades_per_s": round(received / elapsed),
            "traders_stored": stored, "traders_in_trades": expected, "complete": stored == expected,
            "fills_stored": fills}


async def _collect(ws_url: str, base: str, trades: int) -> list[list[dict[str, Any]]]:
    """The simulator's first `trades` trades, as the messages (lists of trades) they arrived in."""
    received: list[list[dict[str, Any]]] = []
    count = 0
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.recv()  # greeting
        async with httpx.AsyncClient() as http:
            meta = (await http.post(f"{base}/info", json={"type": "meta"})).json()
            for asset in meta["universe"]:
                await ws.send(orjson.dumps({"method": "subscribe",
                                            "subscription": {"type": "trades", "coin": asset["name"]}}).decode())
            for _ in meta["universe"]:
                await ws.recv()
            await http.post(f"{base}/_sim/resume")
        while count < trades:
            message = orjson.loads(await ws.recv())
            if message.get("channel") == "trades":
                batch = message["data"][: trades - count]
                received.append(batch)
                count += len(batch)
    return received


def _seed_way(database_url: str, messages: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """The seed's discovery loop on our schema: a session per message, a lookup per distinct address,
    get-or-create (lookup, add, commit, refresh) for a new one."""
    engine = create_engine(sqlalchemy_url(database_url))  # the seed's engine and session settings
    new_session = sessionmaker(autocommit=False, autoflush=False, bind=engine)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE traders CASCADE"))
    started = time.perf_counter()
    for trades in messages:
        db = new_session()
        try:
            seen: set[str] = set()
            for trade in trades:
                for address in trade["users"]:
                    if address in seen:
                        continue
                    seen.add(address)
                    if db.query(Trader).filter(Trader.address == address).first() is None:
                        _get_or_create_trader(db, address)
        finally:
            db.close()
    elapsed = time.perf_counter() - started
    engine.dispose()
    count = sum(map(len, messages))
    return {"trades": count, "messages": len(messages), "seconds": round(elapsed, 2),
            "trades_per_s": round(count / elapsed)}


def _get_or_create_trader(db: Session, address: str) -> Trader:
    existing = db.query(Trader).filter(Trader.address == address).first()
    if existing is not None:
        return existing
    trader = Trader(address=address, slot=slot(address), first_seen_at=datetime.now(UTC), is_active=True)
    db.add(trader)
    db.commit()
    db.refresh(trader)
    return trader


def run(quick: bool = False) -> dict[str, Any]:
    trades = 50_000 if quick else 300_000
    seed_trades = 10_000 if quick else 30_000
    database_server, redis_url = servers()
    figures: dict[str, Any] = {"workload": {"traders": TRADERS, "coins": COINS, "trades": trades}}
    with scratch_database(database_server) as url:
        figures["ours_without_fills"] = asyncio.run(_ours(url, redis_url, trades, record_fills=False))
    with scratch_database(database_server) as url:
        figures["ours_with_fills"] = asyncio.run(_ours(url, redis_url, trades, record_fills=True))
    with scratch_database(database_server) as url, Sim(seed_trades) as sim:
        sample = asyncio.run(_collect(f"ws://127.0.0.1:{sim.port}/ws", sim.base, seed_trades))
        figures["seed_way"] = _seed_way(url, sample)
    seed_rate = figures["seed_way"]["trades_per_s"]
    figures["ratio_without_fills"] = round(figures["ours_without_fills"]["trades_per_s"] / seed_rate, 1)
    figures["ratio_with_fills"] = round(figures["ours_with_fills"]["trades_per_s"] / seed_rate, 1)
    return figures
