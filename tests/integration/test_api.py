"""The REST API over a real `hyperfollow api` server, real PostgreSQL and Redis."""

from __future__ import annotations

import http.server
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import Engine, text
from support import free_port, wait_for
from support.api_server import ApiServer, address

from hyperfollow.api.schemas import EventOut, LeaderboardRow, Stats, TraderDetail, TraderOut
from hyperfollow.core.keys import RedisKeys

TOKEN = "test-admin-token-0123456789"
MAX_PAGE = 200
SEED_SORT_FIELDS = ["win_rate", "total_volume_usd", "account_age_days", "max_profit_usd", "max_loss_usd",
                    "avg_risk_ratio", "max_drawdown"]
SORT_FIELDS = [*SEED_SORT_FIELDS, "realized_pnl_usd", "roi", "trade_count"]
SEED_ROW_FIELDS = {"trader_id", "trader_address", "win_rate", "total_volume_usd", "account_age_days",
                   "avg_risk_ratio", "max_drawdown", "max_profit_usd", "max_loss_usd", "updated_at"}


class ExchangeTrap:
    """An HTTP server posing as the exchange: the API must never call it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = _record

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def exchange_trap() -> Iterator[ExchangeTrap]:
    trap = ExchangeTrap()
    yield trap
    trap.close()


@pytest.fixture(scope="module")
def api(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
        exchange_trap: ExchangeTrap) -> Iterator[ApiServer]:
    log = tmp_path_factory.mktemp("api") / "api.log"
    server = ApiServer(service_env, log, HYPERFOLLOW_ADMIN_TOKEN=TOKEN, HYPERFOLLOW_API_MAX_PAGE_SIZE=str(MAX_PAGE),
                       HYPERFOLLOW_API_CORS_ORIGINS="https://dashboard.example",
                       HYPERLIQUID_API_URL=f"{exchange_trap.url}/info",
                       WEBSOCKET_URL=exchange_trap.url.replace("http", "ws") + "/ws")
    with server:
        yield server
    assert TOKEN not in server.logs(), "the admin token reached a log line"


@pytest.fixture()
def client(api: ApiServer, db: Engine, redis_client: redis.Redis) -> Iterator[httpx.Client]:
    """A client of the module's server; the database and the Redis namespace are emptied first."""
    with httpx.Client(base_url=api.url, timeout=10.0) as http_client:
        yield http_client


# --- data ----------------------------------------------------------------------------------------------------------
def insert_traders(engine: Engine, count: int, *, inactive_every: int = 0) -> list[int]:
    with engine.begin() as conn:
        rows = conn.execute(text(
            "INSERT INTO traders (address, slot, is_active) SELECT '0x' || lpad(to_hex(n), 40, '0'), n % 16384, "
            "NOT (:every > 0 AND n % :every = 0) FROM generate_series(1, :count) AS n RETURNING id"),
            {"count": count, "every": inactive_every}).scalars().all()
    return list(rows)


def insert_metrics(engine: Engine, trader_ids: list[int], window: str = "all", seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for trader_id in trader_ids:
        trades = rng.randint(0, 60)
        rows.append({"trader_id": trader_id, "window": window, "win_rate": round(rng.random(), 4),
                     "total_volume_usd": round(rng.uniform(0, 5e6), 2), "account_age_days": rng.randint(0, 900),
                     "avg_risk_ratio": round(rng.uniform(0, 3), 4), "max_drawdown": round(rng.random(), 4),
                     "max_profit_usd": round(rng.uniform(0, 1e5), 2), "max_loss_usd": round(rng.uniform(0, 1e5), 2),
                     "realized_pnl_usd": round(rng.uniform(-1e5, 1e5), 2), "roi": round(rng.uniform(-1, 3), 4),
                     "trade_count": trades, "win_count": rng.randint(0, trades), "low_sample": trades < 10})
    with engine.begin() as conn:
        conn.execute(text(
            'INSERT INTO leaderboard_metrics (trader_id, "window", win_rate, total_volume_usd, account_age_days, '
            "avg_risk_ratio, max_drawdown, max_profit_usd, max_loss_usd, realized_pnl_usd, roi, trade_count, "
            "win_count, low_sample) VALUES (:trader_id, :window, :win_rate, :total_volume_usd, :account_age_days, "
            ":avg_risk_ratio, :max_drawdown, :max_profit_usd, :max_loss_usd, :realized_pnl_usd, :roi, :trade_count, "
            ":win_count, :low_sample)"), rows)
    return rows


def expected_order(rows: list[dict], field: str, order: str) -> list[int]:
    """Real records first, then low-sample ones; each group by the field, ties by trader id."""
    sign = -1 if order == "desc" else 1
    return [r["trader_id"] for r in sorted(rows, key=lambda r: (r["low_sample"], sign * r[field], r["trader_id"]))]


def insert_event(engine: Engine, trader_id: int, *, at: datetime, event_type: str, coin: str, size: float) -> int:
    details = {"coin": coin, "previous_size": 0, "current_size": size, "size_change": size,
               "previous_position": {}, "current_position": {}, "observed_at": at.isoformat()}
    with engine.begin() as conn:
        return conn.execute(text(
            "INSERT INTO trade_events (trader_id, timestamp, event_type, coin, details, idempotency_key) "
            "VALUES (:t, :at, :type, :coin, CAST(:details AS jsonb), :key) RETURNING id"),
            {"t": trader_id, "at": at, "type": event_type, "coin": coin, "details": orjson.dumps(details).decode(),
             "key": f"{trader_id}:{at.isoformat()}:{coin}:{event_type}"}).scalar_one()


# --- the page and the seed's basics --------------------------------------------------------------------------------
def test_root_keeps_the_welcome_json_and_gives_browsers_the_page(client: httpx.Client) -> None:
    answer = client.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/json")
    assert answer.json()["message"].startswith("Welcome")
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="leaderboard"' in page.text and "static/app.js" in page.text
    assert client.get("/ui").text == page.text
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        found = client.get(asset)
        assert found.status_code == 200 and kind in found.headers["content-type"]


def test_health_checks_postgres_and_redis(client: httpx.Client) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "healthy", "database": "ok", "redis": "ok", "feed": "subscribed"}


def test_openapi_docs_and_metrics(client: httpx.Client) -> None:
    client.get("/api/v1/leaderboard")
    schema = client.get("/openapi.json").json()
    assert {"/", "/health", "/api/v1/leaderboard", "/leaderboard", "/traders", "/traders/{trader}",
            "/traders/{trader}/events", "/api/v1/cache/clear", "/api/v1/stats"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'hyperfollow_api_http_requests_total{method="GET",route="/api/v1/leaderboard",status="200"}' in metrics.text
    assert "hyperfollow_api_ws_clients " in metrics.text


def test_cors_allows_only_the_configured_origin(client: httpx.Client) -> None:
    allowed = client.get("/health", headers={"Origin": "https://dashboard.example"})
    assert allowed.headers.get("access-control-allow-origin") == "https://dashboard.example"
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# --- leaderboard ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_leaderboard_sorts_by_every_field_with_low_sample_last(client: httpx.Client, db: Engine, order: str) -> None:
    rows = insert_metrics(db, insert_traders(db, 60))
    assert any(r["low_sample"] for r in rows) and not all(r["low_sample"] for r in rows)
    for field in SORT_FIELDS:
        answer = client.get("/api/v1/leaderboard", params={"sort_by": field, "order": order, "limit": 100})
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert [r["trader_id"] for r in got] == expected_order(rows, field, order), field
        assert [r["rank"] for r in got] == list(range(1, 61))
    first = got[0]
    assert set(first) >= SEED_ROW_FIELDS
    LeaderboardRow.model_validate(first)
    assert first["trader_address"] == address(first["trader_id"])
    assert datetime.fromisoformat(first["updated_at"]).tzinfo is not None


def test_leaderboard_filters_windows_and_pages(client: httpx.Client, db: Engine) -> None:
    ids = insert_traders(db, 40)
    all_rows = insert_metrics(db, ids, "all", seed=2)
    week_rows = insert_metrics(db, ids[:15], "7d", seed=3)

    def ids_of(**params: Any) -> list[int]:
        answer = client.get("/api/v1/leaderboard", params=params)
        assert answer.status_code == 200, answer.text
        return [r["trader_id"] for r in answer.json()]

    assert ids_of(window="7d") == expected_order(week_rows, "win_rate", "desc")
    assert {r["window"] for r in client.get("/api/v1/leaderboard", params={"window": "7d"}).json()} == {"7d"}
    full = expected_order(all_rows, "win_rate", "desc")
    assert ids_of() == full
    assert ids_of(limit=7, offset=0) + ids_of(limit=7, offset=7) == full[:14]
    assert ids_of(offset=1000) == []
    busy = [r for r in all_rows if r["trade_count"] >= 30]
    assert ids_of(min_trades=30) == expected_order(busy, "win_rate", "desc")
    big = [r for r in all_rows if r["total_volume_usd"] >= 2.5e6]
    assert ids_of(min_volume=2.5e6, sort_by="total_volume_usd") == expected_order(big, "total_volume_usd", "desc")
    real = [r for r in all_rows if not r["low_sample"]]
    assert ids_of(include_low_sample="false") == expected_order(real, "win_rate", "desc")


def test_legacy_leaderboard_is_win_rate_desc(client: httpx.Client, db: Engine) -> None:
    rows = insert_metrics(db, insert_traders(db, 12))
    legacy = client.get("/leaderboard").json()
    assert [r["trader_id"] for r in legacy] == expected_order(rows, "win_rate", "desc")
    assert legacy == client.get("/api/v1/leaderboard").json()


def test_leaderboard_cache_seed_key_ttl_and_generation(client: httpx.Client, db: Engine, redis_client: redis.Redis,
                                                       keys: RedisKeys) -> None:
    ids = insert_traders(db, 5)
    insert_metrics(db, ids)
    first = client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"})
    assert first.headers["x-cache"] == "miss"
    cached = list(redis_client.scan_iter(match=keys.leaderboard_cache("roi", "asc") + ":*"))
    assert len(cached) == 1
    assert 290 <= redis_client.ttl(cached[0]) <= 300
    second = client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"})
    assert second.headers["x-cache"] == "hit" and second.json() == first.json()

    # a computation lands: metrics change in SQL, then the generation is bumped (keys are not even deleted here)
    with db.begin() as conn:
        conn.execute(text("UPDATE leaderboard_metrics SET roi = roi + 100 WHERE trader_id = :t"), {"t": ids[0]})
    def roi_of(rows: list[dict]) -> float:
        return next(r["roi"] for r in rows if r["trader_id"] == ids[0])

    still = client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"})
    assert still.headers["x-cache"] == "hit" and roi_of(still.json()) == roi_of(first.json())
    redis_client.incr(keys.leaderboard_generation)
    fresh = client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"})
    assert fresh.headers["x-cache"] == "miss"
    assert roi_of(fresh.json()) == pytest.approx(roi_of(first.json()) + 100)
    assert client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"}).headers["x-cache"] == "hit"

    # a page computed from old metrics but written after the bump (a slow request) is never served
    key = cached[0]
    redis_client.set(key, b"0\n[]", ex=300)
    stale = client.get("/api/v1/leaderboard", params={"sort_by": "roi", "order": "asc"})
    assert stale.headers["x-cache"] == "miss" and stale.json() == fresh.json()


# --- traders and events --------------------------------------------------------------------------------------------
def test_traders_are_paginated_and_searchable_by_address(client: httpx.Client, db: Engine) -> None:
    insert_traders(db, 30, inactive_every=3)
    page = client.get("/traders", params={"limit": 10, "offset": 10}).json()
    assert [t["id"] for t in page] == list(range(11, 21))
    for trader in page:
        TraderOut.model_validate(trader)
        assert {"id", "address", "first_seen_at", "last_tracked_at", "is_active"} <= set(trader)
    assert len(client.get("/traders").json()) == 30
    exact = client.get("/traders", params={"search": address(17).upper().replace("0X", "0x")}).json()
    assert [t["id"] for t in exact] == [17]
    prefix = client.get("/traders", params={"search": "0x" + "0" * 38 + "1"}).json()  # 0x…10 to 0x…1f
    assert [t["id"] for t in prefix] == list(range(16, 31))
    assert [t["id"] for t in client.get("/traders", params={"search": "00" * 19 + "1"}).json()] == list(range(16, 31))
    inactive = client.get("/traders", params={"active": "false"}).json()
    assert [t["id"] for t in inactive] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_trader_events_newest_first_by_id_or_address_with_filters(client: httpx.Client, db: Engine) -> None:
    trader, other = insert_traders(db, 2)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    kinds = ["position_opened", "position_increased", "position_decreased", "position_closed"]
    ids = [insert_event(db, trader, at=start + timedelta(minutes=i), event_type=kinds[i % 4],
                        coin="BTC" if i % 2 else "ETH", size=float(i)) for i in range(12)]
    insert_event(db, other, at=start, event_type="position_opened", coin="BTC", size=1.0)

    by_id = client.get(f"/traders/{trader}/events").json()
    assert [e["id"] for e in by_id] == ids[::-1]
    for event in by_id:
        EventOut.model_validate(event)
    by_address = client.get(f"/traders/{address(trader).upper().replace('0X', '0x')}/events").json()
    assert by_address == by_id
    page = client.get(f"/traders/{trader}/events", params={"limit": 5, "offset": 5}).json()
    assert [e["id"] for e in page] == ids[::-1][5:10]
    closed = client.get(f"/traders/{trader}/events", params={"event_type": "position_closed"}).json()
    assert [e["id"] for e in closed] == [ids[11], ids[7], ids[3]]
    btc_increases = client.get(f"/traders/{trader}/events",
                               params={"event_type": "position_increased", "coin": "BTC"}).json()
    assert [e["id"] for e in btc_increases] == [ids[9], ids[5], ids[1]]
    assert client.get(f"/traders/{trader}/events", params={"coin": "DOGE"}).json() == []
    missing = client.get(f"/traders/{address(999)}/events")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    for no_such_id in ("424242", "0", "9223372036854775808"):
        assert client.get(f"/traders/{no_such_id}/events").status_code == 404


def test_trader_detail_has_newest_positions_and_metrics(client: httpx.Client, db: Engine) -> None:
    (trader,) = insert_traders(db, 1)
    insert_metrics(db, [trader], "7d", seed=5)
    insert_metrics(db, [trader], "all", seed=6)
    old = {"assetPositions": [{"type": "oneWay", "position": {"coin": "SOL", "szi": "10"}}]}
    new = {"assetPositions": [
        {"type": "oneWay", "position": {"coin": "BTC", "szi": "0.5", "entryPx": "60000", "positionValue": "31000",
                                        "unrealizedPnl": "1000", "leverage": {"type": "cross", "value": 10}}},
        {"type": "oneWay", "position": {"coin": "ETH", "szi": "-2", "entryPx": "3000", "positionValue": "6100"}}]}
    with db.begin() as conn:
        for at, state, value in ((datetime(2026, 1, 1, tzinfo=UTC), old, 500),
                                 (datetime(2026, 1, 2, tzinfo=UTC), new, 12000)):
            conn.execute(text("INSERT INTO user_state_history (trader_id, timestamp, state_data, account_value, "
                              "total_notional) VALUES (:t, :at, CAST(:s AS jsonb), :v, 37100)"),
                         {"t": trader, "at": at, "s": orjson.dumps(state).decode(), "v": value})
    detail = client.get(f"/traders/{trader}").json()
    TraderDetail.model_validate(detail)
    assert detail["trader"]["address"] == address(trader)
    assert [(p["coin"], p["side"], p["size"]) for p in detail["positions"]] == [("BTC", "LONG", 0.5),
                                                                              ("ETH", "SHORT", -2.0)]
    assert detail["positions"][0]["leverage"] == 10 and detail["account_value"] == 12000
    assert datetime.fromisoformat(detail["snapshot_at"]) == datetime(2026, 1, 2, tzinfo=UTC)
    assert [m["window"] for m in detail["metrics"]] == ["7d", "all"]
    assert client.get(f"/traders/{address(trader)}").json() == detail
    assert client.get(f"/traders/{address(77)}").status_code == 404


def test_stats_keep_the_seed_shape(client: httpx.Client, db: Engine) -> None:
    ids = insert_traders(db, 9, inactive_every=3)
    insert_event(db, ids[0], at=datetime(2026, 1, 1, tzinfo=UTC), event_type="position_opened", coin="BTC", size=1)
    stats = client.get("/api/v1/stats").json()
    Stats.model_validate(stats)
    assert stats["database"] == {"total_traders": 9, "active_traders": 6, "total_trade_events": 1}
    assert stats["websocket"] == {"active_connections": 0}
    assert stats["cache"] == {"redis_connected": True}
    assert stats["timestamp"].endswith("Z")


# --- admin ---------------------------------------------------------------------------------------------------------
def test_cache_clear_needs_the_admin_token(client: httpx.Client, db: Engine, redis_client: redis.Redis,
                                          keys: RedisKeys) -> None:
    insert_metrics(db, insert_traders(db, 3))
    for sort_by in ("win_rate", "roi", "max_drawdown"):
        client.get("/api/v1/leaderboard", params={"sort_by": sort_by})
    other = RedisKeys("someone-else:").leaderboard_cache("win_rate", "desc")
    redis_client.set(other, b"x", ex=60)
    try:
        get = client.get("/api/v1/cache/clear")
        assert get.status_code == 405 and "POST" in get.json()["detail"]
        missing = client.post("/api/v1/cache/clear")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/api/v1/cache/clear", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        wrong = client.post("/api/v1/cache/clear", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403 and wrong.json()["detail"] == "invalid admin token"
        assert len(list(redis_client.scan_iter(match=keys.leaderboard_cache_pattern))) == 3
        done = client.post("/api/v1/cache/clear", headers={"Authorization": f"Bearer {TOKEN}"})
        assert done.status_code == 200
        assert done.json() == {"message": "Cleared 3 cache entries", "cleared": 3}
        assert list(redis_client.scan_iter(match=keys.leaderboard_cache_pattern)) == []
        assert redis_client.exists(other)  # another namespace's cache is not ours to clear
    finally:
        redis_client.delete(other)


# --- bad parameters ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "named"), [
    ("/api/v1/leaderboard", {"sort_by": "pnl; DROP TABLE traders"}, "sort_by"),
    ("/api/v1/leaderboard", {"order": "up"}, "order"),
    ("/api/v1/leaderboard", {"limit": "-1"}, "limit"),
    ("/api/v1/leaderboard", {"limit": "0"}, "limit"),
    ("/api/v1/leaderboard", {"limit": str(MAX_PAGE + 1)}, "limit"),
    ("/api/v1/leaderboard", {"offset": "-5"}, "offset"),
    ("/api/v1/leaderboard", {"window": "1y"}, "window"),
    ("/api/v1/leaderboard", {"min_volume": "nan"}, "min_volume"),
    ("/api/v1/leaderboard", {"min_volume": "inf"}, "min_volume"),
    ("/api/v1/leaderboard", {"min_trades": "-1"}, "min_trades"),
    ("/traders", {"search": "0xzz"}, "search"),
    ("/traders", {"limit": "abc"}, "limit"),
    ("/traders/0x123/events", {}, "trader"),
    ("/traders/not-a-trader", {}, "trader"),
    ("/traders/1/events", {"event_type": "position_moved"}, "event_type"),
    ("/traders/1/events", {"coin": "BTC'--"}, "coin"),
])
def test_bad_parameters_get_422_naming_the_parameter(client: httpx.Client, path: str, params: dict[str, str],
                                                     named: str) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    text_of_error = body.get("message") or body.get("detail")
    assert named in text_of_error, body


# --- failures of the servers behind --------------------------------------------------------------------------------
def test_unreachable_database_or_redis_give_503_not_500(service_env: dict[str, str], tmp_path: Path,
                                                        db: Engine) -> None:
    insert_metrics(db, insert_traders(db, 3))
    dead_port = free_port()
    no_database = {**service_env, "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{dead_port}/none"}
    with ApiServer(no_database, tmp_path / "nodb.log").start(healthy=False) as server:
        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503
        assert health.json()["status"] == "unhealthy" and health.json()["redis"] == "ok"
        assert health.json()["database"].startswith("error")
        board = httpx.get(f"{server.url}/api/v1/leaderboard", timeout=10)
        assert board.status_code == 503 and board.json() == {"detail": "database unavailable"}
        assert httpx.get(f"{server.url}/traders/1/events", timeout=10).status_code == 503
        # no admin token configured here: the admin endpoint says it is disabled
        disabled = httpx.post(f"{server.url}/api/v1/cache/clear", headers={"Authorization": "Bearer x"})
        assert disabled.status_code == 403 and "disabled" in disabled.json()["detail"]
    no_redis = {**service_env, "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0"}
    with ApiServer(no_redis, tmp_path / "noredis.log").start(healthy=False) as server:
        health = httpx.get(f"{server.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["database"] == "ok"
        assert health.json()["redis"].startswith("error") and health.json()["feed"] == "reconnecting"
        board = httpx.get(f"{server.url}/api/v1/leaderboard", timeout=10)  # served without the cache
        assert board.status_code == 200 and len(board.json()) == 3
        assert httpx.get(f"{server.url}/api/v1/stats", timeout=10).json()["cache"] == {"redis_connected": False}


def test_the_command_reports_bad_settings_and_a_taken_port(service_env: dict[str, str], api: ApiServer) -> None:
    command = [sys.executable, "-m", "hyperfollow.core", "api"]
    bad = subprocess.run(command, env={**service_env, "HYPERFOLLOW_API_MAX_PAGE_SIZE": "-3"}, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "HYPERFOLLOW_API_MAX_PAGE_SIZE" in bad.stderr
    taken = subprocess.run(command, env={**service_env, "HYPERFOLLOW_API_PORT": str(api.port)}, capture_output=True,
                           text=True, timeout=60)
    assert taken.returncode == 1 and "address already in use" in taken.stderr


def test_no_endpoint_called_the_exchange(exchange_trap: ExchangeTrap, api: ApiServer) -> None:
    """Runs last in this module: every request above went through the server; the exchange saw none."""
    wait_for(lambda: api.process is not None and api.process.poll() is None, what="api alive")
    assert exchange_trap.hits == []
