"""The leaderboard computation as one set-based statement (metrics version 1, docs/metrics.md).

One `INSERT … SELECT … ON CONFLICT DO UPDATE` computes every trader's row for every window from the tape
(`tape_fills`) and the stored states (`user_state_history`), so readers see the old leaderboard or the new
one, never a mix. It gives exactly what :mod:`hyperfollow.workers.leaderboard_reference` (the definition)
gives; the steps:

1. `closes` / `held_at_first`: the moments we observed a (trader, coin) flat: the trader's first usable
   snapshot for the coins it does not hold, the first observed close for those it does, then every observed
   close (a usable snapshot without the coin whose predecessor had it). Positions come from
   `assetPositions`, read once per snapshot.
2. `events` / `pieces` / `running`: the fills after the first anchor, cut by the observed closes (a fill
   at an anchor's time is before it) into pieces that each start flat; the running position within a piece
   (a window sum).
3. `split` / `cumulated` / `trades`: a fill closes a trade when the position reaches zero or flips through
   it; a flip's part beyond zero opens the next trade. Running cash (Σ −signed size × px) and estimated fees
   per piece, taken at each closing fill without the opening part; a trade's gross PnL and fees are the
   differences between consecutive closes. A trade still open when its piece ends never closes: dropped.
   Every step keeps the (trader, coin, piece, time) order, so nothing is sorted twice.
4. Per trader, one pass each with a FILTER per window: trade statistics, volume, and the account-value
   series. A window's series is the snapshot in force at its start (the last one at or before it, whose
   interval is cut at the start) followed by the snapshots inside; those points form a suffix of the whole
   series, so one ordered pass computes every window's running peak, durations and first value.
5. The three windows become three rows (`CROSS JOIN LATERAL (VALUES …)`), upserted.

Bind parameters: `now`, `start_7d`, `start_30d` (timestamptz), `min_trades` (int).
"""

from __future__ import annotations

from hyperfollow.workers.leaderboard_reference import (
    MAKER_FEE_RATE,
    METRICS_VERSION,
    NUMBER,
    RATIO_LIMIT,
    ROI_BASE_FLOOR_USD,
    TAKER_FEE_RATE,
    WINDOW_SPANS,
)

__all__ = ["ADVISORY_LOCK_KEY", "LEADERBOARD_UPSERT", "METRIC_COLUMNS"]

#: pg_advisory_xact_lock key serializing computations (scheduled and on-demand runs never interleave).
ADVISORY_LOCK_KEY = 7_301_440_216_118_502_911

#: The columns written, in the order the statement selects them (the per-window ones first).
_PER_WINDOW_COLUMNS = (
    "total_volume_usd", "win_rate", "avg_risk_ratio", "max_drawdown", "max_profit_usd", "max_loss_usd",
    "realized_pnl_usd", "roi", "trade_count", "win_count", "fees_usd", "last_trade_at",
)
METRIC_COLUMNS = (*_PER_WINDOW_COLUMNS, "account_age_days", "low_sample", "metrics_version", "updated_at")

#: Window -> SQL expression of its start (exclusive).
_STARTS = {"7d": "CAST(%(start_7d)s AS timestamptz)", "30d": "CAST(%(start_30d)s AS timestamptz)",
           "all": "CAST('-infinity' AS timestamptz)"}
assert set(_STARTS) == set(WINDOW_SPANS)
_NOW = "CAST(%(now)s AS timestamptz)"


def _each_window(template: str, separator: str = ",\n           ") -> str:
    """`template` once per window: `{w}` is the column suffix (7d, 30d, all), `{start}` the window start."""
    return separator.join(template.format(w=window, start=start) for window, start in _STARTS.items())


_TRADE_STATS = _each_window(
    "count(*) FILTER (WHERE closed_at > {start}) AS trades_{w}, "
    "count(*) FILTER (WHERE closed_at > {start} AND net > 0) AS wins_{w}, "
    "sum(net) FILTER (WHERE closed_at > {start}) AS realized_{w}, "
    "sum(fees) FILTER (WHERE closed_at > {start}) AS fees_{w}, "
    "max(net) FILTER (WHERE closed_at > {start}) AS best_{w}, "
    "min(net) FILTER (WHERE closed_at > {start}) AS worst_{w}, "
    "max(closed_at) FILTER (WHERE closed_at > {start}) AS last_{w}")

_VOLUME = _each_window("sum(px * sz) FILTER (WHERE time > {start}) AS volume_{w}")

# a point is in a window's series when it is inside it or is the state in force at its start
_FLAGS = _each_window(
    "coalesce(next_t > {start}, true) AS in_{w}, "
    "(t <= {start} AND coalesce(next_t > {start}, true)) OR (t > {start} AND prev_t IS NULL) AS first_{w}, "
    "extract(epoch FROM coalesce(next_t, " + _NOW + ") - greatest(t, {start})) AS seconds_{w}")

_PEAKS = _each_window("max(v) FILTER (WHERE in_{w}) OVER o AS peak_{w}")

_SERIES_STATS = _each_window(
    "max(CAST(peak_{w} - v AS numeric(60, 30)) / peak_{w}) FILTER (WHERE in_{w} AND peak_{w} > 0) AS drawdown_{w}, "
    "sum(CAST(n AS numeric(60, 30)) / v * seconds_{w}) FILTER (WHERE in_{w} AND v > 0 AND n IS NOT NULL) "
    "AS risk_weighted_{w}, "
    "sum(seconds_{w}) FILTER (WHERE in_{w} AND v > 0 AND n IS NOT NULL) AS risk_seconds_{w}, "
    "max(v) FILTER (WHERE first_{w}) AS first_value_{w}")

_ROWS = _each_window(
    "('{w}', coalesce(v.volume_{w}, 0), "
    "CASE WHEN ts.trades_{w} > 0 THEN CAST(ts.wins_{w} AS numeric(60, 30)) / ts.trades_{w} ELSE 0 END, "
    f"CASE WHEN ss.risk_seconds_{{w}} > 0 THEN least(ss.risk_weighted_{{w}} / ss.risk_seconds_{{w}}, {RATIO_LIMIT}) "
    "ELSE 0 END, "
    "least(greatest(coalesce(ss.drawdown_{w}, 0), 0), 1), "
    "greatest(coalesce(ts.best_{w}, 0), 0), "
    "greatest(-coalesce(ts.worst_{w}, 0), 0), "
    "coalesce(ts.realized_{w}, 0), "
    "CASE WHEN ss.first_value_{w} IS NULL OR ts.realized_{w} IS NULL THEN 0 "
    f"ELSE least(greatest(CAST(ts.realized_{{w}} AS numeric(60, 30)) / greatest(ss.first_value_{{w}}, "
    f"{ROI_BASE_FLOOR_USD}), -{RATIO_LIMIT}), {RATIO_LIMIT}) END, "
    "coalesce(ts.trades_{w}, 0), coalesce(ts.wins_{w}, 0), coalesce(ts.fees_{w}, 0), ts.last_{w})",
    separator=",\n        ")

LEADERBOARD_UPSERT = f"""
WITH
usable AS MATERIALIZED (  -- snapshots with a position list, numbered per trader
    SELECT id, trader_id, timestamp, row_number() OVER (PARTITION BY trader_id ORDER BY timestamp, id) AS k
    FROM user_state_history
    WHERE timestamp <= {_NOW} AND jsonb_typeof(state_data -> 'assetPositions') = 'array'
),
held AS MATERIALIZED (  -- (trader, k, coin) per position held in snapshot k
    SELECT DISTINCT u.trader_id, u.k, p.coin
    FROM (SELECT s.id, e -> 'position' ->> 'coin' AS coin
          FROM user_state_history s
          CROSS JOIN LATERAL jsonb_array_elements(s.state_data -> 'assetPositions') AS e
          WHERE s.timestamp <= {_NOW} AND jsonb_typeof(s.state_data -> 'assetPositions') = 'array'
            AND jsonb_typeof(e -> 'position' -> 'coin') = 'string'
            AND NOT CASE WHEN e -> 'position' ->> 'szi' ~ '{NUMBER.pattern}'  -- a zero size is no position
                         THEN CAST(e -> 'position' ->> 'szi' AS numeric) = 0 ELSE false END) AS p
    JOIN usable u ON u.id = p.id
),
closes AS MATERIALIZED (  -- observed closes: held in usable snapshot k - 1, not in k
    SELECT h.trader_id, h.coin, u.timestamp AS at
    FROM held h
    JOIN usable u ON u.trader_id = h.trader_id AND u.k = h.k + 1
    WHERE NOT EXISTS (SELECT FROM held n WHERE n.trader_id = h.trader_id AND n.k = h.k + 1 AND n.coin = h.coin)
),
first_usable AS (
    SELECT trader_id, timestamp FROM usable WHERE k = 1
),
held_at_first AS (  -- coins held in a trader's first usable snapshot start at their first observed close
    SELECT h.trader_id, h.coin, coalesce(min(c.at), CAST('infinity' AS timestamptz)) AS at
    FROM held h
    LEFT JOIN closes c ON c.trader_id = h.trader_id AND c.coin = h.coin
    WHERE h.k = 1
    GROUP BY h.trader_id, h.coin
),
events AS (  -- fills after the first anchor (kind 0), and the observed closes (kind 1) that cut the tape; at
             -- equal times a fill is before the anchor (the snapshot reflects it)
    SELECT f.trader_id, f.coin, f.time, 0 AS kind, f.tid, f.px, f.crossed,
           CASE WHEN f.side = 'B' THEN f.sz ELSE -f.sz END AS q
    FROM tape_fills f
    JOIN first_usable first ON first.trader_id = f.trader_id
    LEFT JOIN held_at_first h ON h.trader_id = f.trader_id AND h.coin = f.coin
    WHERE f.time > coalesce(h.at, first.timestamp) AND f.time <= {_NOW}
    UNION ALL
    SELECT trader_id, coin, at, 1, NULL, NULL, NULL, 0
    FROM closes
),
pieces AS (  -- piece: the observed closes passed; each piece starts flat
    SELECT *, count(*) FILTER (WHERE kind = 1) OVER (PARTITION BY trader_id, coin ORDER BY time, kind, tid
                                                       ROWS UNBOUNDED PRECEDING) AS piece
    FROM events
),
running AS (
    SELECT *, sum(q) OVER o AS pos_after
    FROM pieces
    WINDOW o AS (PARTITION BY trader_id, coin, piece ORDER BY time, kind, tid ROWS UNBOUNDED PRECEDING)
),
split AS (  -- a flip (through zero): the part up to zero closes the trade, the rest opens the next one
    SELECT *,
           CASE WHEN flips THEN pos_after ELSE 0 END AS q_open,
           kind = 0 AND (pos_after = 0 OR flips) AS closes,
           CASE WHEN crossed THEN {TAKER_FEE_RATE} ELSE {MAKER_FEE_RATE} END AS fee_rate
    FROM (SELECT *, (pos_after - q) * pos_after < 0 AS flips FROM running) AS r
),
cumulated AS (  -- running cash (sells +, buys -) and estimated fees of the piece; the opening part of a flip
                -- belongs to the next trade
    SELECT trader_id, coin, piece, time, kind, tid, closes,
           sum(-q * px) OVER o + q_open * px AS cash,
           sum(abs(q) * px * fee_rate) OVER o - abs(q_open) * px * fee_rate AS fees
    FROM split
    WINDOW o AS (PARTITION BY trader_id, coin, piece ORDER BY time, kind, tid ROWS UNBOUNDED PRECEDING)
),
trades AS (  -- a closed trade = the cash and fees between the previous close in its piece and its own
    SELECT trader_id, time AS closed_at,
           cash - coalesce(lag(cash) OVER o, 0) AS gross,
           fees - coalesce(lag(fees) OVER o, 0) AS fees
    FROM cumulated
    WHERE closes
    WINDOW o AS (PARTITION BY trader_id, coin, piece ORDER BY time, kind, tid)
),
trade_stats AS (
    SELECT trader_id,
           {_TRADE_STATS}
    FROM (SELECT trader_id, gross - fees AS net, fees, closed_at FROM trades) AS t
    GROUP BY trader_id
),
volume AS (
    SELECT trader_id,
           {_VOLUME}
    FROM tape_fills
    WHERE time <= {_NOW}
    GROUP BY trader_id
),
series AS (
    SELECT trader_id, id, timestamp AS t, account_value AS v, total_notional AS n,
           lag(timestamp) OVER o AS prev_t, lead(timestamp) OVER o AS next_t
    FROM user_state_history
    WHERE timestamp <= {_NOW} AND account_value IS NOT NULL
    WINDOW o AS (PARTITION BY trader_id ORDER BY timestamp, id)
),
flagged AS (
    SELECT trader_id, id, t, v, n,
           {_FLAGS}
    FROM series
),
walked AS (
    SELECT *,
           {_PEAKS}
    FROM flagged
    WINDOW o AS (PARTITION BY trader_id ORDER BY t, id ROWS UNBOUNDED PRECEDING)
),
series_stats AS (
    SELECT trader_id,
           {_SERIES_STATS}
    FROM walked
    GROUP BY trader_id
)
INSERT INTO leaderboard_metrics AS m (trader_id, "window", {", ".join(METRIC_COLUMNS)})
SELECT tr.id, x."window", {", ".join(f"x.{column}" for column in _PER_WINDOW_COLUMNS)},
       greatest(0, floor(extract(epoch FROM {_NOW} - tr.first_seen_at) / 86400)),
       coalesce(x.trade_count, 0) < %(min_trades)s,
       {METRICS_VERSION},
       {_NOW}
FROM traders tr
LEFT JOIN volume v ON v.trader_id = tr.id
LEFT JOIN trade_stats ts ON ts.trader_id = tr.id
LEFT JOIN series_stats ss ON ss.trader_id = tr.id
CROSS JOIN LATERAL (VALUES
        {_ROWS}
) AS x ("window", {", ".join(_PER_WINDOW_COLUMNS)})
ON CONFLICT (trader_id, "window") DO UPDATE SET
    {", ".join(f"{column} = EXCLUDED.{column}" for column in METRIC_COLUMNS)}
"""
