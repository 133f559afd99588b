"""Leaderboard computation: the set-based statement vs the seed's way (a Python loop over every trader).

A scratch database (`hf_bench_<random>`, created on the server of DATABASE_URL or the embedded one, dropped at
the end) is filled with set-based SQL: 100,000 traders with 10 tape fills each (1,000,000 fills: round trips,
flips, partial closes, positions left open) and 5 snapshots each; quick mode is 10,000 / 100,000. Then:

- ours: :func:`hyperfollow.workers.leaderboard.compute` (one INSERT … SELECT … ON CONFLICT), into an empty
  table, then again (the steady state: every row updated);
- the baseline, the seed's shape: for every trader, query its fills and snapshots, compute in Python (our own
  reference implementation, so both produce the same rows), upsert its rows; one transaction.

Both start from an empty `leaderboard_metrics` and the same clock; the benchmark reports both times, the ratio,
and whether the two produced identical rows (every column compared in SQL).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg

from hyperfollow.bench.support import scratch_database
from hyperfollow.core.keys import RedisKeys
from hyperfollow.workers.leaderboard import compute
from hyperfollow.workers.leaderboard_reference import Fill, Snapshot, compute_trader_metrics, held_coins

__all__ = ["run"]

FILLS_PER_TRADER = 10  # five round-trip attempts, each on its own coin
SNAPSHOTS_PER_TRADER = 5
COINS = 50
MIN_TRADES = 5
COLUMNS = ("account_age_days", "total_volume_usd", "win_rate", "avg_risk_ratio", "max_drawdown", "max_profit_usd",
           "max_loss_usd", "realized_pnl_usd", "roi", "trade_count", "win_count", "fees_usd", "last_trade_at",
           "low_sample", "metrics_version", "updated_at")

GENERATE = [
    "SELECT setseed(0.42)",
    """INSERT INTO traders (id, address, slot, first_seen_at)
       SELECT i, '0x' || lpad(to_hex(i), 40, '0'), i %% 16384, %(now)s - interval '61 days'
       FROM generate_series(1, %(traders)s) AS i""",
    # each pair: an opening fill, then 70 % a full close, 15 % a flip (close twice the size: left open the
    # other way), 15 % a partial close (left open)
    f"""WITH pairs AS (
           SELECT i AS trader_id, 'C' || ((i + p) %% {COINS}) AS coin, random() < 0.5 AS long_first,
                  (10 + floor(random() * 9000) / 100)::numeric AS px, (1 + floor(random() * 100))::numeric / 10 AS sz,
                  random() AS kind, random() AS move,
                  %(now)s - interval '60 days' + random() * interval '59 days' AS opened,
                  random() * interval '1 day' AS held
           FROM generate_series(1, %(traders)s) AS i CROSS JOIN generate_series(0, {FILLS_PER_TRADER // 2 - 1}) AS p)
       INSERT INTO tape_fills (trader_id, coin, side, px, sz, time, tid, crossed)
       SELECT trader_id, coin, side, px, sz, time, row_number() OVER (), random() < 0.6
       FROM (SELECT trader_id, coin, CASE WHEN long_first THEN 'B' ELSE 'A' END AS side, px, sz, opened AS time
             FROM pairs
             UNION ALL
             SELECT trader_id, coin, CASE WHEN long_first THEN 'A' ELSE 'B' END,
                    round(px * (0.9 + 0.2 * move)::numeric, 4),
                    CASE WHEN kind < 0.7 THEN sz WHEN kind < 0.85 THEN sz * 2 ELSE sz / 2 END, opened + held
             FROM pairs) AS fills""",
    # the first snapshot precedes every fill; one trader in ten holds a coin in it (anchored later)
    f"""INSERT INTO user_state_history (trader_id, timestamp, state_data, account_value, total_notional)
       SELECT trader_id, at,
              jsonb_build_object(
                  'assetPositions', CASE WHEN k = 0 AND trader_id %% 10 = 0
                      THEN jsonb_build_array(jsonb_build_object('type', 'oneWay', 'position',
                           jsonb_build_object('coin', 'C' || (trader_id %% {COINS}), 'szi', '1.0', 'entryPx', '100.0')))
                      ELSE '[]'::jsonb END,
                  'marginSummary', jsonb_build_object('accountValue', av::text, 'totalNtlPos', ntl::text,
                                                      'totalRawUsd', av::text, 'totalMarginUsed', '0.0'),
                  'withdrawable', av::text, 'time', (extract(epoch FROM at) * 1000)::bigint),
              av, ntl
       FROM (SELECT i AS trader_id, k, %(now)s - interval '61 days' + k * interval '12 days'
                        + CASE WHEN k = 0 THEN interval '0' ELSE random() * interval '11 days' END AS at,
                    round((500 + random() * 1000)::numeric, 2) AS av, random() AS lev
             FROM generate_series(1, %(traders)s) AS i
             CROSS JOIN generate_series(0, {SNAPSHOTS_PER_TRADER - 1}) AS k) AS s
       CROSS JOIN LATERAL (SELECT round(av * (lev * 3)::numeric, 2) AS ntl) AS n""",
    "ANALYZE traders",
    "ANALYZE tape_fills",
    "ANALYZE user_state_history",
]

ONE_TRADER_UPSERT = f"""
    INSERT INTO leaderboard_metrics (trader_id, "window", {", ".join(COLUMNS)})
    VALUES (%(trader_id)s, %(window)s, {", ".join(f"%({c})s" for c in COLUMNS)})
    ON CONFLICT (trader_id, "window") DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)}"""


def _python_loop(url: str, now: datetime) -> None:
    """The seed's way: per trader, two queries, Python arithmetic, one upsert; one transaction."""
    with psycopg.connect(url) as conn:
        traders = conn.execute("SELECT id, first_seen_at FROM traders ORDER BY id").fetchall()
        with conn.cursor() as cur:
            for trader_id, first_seen_at in traders:
                fills = [Fill(*row) for row in cur.execute(
                    "SELECT coin, side, px, sz, time, tid, crossed FROM tape_fills WHERE trader_id = %s "
                    "AND time <= %s", (trader_id, now)).fetchall()]
                snapshots = [Snapshot(at, value, notional, held_coins({"assetPositions": positions}))
                             for at, value, notional, positions in cur.execute(
                                 "SELECT timestamp, account_value, total_notional, state_data -> 'assetPositions' "
                                 "FROM user_state_history WHERE trader_id = %s AND timestamp <= %s "
                                 "ORDER BY timestamp, id", (trader_id, now)).fetchall()]
                metrics = compute_trader_metrics(first_seen_at, fills, snapshots, now, MIN_TRADES)
                cur.executemany(ONE_TRADER_UPSERT, [
                    {**row.as_dict(), "trader_id": trader_id, "metrics_version": 1, "updated_at": now}
                    for row in metrics.values()])
        conn.commit()


def _differences(conn: psycopg.Connection) -> int:
    columns = ", ".join(["trader_id", '"window"', *COLUMNS])
    return int(conn.execute(
        f"SELECT (SELECT count(*) FROM (SELECT {columns} FROM bench_sql_rows EXCEPT "
        f"SELECT {columns} FROM leaderboard_metrics) a) + (SELECT count(*) FROM (SELECT {columns} FROM "
        f"leaderboard_metrics EXCEPT SELECT {columns} FROM bench_sql_rows) b)").fetchone()[0])


def run(quick: bool = False) -> dict[str, Any]:
    traders = 10_000 if quick else 100_000
    now = datetime.now(UTC).replace(microsecond=0)
    figures: dict[str, Any] = {"traders": traders, "fills": traders * FILLS_PER_TRADER,
                               "snapshots": traders * SNAPSHOTS_PER_TRADER, "min_trades": MIN_TRADES}
    with scratch_database() as url:
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in GENERATE:
                conn.execute(statement, {"now": now, "traders": traders})
        figures["generate_seconds"] = round(time.perf_counter() - started, 2)

        summary = compute(url, None, RedisKeys(), now, min_trades=MIN_TRADES)
        figures["sql_seconds"] = summary.seconds
        figures["rows"] = summary.rows
        rerun = compute(url, None, RedisKeys(), now, min_trades=MIN_TRADES)
        figures["sql_rerun_seconds"] = rerun.seconds
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bench_sql_rows AS SELECT * FROM leaderboard_metrics")
            counted = conn.execute("SELECT sum(trade_count), count(*) FILTER (WHERE NOT low_sample) "
                                   "FROM leaderboard_metrics WHERE \"window\" = 'all'").fetchone()
            figures["closed_trades_all_window"], figures["ranked_traders_all_window"] = int(counted[0]), counted[1]
            conn.execute("TRUNCATE leaderboard_metrics")

        started = time.perf_counter()
        _python_loop(url, now)
        figures["python_loop_seconds"] = round(time.perf_counter() - started, 2)
        with psycopg.connect(url, autocommit=True) as conn:
            figures["rows_differing"] = _differences(conn)
    figures["rows_identical"] = figures["rows_differing"] == 0
    figures["speedup_vs_python_loop"] = round(figures["python_loop_seconds"] / figures["sql_seconds"], 1)
    return figures
