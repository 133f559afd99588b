"""The API's pure parts: stream ids and the resume seam, WebSocket filters, event preparation, content
negotiation, positions from a snapshot, validation messages, settings."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from hyperfollow.api.app import validation_message
from hyperfollow.api.fanout import PreparedEvent, Subscriber, prepare_event
from hyperfollow.api.filters import MAX_FILTER_ITEMS, EventFilter, EventMeta, FilterError, parse_filter
from hyperfollow.api.messages import connection_frame, error_frame, now_iso, trade_event_frame
from hyperfollow.api.negotiation import prefers_html
from hyperfollow.api.positions import open_positions
from hyperfollow.api.queries import LeaderboardQuery
from hyperfollow.api.schemas import Order, SortField, Window
from hyperfollow.api.settings import ApiSettings
from hyperfollow.api.streams import format_stream_id, is_after, parse_stream_id
from hyperfollow.core.settings import ConfigError, load_settings

A = "0x" + "ab" * 20
B = "0x" + "cd" * 20


def message(**overrides: object) -> dict[str, object]:
    base = {"id": 7, "trader_id": 3, "trader_address": A, "timestamp": "2026-01-01T00:00:00Z",
            "event_type": "position_opened",
            "details": {"coin": "BTC", "previous_size": 0, "current_size": 1.5, "size_change": 1.5,
                        "previous_position": {}, "current_position": {"coin": "BTC", "szi": "1.5"},
                        "observed_at": "2026-01-01T00:00:00Z"}}
    return {**base, **overrides}


# --- stream ids ---------------------------------------------------------------------------------------------
def test_stream_ids_parse_order_and_format() -> None:
    assert parse_stream_id("1700000000000-3") == (1700000000000, 3)
    assert parse_stream_id(b"1700000000000-3") == (1700000000000, 3)
    assert parse_stream_id("1700000000000") == (1700000000000, 0)
    assert parse_stream_id("0") == (0, 0)
    # ordering is numeric, not textual
    assert parse_stream_id("999-0") < parse_stream_id("1000-0")
    assert parse_stream_id("5-10") > parse_stream_id("5-9")
    assert format_stream_id((12, 4)) == "12-4"


@pytest.mark.parametrize("bad", ["", "abc", "1-2-3", "-1", "1-", "12.5", "$", "1 2", "9" * 21,
                                 f"{2**64}-0"])
def test_bad_stream_ids_are_rejected_with_a_message(bad: str) -> None:
    with pytest.raises(ValueError, match="stream id"):
        parse_stream_id(bad)


def test_the_resume_seam_drops_exactly_what_was_replayed() -> None:
    floor = (100, 2)
    assert not is_after((100, 2), floor)
    assert not is_after((99, 9), floor)
    assert is_after((100, 3), floor)
    assert is_after((101, 0), floor)
    assert is_after(None, floor)  # no id: cannot be deduplicated, so it is delivered
    assert is_after((1, 0), None)  # no replay happened


# --- filters ------------------------------------------------------------------------------------------------
def test_filters_combine_with_and_and_lists_with_or() -> None:
    f = parse_filter(trader=f"{A.upper().replace('0X', '0x')},{B}", coin="BTC,ETH", event_type="position_opened")
    assert f.traders == {A, B}  # addresses are compared in their canonical lowercase form
    assert f.matches(EventMeta(A, "ETH", "position_opened"))
    assert not f.matches(EventMeta(A, "SOL", "position_opened"))
    assert not f.matches(EventMeta(A, "BTC", "position_closed"))
    assert not f.matches(EventMeta("0x" + "ee" * 20, "BTC", "position_opened"))
    assert parse_filter().is_empty and parse_filter().matches(EventMeta(A, "ANY", "position_closed"))
    assert parse_filter(coin=" , ").is_empty


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"trader": "0x12"}, "trader"),
    ({"coin": "BTC;DROP"}, "coin"),
    ({"coin": "a" * 30}, "coin"),
    ({"event_type": "position_moved"}, "event_type"),
    ({"coin": ",".join(["BTC"] * (MAX_FILTER_ITEMS + 1))}, "at most"),
])
def test_bad_filters_name_the_parameter(kwargs: dict[str, str], words: str) -> None:
    with pytest.raises(FilterError, match=words):
        parse_filter(**kwargs)


# --- event preparation ----------------------------------------------------------------------------------------
def test_prepare_event_keeps_the_producers_json_and_builds_the_seed_frame() -> None:
    raw = orjson.dumps(message(stream_id="5-1", extra_field="kept"))
    event = prepare_event(raw)
    assert event.key == (5, 1)
    assert event.meta == EventMeta(A, "BTC", "position_opened")
    frame = orjson.loads(event.frame)
    assert frame["type"] == "trade_event" and frame["timestamp"].endswith("Z")
    assert frame["data"] == orjson.loads(raw)


def test_prepare_event_from_the_stream_sets_the_entry_id() -> None:
    event = prepare_event(orjson.dumps(message()), stream_id="9-0")
    assert event.key == (9, 0)
    assert orjson.loads(event.frame)["data"]["stream_id"] == "9-0"


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", orjson.dumps(message(event_type="teleported")),
                                 orjson.dumps({k: v for k, v in message().items() if k != "details"}),
                                 orjson.dumps(message(stream_id="nope"))])
def test_malformed_event_messages_raise_value_errors(raw: bytes) -> None:
    with pytest.raises(ValueError):
        prepare_event(raw)


def test_a_subscriber_queue_is_bounded_and_filtered() -> None:
    async def scenario() -> None:
        sub = Subscriber(EventFilter(coins=frozenset({"BTC"})), queue_size=2)
        btc = PreparedEvent((1, 0), EventMeta(A, "BTC", "position_opened"), "{}")
        eth = PreparedEvent((2, 0), EventMeta(A, "ETH", "position_opened"), "{}")
        assert sub.offer(btc) and sub.offer(eth) and sub.offer(btc)
        assert sub.queue.qsize() == 2  # ETH filtered out
        assert not sub.offer(btc)  # full: the caller drops this subscriber
        sub.floor = (1, 0)
        assert not sub.wants(btc) and sub.wants(eth)

    asyncio.run(scenario())


def test_frames_have_the_seed_shapes() -> None:
    connection = orjson.loads(connection_frame())
    assert connection["type"] == "connection"
    assert connection["message"] == "Connected to real-time updates feed"
    assert connection["timestamp"].endswith("Z") and len(connection["timestamp"]) == len("2025-08-05T10:30:00.000Z")
    error = orjson.loads(error_frame("bad", code="x"))
    assert (error["type"], error["message"], error["code"]) == ("error", "bad", "x")
    assert orjson.loads(trade_event_frame('{"id": 1}', now_iso()))["data"] == {"id": 1}


# --- content negotiation -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("accept", "html"), [
    (None, False), ("", False), ("*/*", False), ("application/json", False),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8", True),  # Chromium
    ("text/html;q=0.5, application/json", False),
    ("application/json;q=0.5, text/html", True),
    ("text/html;q=0", False), ("text/html;q=abc", False),
])
def test_browsers_get_the_page_and_api_clients_json(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


# --- positions ----------------------------------------------------------------------------------------------------
def test_open_positions_from_a_snapshot_tolerate_odd_fields() -> None:
    state = {"assetPositions": [
        {"type": "oneWay", "position": {"coin": "ETH", "szi": "-1.5", "entryPx": "2986.3", "positionValue": "4500",
                                        "unrealizedPnl": "-20.5", "returnOnEquity": "-0.05",
                                        "leverage": {"type": "cross", "value": 20}, "liquidationPx": None,
                                        "marginUsed": "225", "newField": {"x": 1}}},
        {"type": "oneWay", "position": {"coin": "BTC", "szi": "0.5", "positionValue": "oops",
                                        "leverage": "not a dict"}},
        {"type": "oneWay", "position": {"coin": "SOL", "szi": "0"}},  # flat: not a position
        {"type": "oneWay", "position": {"szi": "1"}},  # no coin
        "garbage",
        {"position": None},
    ], "marginSummary": {"accountValue": "10000"}}
    positions = open_positions(state)
    assert [p["coin"] for p in positions] == ["ETH", "BTC"]
    eth, btc = positions
    assert eth["side"] == "SHORT" and eth["size"] == -1.5 and eth["entry_price"] == 2986.3
    assert eth["leverage"] == 20 and eth["leverage_type"] == "cross" and eth["liquidation_price"] is None
    assert btc["side"] == "LONG" and btc["position_value"] is None and btc["leverage"] is None
    assert open_positions(None) == [] and open_positions({"assetPositions": "x"}) == []


# --- leaderboard cache key, validation messages, settings ---------------------------------------------------------
def test_cache_suffix_separates_every_page_and_filter() -> None:
    base = LeaderboardQuery()
    variants = [LeaderboardQuery(window=Window.d7), LeaderboardQuery(limit=50), LeaderboardQuery(offset=100),
                LeaderboardQuery(min_trades=5), LeaderboardQuery(min_volume=0.5),
                LeaderboardQuery(include_low_sample=False)]
    suffixes = {q.cache_suffix() for q in [base, *variants]}
    assert len(suffixes) == 1 + len(variants)
    # sort_by and order are in the key itself, not the suffix
    assert LeaderboardQuery(sort_by=SortField.roi, order=Order.asc).cache_suffix() == base.cache_suffix()


def test_validation_message_names_parameters() -> None:
    errors = [{"type": "enum", "loc": ["query", "sort_by"], "msg": "Input should be 'win_rate' or 'roi'"},
              {"type": "string_pattern_mismatch", "loc": ["path", "trader"], "msg": "String should match '^…$'"}]
    text = validation_message(errors)
    assert text.startswith("sort_by: Input should be 'win_rate'")
    assert "trader: must be a numeric trader id or an address" in text


def test_api_settings_read_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERFOLLOW_API_CORS_ORIGINS", "https://a.example, http://b.example:8080/")
    monkeypatch.setenv("HYPERFOLLOW_API_WS_QUEUE_SIZE", "16")
    settings = load_settings(ApiSettings)
    assert settings.cors_origins == ("https://a.example", "http://b.example:8080")
    assert settings.ws_queue_size == 16 and settings.cache_ttl_s == 300 and settings.max_page_size == 500
    monkeypatch.setenv("HYPERFOLLOW_API_CORS_ORIGINS", "example.org")
    with pytest.raises(ConfigError, match=r"CORS_ORIGINS|cors_origins"):
        load_settings(ApiSettings)
    monkeypatch.setenv("HYPERFOLLOW_API_CORS_ORIGINS", "*")
    monkeypatch.setenv("HYPERFOLLOW_API_MAX_PAGE_SIZE", "10")
    with pytest.raises(ConfigError, match="DEFAULT_PAGE_SIZE"):
        load_settings(ApiSettings)
