"""The simulated market: positions change exactly by fills, flips, liquidations, determinism, skill, listings."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperfollow.sim import wire
from hyperfollow.sim.config import SimConfig
from hyperfollow.sim.market import (
    R_AFTER,
    R_AFTER_ENTRY,
    R_BEFORE,
    R_BEFORE_ENTRY,
    R_CLOSED,
    R_COIN,
    R_LIQUIDATED,
    R_PX,
    R_SEQ,
    R_TRADER,
    T_BUYER,
    T_SELLER,
    T_TID,
    Market,
)


def _market(**overrides: object) -> Market:
    return Market(SimConfig(**{"seed": 7, "traders": 300, "coins": 6, **overrides}), start_ms=1_000)  # type: ignore[arg-type]


def _replay(market: Market, fills: list[dict]) -> tuple[dict[str, tuple[Decimal, float]], float]:
    """Rebuild positions {coin: (size, entry)} and realized PnL from a user's fills (oldest first), as strings."""
    positions: dict[str, tuple[Decimal, float]] = {}
    realized = 0.0
    for fill in fills:
        coin = fill["coin"]
        size, entry = positions.get(coin, (Decimal(0), 0.0))
        assert Decimal(fill["startPosition"]) == size, "startPosition is the position before the fill"
        delta = Decimal(fill["sz"]) * (1 if fill["side"] == "B" else -1)
        px = float(fill["px"])
        new = size + delta
        lots = market.by_name[coin]
        scale = Decimal(10) ** lots.sz_decimals
        old_lots, delta_lots, new_lots = int(size * scale), int(delta * scale), int(new * scale)
        if size == 0:
            entry = px
        elif (size > 0) == (delta > 0):
            entry = (entry * old_lots + px * delta_lots) / new_lots
        elif new != 0 and (new > 0) != (size > 0):
            entry = px
        realized += float(fill["closedPnl"])
        positions[coin] = (new, entry if new != 0 else 0.0)
    return {c: v for c, v in positions.items() if v[0] != 0}, realized


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), traders=st.integers(10, 200), coins=st.integers(1, 8),
       chunks=st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_replaying_the_fills_rebuilds_every_position_and_realized_pnl(seed: int, traders: int, coins: int,
                                                                       chunks: list[int]) -> None:
    market = Market(SimConfig(seed=seed, traders=traders, coins=coins, max_fills_per_order=4), start_ms=0)
    for i, count in enumerate(chunks):
        market.generate(count, 1_000 + i)
    for trader in market.traders:
        fills = list(reversed(wire.user_fills(market, trader, limit=10**9)))
        positions, realized = _replay(market, fills)
        expected = {market.coins[ci].name: p for ci, p in trader.positions.items()}
        assert set(positions) == set(expected)
        for name, (size, entry) in positions.items():
            coin = market.by_name[name]
            assert size == Decimal(wire.fmt_sz(coin, expected[name].lots))
            assert entry == pytest.approx(expected[name].entry, rel=1e-9)
        assert realized == pytest.approx(trader.realized, abs=1e-4 * max(1, len(fills)))


def test_truth_chains_per_trader_and_coin_and_matches_the_tape() -> None:
    market = _market()
    trades = market.generate(3000, 5_000)
    last: dict[tuple[int, int], tuple[int, float]] = {}
    for record in market.truth:
        key = (record[R_TRADER], record[R_COIN])
        assert last.get(key, (0, 0.0)) == (record[R_BEFORE], record[R_BEFORE_ENTRY])
        last[key] = (record[R_AFTER], record[R_AFTER_ENTRY])
    for (trader, coin), (lots, entry) in last.items():
        pos = market.traders[trader].positions.get(coin)
        assert (pos.lots, pos.entry) == (lots, entry) if pos else lots == 0
    # two records (taker and maker) per trade on the tape, and both users of every trade changed position
    assert len(market.truth) == 2 * len(trades)
    for trade, (a, b) in zip(trades, zip(market.truth[::2], market.truth[1::2], strict=True), strict=True):
        assert {a[R_TRADER], b[R_TRADER]} == {trade[T_BUYER], trade[T_SELLER]}
        assert a[R_PX] == b[R_PX]


def test_determinism_by_seed_whatever_the_batching() -> None:
    one, two, other = _market(), _market(), _market(seed=8)
    a = one.generate(2000, 1)
    b: list[tuple] = []
    while len(b) < len(a):
        b += two.generate(97, 2)
    strip = [t[:4] + t[5:] for t in a]      # everything but the wall-clock time
    assert strip == [t[:4] + t[5:] for t in b[:len(a)]]
    assert strip != [t[:4] + t[5:] for t in other.generate(2000, 1)][:len(strip)]
    assert [t.address for t in one.traders] == [t.address for t in two.traders]


def test_flip_resets_entry_and_books_pnl_on_the_closed_part() -> None:
    market = _market(traders=200)
    market.generate(20_000, 1)
    flips = [r for r in market.truth if r[R_BEFORE] and r[R_AFTER] and (r[R_BEFORE] > 0) != (r[R_AFTER] > 0)]
    assert flips, "a market this long has flips"
    for record in flips[:200]:
        coin = market.coins[record[R_COIN]]
        assert record[R_AFTER_ENTRY] == record[R_PX]
        sign = 1 if record[R_BEFORE] > 0 else -1
        expected = (record[R_PX] - record[R_BEFORE_ENTRY]) * abs(record[R_BEFORE]) * coin.lot * sign
        assert record[R_CLOSED] == pytest.approx(expected)
    reductions = [r for r in market.truth if r[R_AFTER] and (r[R_BEFORE] > 0) == (r[R_AFTER] > 0)
                  and abs(r[R_AFTER]) < abs(r[R_BEFORE])]
    assert reductions and all(r[R_AFTER_ENTRY] == r[R_BEFORE_ENTRY] for r in reductions)


def test_crossing_the_liquidation_price_closes_the_position_against_the_backstop() -> None:
    market = _market(traders=200)
    market.generate(2000, 1)
    trader, coin_index, pos = next((t, ci, p) for t in market.traders[:-1] for ci, p in t.positions.items()
                                   if not t.is_maker and p.lots > 0)
    coin = market.coins[coin_index]
    lots = pos.lots
    coin.mark = coin.round_px(pos.liq_px * 0.999)
    out: list[tuple] = []
    market._liquidate_crossed(coin, 99_000, out)
    assert coin_index not in trader.positions
    liquidated = [r for r in market.truth if r[R_LIQUIDATED] and r[R_TRADER] == trader.index]
    assert liquidated and liquidated[-1][R_BEFORE] == lots and liquidated[-1][R_AFTER] == 0
    trade = next(t for t in out if market.traders[t[T_SELLER]] is trader)
    assert market.traders[trade[T_BUYER]] is market.liquidator
    fill = wire.user_fills(market, trader, limit=1)[0]
    assert fill["liquidation"] == {"liquidatedUser": trader.address, "markPx": wire.fmt_px(coin, coin.mark),
                                   "method": "market"}
    assert fill["dir"].startswith("Liquidated ") and fill["dir"].endswith(" Long")
    assert float(fill["closedPnl"]) < 0
    backstop_fill = next(f for f in wire.user_fills(market, market.liquidator) if f["tid"] == trade[T_TID])
    assert backstop_fill["liquidation"]["liquidatedUser"] == trader.address
    assert backstop_fill["side"] == "B" and backstop_fill["crossed"] is False
    assert wire.truth_record(market, liquidated[-1])["change"] == "position_liquidated"


def test_setting_a_mark_liquidates_exactly_the_positions_it_crosses() -> None:
    market = _market(traders=200)
    market.generate(2000, 1)
    coin = market.coins[0]
    longs = sorted((p.liq_px, t.index) for t in market.traders[:-1] for ci, p in t.positions.items()
                   if ci == coin.index and p.lots > 0)
    (first_px, first), (second_px, second) = longs[-1], longs[-2]
    assert first_px > second_px
    before = len(market.truth)
    assert market.set_mark(coin.name, coin.mark, 5_000) == []  # not crossing anything: nothing happens
    out = market.set_mark(coin.name, (first_px + second_px) / 2, 5_000)
    assert coin.mark == coin.round_px((first_px + second_px) / 2)
    assert len(out) == 1 and market.traders[out[0][T_SELLER]].index == first
    assert market.traders[out[0][T_BUYER]] is market.liquidator
    records = market.truth[before:]
    assert [(r[R_TRADER], r[R_LIQUIDATED], r[R_AFTER]) for r in records] == \
        [(first, True, 0), (market.liquidator.index, False, records[1][R_AFTER])]
    assert coin.index not in market.traders[first].positions and coin.index in market.traders[second].positions
    with pytest.raises(KeyError):
        market.set_mark("NOPE", 1.0, 5_000)
    with pytest.raises(ValueError):
        market.set_mark(coin.name, 0.0, 5_000)


def test_liquidations_happen_on_their_own_but_rarely() -> None:
    market = _market(traders=1000, coins=4)
    market.generate(60_000, 1)
    assert 0 < market.liquidations < 0.05 * market.trades_made


def test_skill_spreads_win_rates_and_activity_is_zipf_like() -> None:
    market = _market(traders=400, coins=4)
    market.generate(60_000, 1)
    wins: Counter[int] = Counter()
    closes: Counter[int] = Counter()
    for record in market.truth:
        if record[R_CLOSED]:
            closes[record[R_TRADER]] += 1
            wins[record[R_TRADER]] += record[R_CLOSED] > 0
    rates = {t: wins[t] / closes[t] for t in closes if closes[t] >= 15 and not market.traders[t].is_maker}
    assert len(rates) > 50
    assert 0.2 < statistics.mean(rates.values()) < 0.8
    assert statistics.pstdev(rates.values()) > 0.05
    skilled = [r for t, r in rates.items() if market.traders[t].skill > 0.45]
    unskilled = [r for t, r in rates.items() if market.traders[t].skill < 0.15]
    assert statistics.mean(skilled) > statistics.mean(unskilled)
    per_trader = Counter(r[R_TRADER] for r in market.truth if not market.traders[r[R_TRADER]].is_maker)
    counts = sorted(per_trader.values(), reverse=True)
    assert counts[0] > 10 * statistics.median(counts)


def test_listing_and_delisting_change_what_trades() -> None:
    market = _market(coins=3)
    market.delist_coin("BTC")
    new = market.list_coin("NEWCOIN")
    trades = market.generate(3000, 1)
    traded = {market.coins[t[0]].name for t in trades}
    assert "BTC" not in traded and "NEWCOIN" in traded
    assert new.name == "NEWCOIN" and market.list_coin("BTC").listed
    with pytest.raises(KeyError):
        market.delist_coin("NOPE")


def test_positions_stay_consistent_with_account_values() -> None:
    market = _market()
    market.generate(5000, 1)
    by_trader: defaultdict[int, float] = defaultdict(float)
    for record in market.truth:
        by_trader[record[R_TRADER]] += record[R_CLOSED]
    for trader in market.traders:
        assert trader.realized == pytest.approx(by_trader[trader.index], abs=1e-6)
        assert market.account_value(trader) == pytest.approx(trader.equity() + market.unrealized(trader))


def test_truth_memory_is_bounded_and_seqs_continue() -> None:
    market = _market(truth_limit=1000)
    market.generate(3000, 1)
    assert len(market.truth) == 900 and market.truth_base > 0
    assert [r[R_SEQ] for r in market.truth] == list(range(market.truth_base, market.truth_seq))
    assert market.truth_since(market.truth_seq - 3) == market.truth[-2:]
    assert market.truth_since(-1) == market.truth
