"""The position diff: events are a complete and minimal account of what changed between two observations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperfollow.core.events import EventDetails, EventType
from hyperfollow.workers.diff import (
    Position,
    apply_changes,
    diff_positions,
    event_details,
    idempotency_key,
    positions_from_state,
)

COINS = ["BTC", "ETH", "SOL", "kPEPE"]
sizes = st.decimals(min_value=-5, max_value=5, places=2, allow_nan=False, allow_infinity=False)
prices = st.decimals(min_value=1, max_value=100, places=1, allow_nan=False, allow_infinity=False)


@st.composite
def observations(draw: st.DrawFn) -> dict[str, Position]:
    positions = {}
    for coin in COINS:
        size = draw(sizes)
        if size != 0:
            positions[coin] = Position(coin, size, draw(st.sampled_from([Decimal(10), Decimal(20)]) | prices))
    return positions


def _view(positions: dict[str, Position]) -> dict[str, tuple[Decimal, Decimal | None]]:
    return {coin: (p.size, p.entry_price) for coin, p in positions.items()}


@given(observations(), observations(), st.sets(st.sampled_from(COINS)))
def test_replaying_events_rebuilds_the_current_positions(previous: dict[str, Position], current: dict[str, Position],
                                                         liquidated: set[str]) -> None:
    changes = diff_positions(previous, current, liquidated)
    assert _view(apply_changes(previous, changes)) == _view(current)


@given(observations(), observations())
def test_events_are_minimal_and_typed_consistently(previous: dict[str, Position], current: dict[str, Position]) -> None:
    changes = diff_positions(previous, current)
    unchanged = {c for c in COINS if _view(previous).get(c) == _view(current).get(c)}
    assert not {c.coin for c in changes} & unchanged
    for change in changes:
        before, after = change.previous_size, change.current_size
        if change.event_type is EventType.OPENED:
            assert before == 0 and after != 0
        elif change.event_type is EventType.CLOSED:
            assert before != 0 and after == 0
        elif change.event_type is EventType.FLIPPED:
            assert before * after < 0
        elif change.event_type is EventType.INCREASED:
            assert before * after > 0 and abs(after) > abs(before)
        elif change.event_type is EventType.DECREASED:
            assert before * after > 0 and abs(after) < abs(before)
        assert change.size_change == after - before


def p(coin: str, size: str, entry: str = "100") -> Position:
    return Position(coin, Decimal(size), Decimal(entry), {"coin": coin, "szi": size, "entryPx": entry,
                                                           "positionValue": str(abs(Decimal(size)) * 110)})


@pytest.mark.parametrize(("before", "after", "liquidated", "expected"), [
    ({}, {"BTC": p("BTC", "1.5")}, (), [EventType.OPENED]),
    ({"BTC": p("BTC", "1.5")}, {}, (), [EventType.CLOSED]),
    ({"BTC": p("BTC", "1.5")}, {}, ("BTC",), [EventType.LIQUIDATED]),
    ({"BTC": p("BTC", "1.5")}, {"BTC": p("BTC", "-2")}, (), [EventType.FLIPPED]),
    ({"BTC": p("BTC", "-1")}, {"BTC": p("BTC", "-3")}, (), [EventType.INCREASED]),
    ({"BTC": p("BTC", "-3")}, {"BTC": p("BTC", "-1")}, (), [EventType.DECREASED]),
    ({"BTC": p("BTC", "-3")}, {"BTC": p("BTC", "-1")}, ("BTC",), [EventType.LIQUIDATED]),
    ({"BTC": p("BTC", "2", "100")}, {"BTC": p("BTC", "2", "105")}, (), [EventType.CLOSED, EventType.OPENED]),
    ({"BTC": p("BTC", "2")}, {"BTC": p("BTC", "2")}, (), []),
])
def test_event_types(before: dict, after: dict, liquidated: tuple, expected: list[EventType]) -> None:
    assert [c.event_type for c in diff_positions(before, after, liquidated)] == expected


STATE = {
    "assetPositions": [
        {"type": "oneWay", "position": {"coin": "ETH", "szi": "-1.5", "entryPx": "2986.3", "positionValue": "4500.0",
                                        "unrealizedPnl": "-20.55", "leverage": {"type": "cross", "value": 20},
                                        "liquidationPx": None, "newFieldFromTheFuture": {"x": 1}}},
        {"type": "oneWay", "position": {"coin": "BTC", "szi": "0.0", "entryPx": None, "positionValue": "0.0"}},
    ],
    "marginSummary": {"accountValue": "10000.0", "totalNtlPos": "4500.0"},
    "time": 1708622398623,
}


def test_positions_from_a_realistic_state() -> None:
    positions = positions_from_state(STATE)
    assert list(positions) == ["ETH"]  # a zero size is flat
    eth = positions["ETH"]
    assert eth.size == Decimal("-1.5") and eth.entry_price == Decimal("2986.3")
    assert eth.mark_price == Decimal("3000")
    assert positions_from_state({"assetPositions": []}) == {}
    assert positions_from_state({}) == {}


@pytest.mark.parametrize("bad", [
    {"assetPositions": [{"type": "oneWay"}]},
    {"assetPositions": [{"position": {"coin": "BTC", "szi": "abc"}}]},
    {"assetPositions": [{"position": {"szi": "1"}}]},
    {"assetPositions": ["nonsense"]},
])
def test_malformed_positions_raise_instead_of_reading_as_flat(bad: dict) -> None:
    with pytest.raises(ValueError, match="position"):
        positions_from_state(bad)


def test_details_follow_the_seed_shape() -> None:
    observed = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    [change] = diff_positions({}, positions_from_state(STATE))
    details = event_details(change, observed)
    parsed = EventDetails.model_validate(details)
    assert parsed.coin == "ETH" and parsed.previous_size == 0 and parsed.current_size == -1.5
    assert parsed.size_change == -1.5 and parsed.side == "SHORT" and parsed.entry_price == 2986.3
    assert parsed.previous_position == {} and parsed.current_position["szi"] == "-1.5"
    assert parsed.notional == pytest.approx(4500.0) and details["change_notional"] == pytest.approx(4500.0)
    assert parsed.observed_at == observed


def test_idempotency_key_is_stable_per_baseline() -> None:
    [change] = diff_positions({}, {"BTC": p("BTC", "1")})
    address = "0x" + "1" * 40
    assert idempotency_key(address, "snap-7", change) == idempotency_key(address, "snap-7", change)
    assert idempotency_key(address, "snap-7", change) != idempotency_key(address, "snap-8", change)
    assert idempotency_key(address, "snap-7", change) != idempotency_key("0x" + "2" * 40, "snap-7", change)
    assert len(idempotency_key(address, "snap-7", change)) <= 128
