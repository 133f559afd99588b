"""Flushes against the real PostgreSQL and Redis: inserts once, caches, keeps times, marks activity."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis
from sqlalchemy import Engine, text
from support import trade

from hyperfollow.core.keys import RedisKeys, active_bucket
from hyperfollow.core.slots import slot
from hyperfollow.discovery.batch import build_batch
from hyperfollow.discovery.marks import ActivityMarks
from hyperfollow.discovery.store import KnownTraders, TraderStore

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "c" * 40


def ms(seconds: float) -> int:
    return int(seconds * 1000)


async def test_flushes_insert_each_trader_once_and_keep_times(db: Engine, database_url: str) -> None:
    store = TraderStore(database_url, last_seen_granularity_ms=10_000)
    try:
        first = await store.write(build_batch([trade("BTC", "B", 100, 1, ms(1_000), 1, A, B)],
                                              record_fills=True))
        assert first.new_traders == 2 and first.fills_inserted == 2
        # again with a later trade (A) and a new trader (C); a re-sent trade is not stored twice
        second = await store.write(build_batch([trade("BTC", "B", 100, 1, ms(1_000), 1, A, B),
                                                trade("ETH", "A", 5, 3, ms(1_030), 2, C, A)],
                                               record_fills=True))
        assert second.new_traders == 1 and second.fills_inserted == 2
        assert second.last_seen_updates == 1  # only A moved by >= 10 s
        with db.connect() as conn:
            rows = {r.address: r for r in conn.execute(text(
                "SELECT address, slot, first_seen_at, last_seen_trading_at FROM traders"))}
            fills = conn.execute(text("SELECT count(*) FROM tape_fills")).scalar_one()
        assert set(rows) == {A, B, C} and fills == 4
        assert rows[A].slot == slot(A)
        assert rows[A].first_seen_at == datetime.fromtimestamp(1_000, UTC)
        assert rows[A].last_seen_trading_at == datetime.fromtimestamp(1_030, UTC)
        assert rows[B].last_seen_trading_at == datetime.fromtimestamp(1_000, UTC)
        assert len(store.known) == 3
    finally:
        await store.close()


async def test_a_fresh_process_finds_existing_traders(db: Engine, database_url: str) -> None:
    once = trade("BTC", "B", 100, 1, ms(50), 1, A, B)
    store = TraderStore(database_url)
    await store.write(build_batch([once], record_fills=False))
    await store.close()
    restarted = TraderStore(database_url)  # empty cache, as after a restart
    try:
        result = await restarted.write(build_batch([once], record_fills=False))
        assert result.new_traders == 0 and len(restarted.known) == 2
    finally:
        await restarted.close()
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM traders")).scalar_one() == 2


def test_known_traders_stay_bounded() -> None:
    known = KnownTraders(capacity=10)
    for i in range(25):
        known.put(f"0x{i:040x}", i, 0)
    assert len(known) <= 10 and known.get(f"0x{24:040x}") == (24, 0) and known.get(f"0x{0:040x}") is None


async def test_marks_keep_the_earliest_and_latest_trade(redis_url: str, keys: RedisKeys) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        marks = ActivityMarks(client, keys)
        await marks.mark({A: (1_000, 2_000)})
        await marks.mark({A: (3_000, 4_000), B: (500, 500)})
        bucket = active_bucket(slot(A))
        assert await client.zscore(keys.active(bucket), A) == 1_000  # the earliest unserved trade stays
        assert await client.zscore(keys.active_latest(bucket), A) == 4_000
        assert await client.zscore(keys.active(active_bucket(slot(B))), B) == 500
    finally:
        await client.aclose()
