"""The simulator's JSON has the exchange's shapes (docs: the research notes on the Hyperliquid API)."""

from __future__ import annotations

import re

import orjson
import pytest

from hyperfollow.core.addresses import ADDRESS_PATTERN
from hyperfollow.sim import wire
from hyperfollow.sim.chaos import Chaos
from hyperfollow.sim.config import MALFORMED_KINDS, SimConfig
from hyperfollow.sim.market import R_CROSSED, R_TID, Coin, Market
from hyperfollow.sim.ratelimit import SlidingWindowLimiter

NUMBER = re.compile(r"^-?\d+\.\d+$")
HASH = re.compile(r"^0x[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def market() -> Market:
    m = Market(SimConfig(seed=3, traders=200, coins=5), start_ms=1_000)
    for i in range(10):
        m.generate(300, 1_000 + 20_000 * i)
    return m


@pytest.mark.parametrize(("value", "decimals", "text"), [
    (97013.0, 1, "97013.0"), (0.30618, 6, "0.30618"), (-17.1154621, 6, "-17.115462"), (0.0, 6, "0.0"),
    (-0.0000001, 6, "0.0"), (3.0, 0, "3.0"), (2.5, 4, "2.5")])
def test_numbers_are_strings_in_the_exchange_style(value: float, decimals: int, text: str) -> None:
    assert wire.fmt_num(value, decimals) == text


def test_sizes_are_exact_from_lots() -> None:
    btc, doge = Coin(0, "BTC", 97000.0, 5, 40), Coin(1, "DOGE", 0.3, 0, 10)
    assert [wire.fmt_sz(btc, n) for n in (30618, -150000, 1, 0)] == ["0.30618", "-1.5", "0.00001", "0.0"]
    assert [wire.fmt_sz(doge, n) for n in (43848, -7, 0)] == ["43848.0", "-7.0", "0.0"]
    assert wire.fmt_px(btc, 97013.0) == "97013.0"


def test_trades_message_shape_and_taker_side(market: Market) -> None:
    trades = market.generate(50, 500_000)
    records = {r[R_TID]: r for r in market.truth[-2 * len(trades):] if r[R_CROSSED]}
    message = orjson.loads(wire.trades_message(market, trades))
    assert message["channel"] == "trades" and len(message["data"]) == len(trades)
    for item, trade in zip(message["data"], trades, strict=True):
        assert item["tid"] == trade[6] and item["coin"] == market.coins[trade[0]].name
        assert list(item) == ["coin", "side", "px", "sz", "time", "hash", "tid", "users"]
        assert item["side"] in ("A", "B") and NUMBER.match(item["px"]) and NUMBER.match(item["sz"])
        assert isinstance(item["time"], int) and isinstance(item["tid"], int) and item["tid"] < 2**50
        assert HASH.match(item["hash"])
        buyer, seller = item["users"]
        assert ADDRESS_PATTERN.match(buyer) and ADDRESS_PATTERN.match(seller) and buyer != seller
        taker = market.traders[records[item["tid"]][2]].address   # the crossed (taker) fill of this trade
        assert taker == (buyer if item["side"] == "B" else seller)


def test_clearinghouse_state_is_consistent(market: Market) -> None:
    mids = wire.all_mids(market)
    trader = next(t for t in market.traders if len(t.positions) >= 2 and not t.is_maker)
    state = wire.clearinghouse_state(market, trader, 123)
    assert set(state) >= {"assetPositions", "marginSummary", "crossMarginSummary", "crossMaintenanceMarginUsed",
                          "withdrawable", "time"}
    assert state["time"] == 123
    total = 0.0
    for item in state["assetPositions"]:
        assert item["type"] == "oneWay"
        p = item["position"]
        for key in ("szi", "entryPx", "positionValue", "unrealizedPnl", "returnOnEquity", "marginUsed"):
            assert NUMBER.match(p[key]), key
        szi, entry, mark = float(p["szi"]), float(p["entryPx"]), float(mids[p["coin"]])
        assert float(p["positionValue"]) == pytest.approx(abs(szi) * mark, rel=1e-6)
        assert float(p["unrealizedPnl"]) == pytest.approx(szi * (mark - entry), rel=1e-4, abs=1e-3)
        assert p["leverage"]["type"] in ("cross", "isolated") and p["leverage"]["value"] >= 1
        liq = float(p["liquidationPx"])
        assert (liq < mark) if szi > 0 else (liq > mark)
        assert set(p["cumFunding"]) == {"allTime", "sinceOpen", "sinceChange"}
        total += float(p["positionValue"])
    summary = state["marginSummary"]
    assert float(summary["totalNtlPos"]) == pytest.approx(total, rel=1e-6)
    assert float(summary["accountValue"]) == pytest.approx(market.account_value(trader), rel=1e-9)
    assert summary == state["crossMarginSummary"]


def test_unknown_user_gets_an_empty_account_and_no_fills(market: Market) -> None:
    state = wire.clearinghouse_state(market, None, 5)
    assert state["assetPositions"] == [] and state["marginSummary"]["accountValue"] == "0.0"
    assert wire.user_fills(market, None) == [] and wire.user_fills_by_time(market, None, 0, None) == []


def test_user_fills_shape_and_order(market: Market) -> None:
    trader = max(market.traders[:-1], key=lambda t: len(t.fills))
    fills = wire.user_fills(market, trader)
    assert len(fills) == min(2000, len(trader.fills))
    keys = ["coin", "px", "sz", "side", "time", "startPosition", "dir", "closedPnl", "hash", "oid", "crossed", "fee",
            "tid", "feeToken"]
    dirs = {"Open Long", "Open Short", "Close Long", "Close Short", "Long > Short", "Short > Long",
            "Liquidated Cross Long", "Liquidated Cross Short", "Liquidated Isolated Long", "Liquidated Isolated Short"}
    for fill in fills:
        assert [k for k in fill if k != "liquidation"] == keys
        assert fill["dir"] in dirs and fill["feeToken"] == "USDC" and isinstance(fill["crossed"], bool)
        assert NUMBER.match(fill["closedPnl"]) and NUMBER.match(fill["fee"])
    times = [f["time"] for f in fills]
    assert times == sorted(times, reverse=True)
    by_time = wire.user_fills_by_time(market, trader, times[len(times) // 2], None)
    assert [f["time"] for f in by_time] == sorted(f["time"] for f in by_time)
    assert all(f["time"] >= times[len(times) // 2] for f in by_time)
    assert len(wire.user_fills_by_time(market, trader, 0, None, limit=7)) == 7


def test_portfolio_meta_and_mids(market: Market) -> None:
    trader = market.traders[0]
    history = wire.portfolio(market, trader, 9_999_999)
    assert [w[0] for w in history] == ["day", "week", "month", "allTime", "perpDay", "perpWeek", "perpMonth",
                                       "perpAllTime"]
    all_time = dict(history)["allTime"]
    assert all_time["accountValueHistory"][0][1] == wire.fmt_num(trader.initial, 6)
    assert all_time["accountValueHistory"][-1] == [9_999_999, wire.fmt_num(market.account_value(trader), 6)]
    assert all_time["pnlHistory"][0][1] == "0.0" and NUMBER.match(all_time["vlm"])
    market.delist_coin("ETH")
    meta = wire.meta(market)
    by_name = {c["name"]: c for c in meta["universe"]}
    assert by_name["ETH"]["isDelisted"] is True and "isDelisted" not in by_name["BTC"]
    assert by_name["BTC"]["szDecimals"] == 5 and by_name["BTC"]["maxLeverage"] == 40
    assert "ETH" not in wire.all_mids(market) and NUMBER.match(wire.all_mids(market)["BTC"])
    market.list_coin("ETH")


def test_truth_record_format(market: Market) -> None:
    record = wire.truth_record(market, market.truth[0])
    assert list(record) == ["seq", "trader", "coin", "time", "tid", "hash", "px", "before", "after", "liquidated",
                            "change"]
    assert record["before"] == {"szi": "0.0", "entryPx": None} and record["change"] == "position_opened"
    assert wire.change_kind(5, -3, False) == "position_flipped"
    assert wire.change_kind(5, 3, False) == "position_decreased"
    assert wire.change_kind(-5, -8, False) == "position_increased"
    assert wire.change_kind(5, 0, False) == "position_closed"
    assert wire.change_kind(5, 0, True) == "position_liquidated"


def test_ws_control_messages() -> None:
    assert wire.GREETING == "Websocket connection established."
    assert orjson.loads(wire.PONG) == {"channel": "pong"}
    sub = {"type": "trades", "coin": "BTC"}
    assert orjson.loads(wire.subscription_response(sub)) == {
        "channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": sub}}


def test_sliding_window_limiter_never_lets_a_window_exceed_the_limit() -> None:
    limiter = SlidingWindowLimiter(limit=100, window=60.0)
    accepted: list[tuple[float, int]] = []
    t = 0.0
    for i in range(2000):
        t += 0.37
        weight = 20 if i % 3 == 0 else 2
        if limiter.try_take("ip", weight, t):
            accepted.append((t, weight))
    for start, _ in accepted:
        assert sum(w for s, w in accepted if start <= s < start + 60.0) <= 100
    assert limiter.refused > 0 and limiter.usage(t)["ip"]["refused"] == limiter.refused
    assert limiter.try_take("other", 100, t) and not limiter.try_take("other", 2, t)
    assert 0 < limiter.retry_after("other", 2, t) <= 60
    assert limiter.used("other", t + 61) == 0
    assert SlidingWindowLimiter(limit=0).try_take("x", 10**9, 0.0)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_frame_kind_is_not_a_valid_trades_message(kind: str) -> None:
    chaos = Chaos(SimConfig(malformed_probability=1.0, malformed_kinds=(kind,)))
    for _ in range(10):
        frame = chaos.malformed_frame("BTC")
        assert frame is not None
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            continue
        data = message.get("data") if isinstance(message, dict) else None
        valid = isinstance(data, list) and all(
            isinstance(t, dict) and isinstance(t.get("users"), list)
            and all(isinstance(u, str) and ADDRESS_PATTERN.match(u) for u in t["users"])
            and isinstance(t.get("px"), str) for t in data)
        assert not valid, frame
    assert Chaos(SimConfig()).malformed_frame("BTC") is None
