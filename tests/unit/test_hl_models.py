"""Parsing the exchange's /info answers: realistic bodies, odd ones, and bodies that must be refused."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hyperfollow.core.errors_exchange import MalformedResponse
from hyperfollow.core.hl_models import (
    parse_all_mids,
    parse_clearinghouse_state,
    parse_fills,
    parse_meta,
    parse_portfolio,
)

TRADER = "0x5e9ee1089755c3435139848e47e6635505d5a13a"
LIQUIDATOR = "0x2e3d94f0562703b25c83308a05046ddaf9a8dd14"


def _summary(value: str = "1182.312496", ntl: str = "439.320534") -> dict[str, str]:
    return {"accountValue": value, "totalNtlPos": ntl, "totalRawUsd": "86.549602", "totalMarginUsed": "21.966026"}


def state_body() -> dict[str, Any]:
    """A two-position account in the exchange's current shape, plus keys older parsers never knew."""
    return {
        "assetPositions": [
            {"type": "oneWay", "position": {
                "coin": "BTC", "szi": "-0.00785", "entryPx": "26951.0", "positionValue": "211.64542",
                "unrealizedPnl": "-0.08007", "returnOnEquity": "-0.00756643",
                "leverage": {"type": "cross", "value": 20}, "liquidationPx": "173198.69592357",
                "marginUsed": "10.582271", "maxLeverage": 50, "maxTradeSzs": ["0.76534", "0.74964"],
                "cumFunding": {"allTime": "-1.25", "sinceOpen": "0.002", "sinceChange": "0.0"}}},
            {"type": "oneWay", "position": {
                "coin": "ETH", "szi": "0.1334", "entryPx": "1705.82", "positionValue": "227.675114",
                "unrealizedPnl": "0.118726", "returnOnEquity": "0.01042942",
                "leverage": {"type": "isolated", "value": 10, "rawUsd": "-205.0"}, "liquidationPx": None,
                "marginUsed": "11.383755", "maxLeverage": 50,
                "cumFunding": {"allTime": "3.1", "sinceOpen": "0.1", "sinceChange": "0.1"}}},
        ],
        "marginSummary": _summary(),
        "crossMarginSummary": _summary(),
        "crossMaintenanceMarginUsed": "6.81",
        "withdrawable": "1010.57173",
        "time": 1708622398623,
        "someFutureField": {"nested": [1, 2]},
    }


def test_clearinghouse_state_numbers_are_exact_decimals() -> None:
    state = parse_clearinghouse_state(state_body())
    btc, eth = state.positions["BTC"], state.positions["ETH"]
    assert btc.szi == Decimal("-0.00785") and btc.side == "short" and btc.size == Decimal("0.00785")
    assert btc.entry_px == Decimal("26951.0") and btc.liquidation_px == Decimal("173198.69592357")
    assert eth.side == "long" and eth.liquidation_px is None
    assert eth.leverage is not None and eth.leverage.type == "isolated" and eth.leverage.raw_usd == Decimal("-205.0")
    assert btc.cum_funding is not None and btc.cum_funding.all_time == Decimal("-1.25")
    assert state.account_value == Decimal("1182.312496") and state.time == 1708622398623
    # summed positionValue equals totalNtlPos, exactly, because nothing went through float
    assert btc.position_value + eth.position_value == state.margin_summary.total_ntl_pos


def test_clearinghouse_state_round_trips_what_the_exchange_sent() -> None:
    body = state_body()
    wire = parse_clearinghouse_state(body).to_wire()
    assert wire == body  # unknown keys, nulls and string numbers all preserved


def test_empty_account_is_an_account_without_positions() -> None:
    state = parse_clearinghouse_state({"assetPositions": [], "marginSummary": _summary("0.0", "0.0"),
                                       "crossMarginSummary": _summary("0.0", "0.0"), "withdrawable": "0.0",
                                       "crossMaintenanceMarginUsed": "0.0", "time": 1})
    assert state.positions == {} and state.account_value == 0


def test_minimal_old_shape_is_accepted() -> None:
    """Early answers had no time, no cumFunding, no maxLeverage; numbers may even come as JSON numbers."""
    state = parse_clearinghouse_state({
        "assetPositions": [{"position": {"coin": "SOL", "szi": 7.39, "entryPx": "19.6789",
                                         "leverage": {"type": "cross", "value": 20}}}],
        "marginSummary": {"accountValue": "100"}})
    sol = state.positions["SOL"]
    assert sol.szi == Decimal("7.39") and sol.cum_funding is None and state.time is None


def test_zero_size_entry_counts_as_flat() -> None:
    body = state_body()
    body["assetPositions"][0]["position"]["szi"] = "0.0"
    assert set(parse_clearinghouse_state(body).positions) == {"ETH"}


@pytest.mark.parametrize(("mutate", "detail"), [
    (lambda b: b.pop("marginSummary"), "marginSummary"),
    (lambda b: b.pop("assetPositions"), "assetPositions"),
    (lambda b: b["assetPositions"][0]["position"].update(szi="abc"), "szi"),
    (lambda b: b["assetPositions"][0]["position"].update(szi="NaN"), "szi"),
    (lambda b: b["assetPositions"][1]["position"].update(coin="BTC"), "twice"),
    (lambda b: b["marginSummary"].update(accountValue=None), "accountValue"),
])
def test_broken_states_are_refused_not_read_as_flat(mutate: Any, detail: str) -> None:
    body = state_body()
    mutate(body)
    with pytest.raises(MalformedResponse) as caught:
        parse_clearinghouse_state(body)
    assert caught.value.request_type == "clearinghouseState"
    assert detail in str(caught.value)


@pytest.mark.parametrize("body", [None, {}, [], "error", {"error": "rate limited"}])
def test_non_account_bodies_are_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponse):
        parse_clearinghouse_state(body)


def test_error_excerpt_is_truncated() -> None:
    body = state_body()
    body["assetPositions"] *= 50
    body["marginSummary"] = "oops"
    with pytest.raises(MalformedResponse) as caught:
        parse_clearinghouse_state(body)
    assert len(caught.value.body_excerpt) < 400 and "more chars" in caught.value.body_excerpt


def fill(**changes: Any) -> dict[str, Any]:
    base = {"closedPnl": "0.0", "coin": "ETH", "crossed": True, "dir": "Open Long", "fee": "0.171",
            "feeToken": "USDC", "hash": "0x" + "ab" * 32, "oid": 189324432, "px": "1705.8", "side": "B",
            "startPosition": "0.0", "sz": "0.2", "tid": 118906512037719, "time": 1683245884863}
    base.update(changes)
    return base


def test_fills_open_close_flip_and_liquidation() -> None:
    fills = parse_fills([
        fill(),
        fill(dir="Close Long", side="A", startPosition="0.2", sz="0.2", closedPnl="12.5", crossed=False),
        fill(dir="Long > Short", side="A", startPosition="0.5", sz="1.5", closedPnl="-3.2"),
        fill(dir="Close Short", side="B", startPosition="-1.0", sz="1.0", closedPnl="-250.75",
             liquidation={"liquidatedUser": TRADER, "markPx": "1890.1", "method": "market"}),
        fill(dir="Close Long", side="A", startPosition="2", sz="2",
             liquidation={"markPx": 1500.5, "method": "backstop"}, builderFee="0.01", twapId=None),
    ])
    opened, closed, flipped, liquidated, backstop = fills
    assert opened.end_position == Decimal("0.2") and not opened.is_flip and not opened.is_liquidation
    assert closed.end_position == 0 and closed.closed_pnl == Decimal("12.5") and not closed.crossed
    assert flipped.is_flip and flipped.end_position == Decimal("-1.0")
    assert liquidated.is_liquidation and liquidated.liquidation is not None
    assert liquidated.liquidation.liquidated_user == TRADER and liquidated.liquidation.mark_px == Decimal("1890.1")
    assert backstop.liquidation is not None and backstop.liquidation.mark_px == Decimal("1500.5")
    assert backstop.builder_fee == Decimal("0.01")


def test_fills_keep_unknown_fields_and_allow_missing_optional_ones() -> None:
    raw = fill(newFlag=True)
    for optional in ("tid", "feeToken"):
        raw.pop(optional)
    (parsed,) = parse_fills([raw])
    assert parsed.tid is None and parsed.fee_token is None
    assert parsed.to_wire()["newFlag"] is True


def test_fills_spot_direction_is_kept() -> None:
    (parsed,) = parse_fills([fill(coin="@107", dir="Buy")])
    assert parsed.dir == "Buy" and not parsed.is_flip


@pytest.mark.parametrize("bad", [fill(side="X"), fill(px="12,5"), {"coin": "ETH"}, "x"])
def test_bad_fills_name_the_request_type(bad: Any) -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_fills([fill(), bad], "userFillsByTime")
    assert caught.value.request_type == "userFillsByTime"


def test_fills_body_must_be_a_list() -> None:
    with pytest.raises(MalformedResponse):
        parse_fills({"fills": []})


def test_meta_lists_tradeable_coins() -> None:
    meta = parse_meta({"universe": [
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 50},
        {"name": "ETH", "szDecimals": 4, "maxLeverage": 50, "onlyIsolated": False},
        {"name": "MATIC", "szDecimals": 1, "maxLeverage": 20, "isDelisted": True},
        {"name": "kPEPE", "szDecimals": 0, "maxLeverage": 10, "onlyIsolated": True, "marginTableId": 3},
    ], "marginTables": [[3, {"description": "", "marginTiers": []}]]})
    assert meta.coins == ["BTC", "ETH", "kPEPE"]
    assert meta.universe[3].only_isolated and meta.universe[2].is_delisted


@pytest.mark.parametrize("body", [{"universe": [{"name": "BTC"}]}, {"universe": "BTC"}, [], None])
def test_bad_meta(body: Any) -> None:
    with pytest.raises(MalformedResponse, match="meta"):
        parse_meta(body)


def test_portfolio_pairs_become_periods() -> None:
    portfolio = parse_portfolio([
        ["day", {"accountValueHistory": [[1755772320063, "160794563.92"], [1755780720022, "160690871.91"]],
                 "pnlHistory": [[1755772320063, "0.0"], [1755780720022, "-103692.009923"]], "vlm": "55823015.66"}],
        ["allTime", {"accountValueHistory": [], "pnlHistory": [], "vlm": "0.0"}],
        ["perpDay", {"accountValueHistory": [[1, "1"]], "pnlHistory": [[1, "0"]], "vlm": "1"}],
    ])
    day = portfolio["day"]
    assert day.pnl_history[1] == (1755780720022, Decimal("-103692.009923"))
    assert day.vlm == Decimal("55823015.66") and portfolio["allTime"].account_value_history == []
    assert set(portfolio.periods) == {"day", "allTime", "perpDay"}


@pytest.mark.parametrize("body", [{"day": {}}, [["day"]], [["day", {"pnlHistory": [["x", "1"]]}]]])
def test_bad_portfolio(body: Any) -> None:
    with pytest.raises(MalformedResponse, match="portfolio"):
        parse_portfolio(body)


def test_all_mids() -> None:
    mids = parse_all_mids({"BTC": "97000.5", "ETH": "3401.25", "@107": "38.1"})
    assert mids["BTC"] == Decimal("97000.5")
    with pytest.raises(MalformedResponse, match="allMids"):
        parse_all_mids({"BTC": "n/a"})
