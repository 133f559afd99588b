"""WebSocket trades and frames: the real wire shape (`users = [buyer, seller]`), bad input counted, not raised."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hyperfollow.core.errors_exchange import InvalidTrade, MalformedMessage, MalformedResponse
from hyperfollow.core.hl_models import parse_recent_trades, parse_trade, parse_trades
from hyperfollow.core.hl_ws_protocol import (
    GREETING,
    Ack,
    ChannelMessage,
    ErrorFrame,
    Greeting,
    Pong,
    RateWindow,
    Trades,
    ack_matches,
    classify_frame,
    subscription_key,
)

BUYER = "0x1A2b3C4d5E6f7A8b9C0d1E2f3A4b5C6d7E8f9A0b"
SELLER = "0x0000000000000000000000000000000000000001"


def wire_trade(**changes: Any) -> dict[str, Any]:
    trade = {"coin": "BTC", "side": "A", "px": "97000.5", "sz": "0.015", "time": 1735689600123,
             "hash": "0x" + "cd" * 32, "tid": 1013187240284071, "users": [BUYER, SELLER]}
    trade.update(changes)
    return trade


def test_trade_takes_buyer_and_seller_from_users() -> None:
    trade = parse_trade(wire_trade())
    assert trade.buyer == BUYER.lower() and trade.seller == SELLER
    assert trade.px == Decimal("97000.5") and trade.sz == Decimal("0.015") and trade.notional == Decimal("1455.0075")
    # side "A": the taker sold, so the taker is the seller and the buyer was the resting maker
    assert trade.taker == SELLER and trade.maker == BUYER.lower()
    assert parse_trade(wire_trade(side="B")).taker == BUYER.lower()


def test_twap_slice_hash_and_numbers_as_json_numbers_are_fine() -> None:
    trade = parse_trade(wire_trade(hash="0x" + "0" * 64, px=97000.5, sz=1))
    assert trade.px == Decimal("97000.5") and trade.sz == Decimal(1)


@pytest.mark.parametrize(("changes", "detail"), [
    ({"users": None}, "users"),
    ({"users": [BUYER]}, "users"),
    ({"users": [BUYER, "0x123"]}, "address"),
    ({"side": "S"}, "side"),
    ({"px": "-1"}, "px"),
    ({"px": "NaN"}, "px"),
    ({"sz": "0"}, "sz"),
    ({"sz": True}, "sz"),
    ({"time": "1735689600123"}, "time"),
    ({"tid": -5}, "tid"),
    ({"coin": ""}, "coin"),
])
def test_bad_trades_are_typed_errors(changes: dict[str, Any], detail: str) -> None:
    with pytest.raises(InvalidTrade) as caught:
        parse_trade(wire_trade(**changes))
    assert detail in str(caught.value) and caught.value.request_type == "trades"


def test_the_seeds_user_field_is_not_the_wire_shape() -> None:
    seed_shaped = wire_trade()
    del seed_shaped["users"]
    seed_shaped["user"] = BUYER
    with pytest.raises(InvalidTrade, match="missing field 'users'"):
        parse_trade(seed_shaped)


def test_parse_trades_keeps_the_good_ones() -> None:
    trades, errors = parse_trades([wire_trade(), wire_trade(users=["bad", SELLER]), "junk", wire_trade(tid=7)])
    assert [t.tid for t in trades] == [1013187240284071, 7] and len(errors) == 2


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=6), max_leaves=20)


@given(st.fixed_dictionaries({}, optional={k: json_values for k in wire_trade()}) | json_values)
def test_any_json_is_a_trade_or_an_invalid_trade(value: Any) -> None:
    with contextlib.suppress(InvalidTrade):
        parse_trade(value)


def test_classify_frames() -> None:
    assert isinstance(classify_frame(GREETING), Greeting)
    assert isinstance(classify_frame(b'{"channel":"pong"}'), Pong)
    ack = classify_frame(orjson.dumps({"channel": "subscriptionResponse", "data": {
        "method": "subscribe", "subscription": {"type": "trades", "coin": "ETH"}}}))
    assert ack == Ack("subscribe", {"type": "trades", "coin": "ETH"})
    assert classify_frame('{"channel":"error","data":"Invalid subscription"}') == ErrorFrame("Invalid subscription")
    other = classify_frame('{"channel":"l2Book","data":{"coin":"BTC"}}')
    assert other == ChannelMessage("l2Book", {"coin": "BTC"})


def test_trades_frame_counts_bad_items() -> None:
    frame = orjson.dumps({"channel": "trades", "data": [wire_trade(), wire_trade(users=[BUYER])]})
    event = classify_frame(frame)
    assert isinstance(event, Trades) and event.coin == "BTC" and len(event.trades) == 1 and event.invalid == 1


@pytest.mark.parametrize("frame", ["{not json", "[1,2]", '{"data":1}', '{"channel":"trades","data":{}}',
                                   '{"channel":"subscriptionResponse","data":"ok"}', "hello"])
def test_unreadable_frames_raise_malformed(frame: str) -> None:
    with pytest.raises(MalformedMessage):
        classify_frame(frame)


def test_subscription_key_ignores_order_and_acks_may_add_keys() -> None:
    assert subscription_key({"type": "trades", "coin": "BTC"}) == subscription_key({"coin": "BTC", "type": "trades"})
    sent = {"type": "l2Book", "coin": "BTC"}
    assert ack_matches(sent, {"type": "l2Book", "coin": "BTC", "nSigFigs": None})
    assert not ack_matches(sent, {"type": "l2Book", "coin": "ETH"})


def test_rate_window_is_sliding() -> None:
    window = RateWindow(3, period=60)
    for t in (0.0, 10.0, 20.0):
        assert window.delay(t) == 0
        window.record(t)
    assert window.delay(30.0) == pytest.approx(30.0)  # the first event leaves the window at 60
    assert window.delay(60.0) == 0
    window.record(60.0)
    assert window.delay(61.0) == pytest.approx(9.0)


def test_recent_trades_keep_their_order_and_set_bad_items_aside() -> None:
    answer = [wire_trade(tid=3, time=30), wire_trade(tid=2, time=20, side="X"), wire_trade(tid=1, time=10)]
    trades, errors = parse_recent_trades(answer)
    assert [t.tid for t in trades] == [3, 1] and len(errors) == 1 and "side" in str(errors[0])


@pytest.mark.parametrize("body", [None, {"trades": []}, "rate limited"])
def test_a_recent_trades_answer_that_is_not_a_list_is_malformed(body: Any) -> None:
    with pytest.raises(MalformedResponse) as caught:
        parse_recent_trades(body)
    assert caught.value.request_type == "recentTrades"
