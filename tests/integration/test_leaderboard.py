"""The set-based leaderboard computation against the real PostgreSQL and Redis.

The golden vectors (tests/data/metrics_vectors.json) must come out of the SQL exactly; random histories must
give exactly what the Python reference gives; reruns are idempotent upserts; a landed computation bumps the
cache generation and deletes the cached pages.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis
from metrics_vectors import FIELDS, StoredSnapshot, load_vectors, state_data
from sqlalchemy import Connection, Engine, text
from support import free_port

from hyperfollow.core.keys import RedisKeys
from hyperfollow.workers.leaderboard import compute, compute_leaderboard
from hyperfollow.workers.leaderboard_reference import METRICS_VERSION, Fill, compute_trader_metrics

NOW, MIN_TRADES, VECTORS = load_vectors()


def _insert_trader(conn: Connection, number: int, first_seen_at: Any, fills: list[Fill],
                   snapshots: list[StoredSnapshot]) -> int:
    trader_id = conn.execute(
        text("INSERT INTO traders (address, slot, first_seen_at) VALUES (:a, :s, :f) RETURNING id"),
        {"a": f"0x{number:040x}", "s": number % 16384, "f": first_seen_at}).scalar_one()
    if fills:
        conn.execute(text("INSERT INTO tape_fills (trader_id, coin, side, px, sz, time, tid, crossed) "
                          "VALUES (:t, :coin, :side, :px, :sz, :time, :tid, :crossed)"),
                     [{"t": trader_id, "coin": f.coin, "side": f.side, "px": f.px, "sz": f.sz, "time": f.time,
                       "tid": f.tid, "crossed": f.crossed} for f in fills])
    for snap in snapshots:  # one by one: ids follow the list order (the tie-break of equal timestamps)
        conn.execute(text("INSERT INTO user_state_history (trader_id, timestamp, state_data, account_value, "
                          "total_notional) VALUES (:t, :ts, CAST(:state AS jsonb), :av, :n)"),
                     {"t": trader_id, "ts": snap.timestamp, "state": json.dumps(snap.state_data),
                      "av": snap.account_value, "n": snap.total_notional})
    return int(trader_id)


def _insert_vectors(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        return {v.name: _insert_trader(conn, i + 1, v.first_seen_at, v.fills, v.snapshots)
                for i, v in enumerate(VECTORS)}


def _rows(engine: Engine) -> dict[tuple[int, str], dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(text('SELECT * FROM leaderboard_metrics ORDER BY trader_id, "window"'))
        return {(row["trader_id"], row["window"]): dict(row) for row in result.mappings()}


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_sql_gives_the_golden_metrics(db: Engine, redis_client: redis.Redis, keys: RedisKeys, vector: Any) -> None:
    ids = _insert_vectors(db)  # every vector present: each trader's rows must not leak into another's
    compute(db, redis_client, keys, NOW, min_trades=MIN_TRADES)
    rows = _rows(db)
    assert len(rows) == 3 * len(VECTORS)
    for window, expected in vector.expected.items():
        row = rows[(ids[vector.name], window)]
        assert {field: row[field] for field in FIELDS} == expected, window
        assert row["metrics_version"] == METRICS_VERSION and row["updated_at"] == NOW


def test_rerun_is_an_idempotent_upsert_that_invalidates_the_cache(db: Engine, redis_client: redis.Redis,
                                                                   keys: RedisKeys) -> None:
    ids = _insert_vectors(db)
    cached = [keys.leaderboard_cache("win_rate", "desc"), keys.leaderboard_cache("roi", "asc", "7d:page=2")]
    other = keys.heartbeat("api")
    for key in [*cached, other]:
        redis_client.set(key, "x")

    first = compute(db, redis_client, keys, NOW, min_trades=MIN_TRADES)
    assert first.rows == 3 * len(VECTORS) and first.traders == len(VECTORS)
    assert first.generation == 1 and first.cache_keys_deleted == 2 and first.cache_invalidated
    assert not any(redis_client.exists(key) for key in cached) and redis_client.exists(other)
    before = _rows(db)

    redis_client.set(cached[0], "x")
    second = compute(db, redis_client, keys, NOW, min_trades=MIN_TRADES)
    assert second.generation == 2 and second.cache_keys_deleted == 1
    assert int(redis_client.get(keys.leaderboard_generation)) == 2
    assert _rows(db) == before

    # new data and a later clock update the same rows in place
    trader = ids["partial_close_flip_open_at_end"]
    with db.begin() as conn:
        conn.execute(text("INSERT INTO tape_fills (trader_id, coin, side, px, sz, time, tid, crossed) "
                          "VALUES (:t, 'ETH', 'A', 30, 1, :time, 16, true)"),
                     {"t": trader, "time": NOW + timedelta(hours=1)})
    compute(db, redis_client, keys, NOW + timedelta(hours=2), min_trades=MIN_TRADES)
    after = _rows(db)
    assert len(after) == len(before)
    # at the later clock the fill after the old `now` (tid 15) closes the trade opened at it (a third trade);
    # the new sell (tid 16) opens a short that is still open
    assert after[(trader, "all")]["trade_count"] == 3
    assert after[(trader, "all")]["updated_at"] == NOW + timedelta(hours=2)
    assert after[(trader, "all")]["realized_pnl_usd"] > before[(trader, "all")]["realized_pnl_usd"]


def _random_history(rng: random.Random, number: int) -> tuple[Any, list[Fill], list[StoredSnapshot]]:
    """A small random history; some instants are picked on the edges (window starts, snapshot times)."""
    coins = rng.sample(["BTC", "ETH", "SOL", "HYPE"], rng.randint(1, 3))
    start = NOW - timedelta(days=rng.choice([3, 12, 45]))
    edges = [NOW, NOW - timedelta(days=7), NOW - timedelta(days=30)]

    def instant() -> Any:
        if rng.random() < 0.15:
            return rng.choice(edges)
        return start + timedelta(seconds=rng.randint(-3600, int((NOW - start).total_seconds()) + 7200))

    snapshots = []
    for _ in range(rng.randint(0, 8)):
        held = None if rng.random() < 0.1 else [c for c in coins if rng.random() < 0.4]
        value = rng.choice([None, Decimal(0), Decimal(rng.randint(-500, 500_000)) / 100,
                            Decimal(rng.randint(1, 5_000_000)) / 100])
        notional = None if rng.random() < 0.1 else Decimal(rng.randint(0, 10_000_000)) / 100
        state = state_data(held, None if value is None else str(value))
        if held is not None and rng.random() < 0.2:  # a listed position of size zero is no position
            state["assetPositions"].append({"position": {"coin": rng.choice(coins), "szi": rng.choice(["0", "0.0"])}})
        snapshots.append(StoredSnapshot(instant(), value, notional, state))
    if snapshots and rng.random() < 0.3:  # equal timestamps: ordered by id
        snapshots.append(StoredSnapshot(snapshots[0].timestamp, Decimal(7), Decimal(70), state_data([], "7")))
    edges += [s.timestamp for s in snapshots]
    fills = []
    for tid in range(rng.randint(0, 40)):
        fills.append(Fill(rng.choice(coins), rng.choice("BA"), Decimal(rng.randint(1000, 99999)) / 100,
                          Decimal(rng.choice([1, 2, 3, 5])) / 2, instant(), number * 1000 + tid,
                          rng.random() < 0.5))
    if fills and rng.random() < 0.3:  # same instant, different tids
        twin = fills[0]
        fills.append(Fill(twin.coin, "A" if twin.side == "B" else "B", twin.px, twin.sz * 2, twin.time,
                          twin.tid + 500, not twin.crossed))
    return start - timedelta(hours=rng.randint(0, 48)), fills, snapshots


def test_sql_equals_the_reference_on_random_histories(db: Engine, keys: RedisKeys) -> None:
    rng = random.Random(20260301)
    histories = {}
    with db.begin() as conn:
        for number in range(1, 61):
            first_seen, fills, snapshots = _random_history(rng, number)
            trader_id = _insert_trader(conn, number, first_seen, fills, snapshots)
            histories[trader_id] = (first_seen, fills, snapshots)
    compute(db, None, keys, NOW, min_trades=MIN_TRADES)
    rows = _rows(db)
    counted = 0
    for trader_id, (first_seen, fills, snapshots) in histories.items():
        expected = compute_trader_metrics(first_seen, fills, [s.as_reference() for s in snapshots], NOW, MIN_TRADES)
        for window, metrics in expected.items():
            row = rows[(trader_id, window)]
            assert {field: row[field] for field in FIELDS} == {f: getattr(metrics, f) for f in FIELDS}, \
                (trader_id, window)
            counted += metrics.trade_count
    assert counted > 50  # the histories really exercise round trips


def test_scheduled_entry_point_reads_the_environment(db: Engine, redis_client: redis.Redis, keys: RedisKeys,
                                                     database_url: str, redis_url: str, redis_namespace: str,
                                                     monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    ids = _insert_vectors(db)
    for name, value in {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "HYPERFOLLOW_HOME": str(tmp_path),
                        "HYPERFOLLOW_REDIS_NAMESPACE": redis_namespace,
                        "HYPERFOLLOW_LEADERBOARD_MIN_TRADES": "1"}.items():
        monkeypatch.setenv(name, value)
    summary = compute_leaderboard()
    assert summary["rows"] == 3 * len(VECTORS) and summary["generation"] == 1
    json.dumps(summary)  # an RQ job result that serializes plainly
    rows = _rows(db)
    assert rows[(ids["fills_before_first_flat_snapshot"], "all")]["low_sample"] is False  # 2 trades >= 1
    assert rows[(ids["no_usable_snapshot_no_trades"], "all")]["low_sample"] is True  # 0 trades
    assert int(redis_client.get(keys.leaderboard_generation)) == 1


def test_rows_land_even_when_redis_is_down(db: Engine, keys: RedisKeys) -> None:
    _insert_vectors(db)
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)
    summary = compute(db, unreachable, keys, NOW, min_trades=MIN_TRADES)
    assert summary.rows == 3 * len(VECTORS)
    assert not summary.cache_invalidated and summary.generation is None
    assert len(_rows(db)) == 3 * len(VECTORS)
