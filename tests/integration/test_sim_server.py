"""The simulator over real HTTP and a real WebSocket: the exchange's protocol, limits, chaos and ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import orjson
import pytest
import websockets
from support import free_port, wait_for

from hyperfollow.core.addresses import ADDRESS_PATTERN
from hyperfollow.sim.server import SimConfig, SimServer


def with_config(**options: object) -> pytest.MarkDecorator:
    """Run the test against a simulator with these SimConfig options."""
    return pytest.mark.parametrize("sim", [options], indirect=True, ids=["sim"])


SUB_BTC = {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}}


@pytest.fixture()
def sim(request: pytest.FixtureRequest) -> Iterator[SimServer]:
    options = {"seed": 5, "traders": 300, "coins": 4, "trades_per_second": 300.0, **getattr(request, "param", {})}
    with SimServer(SimConfig(**options), port=0) as server:
        yield server


_client = httpx.Client()   # one client: creating one per request costs far more than the request


@pytest.fixture(scope="module", autouse=True)
def _close_client() -> Iterator[None]:
    yield
    _client.close()


def _post(sim: SimServer, body: object, **kwargs: object) -> httpx.Response:
    return _client.post(sim.info_url, content=orjson.dumps(body), **kwargs)  # type: ignore[arg-type]


async def _next_json(ws: websockets.ClientConnection, channel: str, timeout: float = 5.0) -> dict:
    async def find() -> dict:
        while True:
            raw = await ws.recv()
            try:
                message = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("channel") == channel:
                return message
    return await asyncio.wait_for(find(), timeout)


async def test_greeting_subscribe_trades_with_both_users_and_ping(sim: SimServer) -> None:
    async with websockets.connect(sim.ws_url) as ws:
        assert await ws.recv() == "Websocket connection established."
        await ws.send(orjson.dumps(SUB_BTC).decode())
        ack = orjson.loads(await ws.recv())
        assert ack == {"channel": "subscriptionResponse",
                       "data": {"method": "subscribe", "subscription": {"type": "trades", "coin": "BTC"}}}
        message = await _next_json(ws, "trades")
        await ws.send('{"method":"ping"}')
        assert (await _next_json(ws, "pong")) == {"channel": "pong"}
        await ws.send(orjson.dumps({**SUB_BTC, "method": "unsubscribe"}).decode())
        unsub = await _next_json(ws, "subscriptionResponse")
        assert unsub["data"]["method"] == "unsubscribe"
        await ws.send("not json")
        assert "Error parsing JSON" in (await _next_json(ws, "error"))["data"]
    truth_tids = {r["tid"]: r for r in sim.truth(coin="BTC")}
    for trade in message["data"]:
        assert trade["coin"] == "BTC" and trade["side"] in ("A", "B")
        buyer, seller = trade["users"]
        assert ADDRESS_PATTERN.match(buyer) and ADDRESS_PATTERN.match(seller)
        assert trade["tid"] in truth_tids
        assert {buyer, seller} <= sim.traders_seen()


@with_config(ws_idle_timeout_s=1.0, trades_per_second=0.0)
async def test_idle_connections_are_closed_unless_pinged(sim: SimServer) -> None:
    async with websockets.connect(sim.ws_url) as ws:
        await ws.recv()
        for _ in range(4):                 # pings keep it alive past the idle timeout
            await asyncio.sleep(0.3)
            await ws.send('{"method":"ping"}')
            assert orjson.loads(await ws.recv()) == {"channel": "pong"}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert sim.stats()["ws_idle_closed"] == 1


@with_config(weight_limit=50)
def test_weight_limit_answers_429_and_counts(sim: SimServer) -> None:
    user = sim.addresses()[0]
    codes = [_post(sim, {"type": "clearinghouseState", "user": user}).status_code for _ in range(25)]
    assert codes == [200] * 25
    response = _post(sim, {"type": "clearinghouseState", "user": user})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
    assert _post(sim, {"type": "meta"}).status_code == 429
    stats = sim.stats()
    assert stats["rate_limited"] == 2 and stats["weight_used"]["127.0.0.1"] == 50
    assert stats["rate_limited_by_ip"] == {"127.0.0.1": 2}


@with_config(weight_limit=40, trust_forwarded_for=True)
def test_the_limit_is_per_client_ip(sim: SimServer) -> None:
    body = {"type": "meta"}
    assert _post(sim, body, headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert _post(sim, body, headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 200
    assert _post(sim, body, headers={"X-Forwarded-For": "10.0.0.1"}).status_code == 429
    assert _post(sim, body, headers={"X-Forwarded-For": "10.0.0.2"}).status_code == 200


def test_bad_bodies_answer_422_and_unknown_users_an_empty_account(sim: SimServer) -> None:
    for body in (b"{not json", b"[1,2]", b'{"type": "noSuchThing"}', b'{"type": "clearinghouseState"}',
                 b'{"type": "clearinghouseState", "user": "0x123"}', b'{"type": "userFillsByTime", "user": "0x'
                 + b"a" * 40 + b'"}'):
        response = _client.post(sim.info_url, content=body)
        assert response.status_code == 422, body
        assert response.text.startswith("Failed to deserialize the JSON body")
    state = _post(sim, {"type": "clearinghouseState", "user": "0x" + "ab" * 20}).json()
    assert state["assetPositions"] == [] and state["marginSummary"]["accountValue"] == "0.0"
    assert sim.stats()["bad_requests"] == 6


@with_config(trades_per_second=2000.0)
def test_truth_is_consistent_with_clearinghouse_state_and_fills(sim: SimServer) -> None:
    wait_for(lambda: sim.stats()["trades_emitted"] > 2000, what="trades")
    sim.pause()
    truth = sim.truth()
    last: dict[tuple[str, str], dict] = {}
    for record in truth:
        key = (record["trader"], record["coin"])
        if key in last:
            assert record["before"] == last[key]["after"]
        last[key] = record
    traders = [address for address, _ in Counter(r["trader"] for r in truth).most_common(15)]
    for address in traders:
        state = _post(sim, {"type": "clearinghouseState", "user": address}).json()
        shown = {p["position"]["coin"]: p["position"] for p in state["assetPositions"]}
        expected = {coin: rec["after"] for (trader, coin), rec in last.items()
                    if trader == address and rec["after"]["szi"] != "0.0"}
        assert {c: {"szi": p["szi"], "entryPx": p["entryPx"]} for c, p in shown.items()} == expected
        fills = _post(sim, {"type": "userFills", "user": address}).json()
        mine = [r for r in truth if r["trader"] == address]
        assert [f["tid"] for f in fills] == [r["tid"] for r in reversed(mine)][:2000]
    assert sim.stats()["truth_records"] == len(truth)
    # the control endpoint serves the same records, filtered
    body = httpx.get(f"{sim.base_url}/_sim/truth", params={"trader": traders[0], "after": 10}).json()
    assert body["records"] == [r for r in truth if r["trader"] == traders[0] and r["seq"] > 10]


@with_config(trades_per_second=0.0, ws_max_connections_per_ip=2)
async def test_connection_limit_per_ip(sim: SimServer) -> None:
    async with websockets.connect(sim.ws_url) as a, websockets.connect(sim.ws_url) as b:
        assert await a.recv() == await b.recv()
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(sim.ws_url):
                pass
        assert refused.value.response.status_code == 429
    assert sim.stats()["ws_rejected"] == 1


@with_config(error_probability=1.0)
def test_chaos_5xx_and_slow_answers(sim: SimServer) -> None:
    assert _post(sim, {"type": "meta"}).status_code in (500, 502, 503)
    sim.set_chaos(error_probability=0.0, slow_probability=1.0, slow_delay_s=1.0)
    with pytest.raises(httpx.ReadTimeout):
        _post(sim, {"type": "meta"}, timeout=0.3)
    sim.set_chaos(slow_probability=0.0)
    assert _post(sim, {"type": "meta"}).status_code == 200
    chaos = sim.stats()["chaos"]
    assert chaos["errors_5xx"] == 1 and chaos["slow_answers"] == 1
    response = httpx.post(f"{sim.base_url}/_sim/chaos", json={"error_probability": 7})
    assert response.status_code == 400


@with_config(malformed_probability=1.0, trades_per_second=200.0)
async def test_chaos_malformed_frames_come_besides_the_real_ones(sim: SimServer) -> None:
    async with websockets.connect(sim.ws_url) as ws:
        await ws.recv()
        await ws.send(orjson.dumps(SUB_BTC).decode())
        good = bad = 0
        while good < 3:
            raw = await asyncio.wait_for(ws.recv(), 5)
            try:
                message = orjson.loads(raw)
                ok = (isinstance(message, dict) and message.get("channel") == "trades"
                      and isinstance(message.get("data"), list) and message["data"]
                      and all(ADDRESS_PATTERN.match(u) for t in message["data"] for u in t["users"]))
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                ok = False
            if ok:
                good += 1
            elif not (isinstance(message, dict) and message.get("channel") == "subscriptionResponse"):
                bad += 1
        assert bad >= good - 1
    assert sim.stats()["chaos"]["malformed_frames"] >= bad


@with_config(start_paused=True, recent_trades=30)
async def test_recent_trades_are_the_latest_on_the_tape_newest_first(sim: SimServer) -> None:
    async with websockets.connect(sim.ws_url) as ws:
        await ws.recv()
        await ws.send(orjson.dumps(SUB_BTC).decode())
        await _next_json(ws, "subscriptionResponse")
        sim.step(400)
        streamed: list[dict] = []
        with contextlib.suppress(TimeoutError):
            while True:
                streamed.extend((await _next_json(ws, "trades", timeout=0.5))["data"])
    assert len(streamed) > 30
    assert _post(sim, {"type": "recentTrades", "coin": "BTC"}).json() == streamed[::-1][:30]
    assert _post(sim, {"type": "recentTrades", "coin": "NOSUCHCOIN"}).json() == []
    missing_coin = _post(sim, {"type": "recentTrades"})
    assert missing_coin.status_code == 422 and "coin" in missing_coin.text
    assert sim.stats()["weight_used"]["127.0.0.1"] == (20 + 30 // 20) + 20 + 20   # 422s cost their weight too


@with_config(disconnect_interval_s=0.3, trades_per_second=100.0)
async def test_chaos_disconnects_and_reconnecting_works(sim: SimServer) -> None:
    for _ in range(2):
        async with websockets.connect(sim.ws_url) as ws:
            await ws.recv()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)   # no subscription: only the drop can end this
    assert sim.stats()["chaos"]["disconnects"] == 2


@with_config(trades_per_second=500.0)
async def test_listing_a_coin_at_run_time(sim: SimServer) -> None:
    response = httpx.post(f"{sim.base_url}/_sim/listings", json={"list": "FRESH"})
    assert response.status_code == 200
    meta = _post(sim, {"type": "meta"}).json()
    assert "FRESH" in [c["name"] for c in meta["universe"]]
    async with websockets.connect(sim.ws_url) as ws:
        await ws.recv()
        await ws.send(orjson.dumps({"method": "subscribe", "subscription": {"type": "trades", "coin": "FRESH"}}))
        message = await _next_json(ws, "trades", timeout=10)
        assert message["data"][0]["coin"] == "FRESH"
    httpx.post(f"{sim.base_url}/_sim/listings", json={"delist": "FRESH"}).raise_for_status()
    meta = _post(sim, {"type": "meta"}).json()
    assert next(c for c in meta["universe"] if c["name"] == "FRESH")["isDelisted"] is True
    assert httpx.post(f"{sim.base_url}/_sim/listings", json={"list": "bad name!"}).status_code == 400


def test_setting_a_mark_over_http() -> None:
    with SimServer(SimConfig(seed=11, traders=60, coins=2, trades_per_second=0.0), port=0) as server:
        server.step(300)
        answer = httpx.post(f"{server.base_url}/_sim/mark", json={"coin": "BTC", "px": 1.0})
        assert answer.status_code == 200
        body = answer.json()
        assert body["coin"] == "BTC" and body["mark"] == "1.0" and body["liquidations"] > 0
        liquidated = [r for r in server.truth() if r["liquidated"]]
        assert len(liquidated) == body["liquidations"] and {r["coin"] for r in liquidated} == {"BTC"}
        assert all(r["change"] == "position_liquidated" and r["after"]["szi"] == "0.0" for r in liquidated)
        btc = [float(p["position"]["szi"]) for address in server.addresses()[:-1]
               for p in server.info({"type": "clearinghouseState", "user": address})["assetPositions"]
               if p["position"]["coin"] == "BTC"]
        assert btc and all(size < 0 for size in btc)  # every long was crossed, the shorts stay
        for bad in ({"coin": "NOPE", "px": 1}, {"coin": "BTC", "px": -1}, {"coin": "BTC"}, {"px": 1}):
            assert httpx.post(f"{server.base_url}/_sim/mark", json=bad).status_code == 400


def test_same_seed_same_trades_over_http() -> None:
    def run() -> list[tuple]:
        with SimServer(SimConfig(seed=11, traders=100, coins=3, trades_per_second=0.0), port=0) as server:
            httpx.post(f"{server.base_url}/_sim/step", json={"trades": 300}).raise_for_status()
            return [(r["trader"], r["coin"], r["before"], r["after"], r["tid"]) for r in server.truth()]
    assert run() == run()


def test_the_process_form_serves_the_same_app(tmp_path: object) -> None:
    port = free_port()
    truth_file = f"{tmp_path}/truth.jsonl"
    env = {**os.environ, "HYPERFOLLOW_LOG_FORMAT": "json"}
    proc = subprocess.Popen([sys.executable, "-m", "hyperfollow.core", "sim", "--port", str(port), "--seed", "3",
                             "--traders", "200", "--coins", "3", "--rate", "200", "--truth-file", truth_file],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None
        wait_for(ready, timeout=30, what="hyperfollow sim")
        assert proc.poll() is None
        universe = httpx.post(f"http://127.0.0.1:{port}/info", json={"type": "meta"}).json()["universe"]
        assert [c["name"] for c in universe] == ["BTC", "ETH", "SOL"]
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/_sim/stats").json()["truth_records"] > 0)
        assert "hyperfollow_sim_trades_total" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    with open(truth_file) as handle:
        lines = handle.read().splitlines()
    assert lines and orjson.loads(lines[0])["seq"] == 0


@with_config(trades_per_second=0.0, pregenerate_trades=3000)
async def test_firehose_emits_pregenerated_trades_with_emission_times(sim: SimServer) -> None:
    stats = sim.stats()
    assert stats["pending_trades"] >= 3000 and stats["truth_records"] == 0 and sim.truth() == []
    async with websockets.connect(sim.ws_url) as ws:
        await ws.recv()
        await ws.send(orjson.dumps(SUB_BTC).decode())
        await _next_json(ws, "subscriptionResponse")
        before = int(time.time() * 1000)
        httpx.post(f"{sim.base_url}/_sim/step", json={"trades": 1000}).raise_for_status()
        message = await _next_json(ws, "trades")
    truth = {r["tid"]: r for r in sim.truth(coin="BTC")}
    assert len(sim.truth()) == 2000
    for trade in message["data"]:
        assert trade["time"] >= before and truth[trade["tid"]]["time"] == trade["time"]
    fills = _post(sim, {"type": "userFills", "user": message["data"][0]["users"][0]}).json()
    assert any(f["tid"] == message["data"][0]["tid"] and f["time"] == message["data"][0]["time"] for f in fills)
    assert sim.stats()["pending_trades"] == stats["pending_trades"] - 1000
