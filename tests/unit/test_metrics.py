"""The leaderboard metric definitions (the Python reference) against the golden vectors, and their rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from metrics_vectors import FIELDS, VECTORS_FILE, load_vectors

from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import ConfigError, load_settings
from hyperfollow.workers.leaderboard import LeaderboardSettings, compute
from hyperfollow.workers.leaderboard_reference import (
    WINDOW_SPANS,
    Fill,
    Snapshot,
    anchor_times,
    compute_trader_metrics,
    held_coins,
    round_trips,
)

NOW, MIN_TRADES, VECTORS = load_vectors()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _fill(side: str, px: str, sz: str, minute: int, tid: int | None = None, crossed: bool = True) -> Fill:
    return Fill("BTC", side, Decimal(px), Decimal(sz), T0 + timedelta(minutes=minute),
                minute if tid is None else tid, crossed)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.name for v in VECTORS])
def test_reference_gives_the_golden_metrics(vector) -> None:  # type: ignore[no-untyped-def]
    got = compute_trader_metrics(vector.first_seen_at, vector.fills, [s.as_reference() for s in vector.snapshots],
                                 NOW, MIN_TRADES)
    for window, expected in vector.expected.items():
        assert {field: getattr(got[window], field) for field in FIELDS} == expected, window


def test_every_vector_states_every_metric_for_every_window_with_its_arithmetic() -> None:
    raw = json.loads(VECTORS_FILE.read_text())
    assert raw["metrics_version"] == 1
    for vector in raw["vectors"]:
        assert set(vector["expected"]) == set(WINDOW_SPANS), vector["name"]
        for values in vector["expected"].values():
            assert set(values) == set(FIELDS), vector["name"]
        assert vector["notes"] and vector["description"]
    # between them the vectors exercise both sides of every flag and a nonzero value of every metric
    rows = [row for v in VECTORS for row in v.expected.values()]
    assert {row["low_sample"] for row in rows} == {True, False}
    for field in FIELDS:
        if field not in ("low_sample", "last_trade_at"):
            assert any(row[field] for row in rows), field
    assert any(row["roi"] < 0 for row in rows) and any(row["max_drawdown"] == 1 for row in rows)


def test_a_flip_closes_one_trade_and_opens_the_next_at_the_same_price() -> None:
    trades = round_trips([_fill("B", "10", "2", 0), _fill("A", "12", "5", 1), _fill("B", "11", "3", 2)])
    assert [(t.gross_pnl_usd, t.closed_at is not None) for t in trades] == [(Decimal(4), True), (Decimal(3), True)]
    # fees split by size: 2 of the 5 at 12 belong to the first trade
    assert trades[0].fees_usd == (Decimal(20) + Decimal(24)) * Decimal("0.00045")
    assert trades[1].fees_usd == (Decimal(36) + Decimal(33)) * Decimal("0.00045")
    assert trades[1].opened_at == T0 + timedelta(minutes=1)


def test_an_open_position_is_a_trade_without_a_close() -> None:
    trades = round_trips([_fill("A", "10", "1", 0), _fill("B", "9", "0.5", 1)])
    assert len(trades) == 1 and trades[0].closed_at is None


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("BA"), st.integers(1, 4), st.integers(1, 50)), min_size=1, max_size=30))
def test_round_trips_conserve_cash_and_close_exactly_when_flat(steps: list[tuple[str, int, int]]) -> None:
    fills = [_fill(side, str(px), str(sz), i) for i, (side, sz, px) in enumerate(steps)]
    trades = round_trips(fills)
    cash = sum((f.px * f.sz * (1 if f.side == "A" else -1) for f in fills), Decimal(0))
    assert sum((t.gross_pnl_usd for t in trades), Decimal(0)) == cash
    fees = sum((f.px * f.sz * f.fee_rate for f in fills), Decimal(0))
    assert sum((t.fees_usd for t in trades), Decimal(0)) == fees
    position, flat_or_crossed = Decimal(0), 0
    for fill in fills:
        after = position + fill.signed_size
        flat_or_crossed += after == 0 or position * after < 0
        position = after
    assert sum(t.closed_at is not None for t in trades) == flat_or_crossed
    assert (trades[-1].closed_at is None) == (position != 0)


def test_anchors_are_observed_flat_moments_and_unusable_states_are_none() -> None:
    assert held_coins({"assetPositions": [{"position": {"coin": "ETH", "szi": "-1"}}, {"junk": 1}, 3]}) == {"ETH"}
    # a zero size is no position (as the tracker reads it); an unreadable size still counts as held
    sizes = {"A": "0", "B": "-0.0", "C": 0, "D": "0e3", "E": "1e-9", "F": "n/a", "G": None, "H": "+2"}
    state = {"assetPositions": [{"position": {"coin": coin, "szi": szi}} for coin, szi in sizes.items()]}
    assert held_coins(state) == {"E", "F", "G", "H"}
    for state in ({}, {"assetPositions": None}, {"assetPositions": {"coin": "ETH"}}, [], "x", None):
        assert held_coins(state) is None
    held = [None, {"BTC"}, set(), None, set(), {"BTC"}, set()]  # None: an unusable state, skipped
    snapshots = [Snapshot(T0 + timedelta(day), None, None, None if coins is None else frozenset(coins))
                 for day, coins in enumerate(held)]
    # first usable snapshot (day 1) for the coins it does not hold, then every observed close (days 2 and 6);
    # day 4 (flat after flat) adds nothing
    assert anchor_times(["BTC", "ETH"], snapshots, NOW) == {"BTC": [T0 + timedelta(2), T0 + timedelta(6)],
                                                            "ETH": [T0 + timedelta(1)]}
    assert anchor_times(["BTC"], snapshots, T0 + timedelta(1)) == {"BTC": []}  # later snapshots do not count


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERFOLLOW_LEADERBOARD_MIN_TRADES", "0")
    with pytest.raises(ConfigError, match="HYPERFOLLOW_LEADERBOARD_MIN_TRADES"):
        load_settings(LeaderboardSettings)
    monkeypatch.setenv("HYPERFOLLOW_LEADERBOARD_MIN_TRADES", "7")
    monkeypatch.setenv("HYPERFOLLOW_LEADERBOARD_WORK_MEM", "64MB'; DROP TABLE traders; --")
    with pytest.raises(ConfigError, match="HYPERFOLLOW_LEADERBOARD_WORK_MEM"):
        load_settings(LeaderboardSettings)
    monkeypatch.setenv("HYPERFOLLOW_LEADERBOARD_WORK_MEM", "256MB")
    loaded = load_settings(LeaderboardSettings)
    assert (loaded.leaderboard_min_trades, loaded.leaderboard_work_mem) == (7, "256MB")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"now": datetime(2026, 3, 1)}, "timezone-aware"),
    ({"min_trades": 0}, "min_trades"),
    ({"work_mem": "1GB; RESET ALL"}, "work_mem"),
])
def test_compute_rejects_bad_arguments_before_touching_the_database(kwargs: dict, message: str) -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/none"  # never connected: the arguments fail first
    with pytest.raises(ValueError, match=message):
        compute(unreachable, None, RedisKeys(), **kwargs)
