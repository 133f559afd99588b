"""`/ws/v1/updates` over a real server: fan-out to several clients, filters, a slow client, resume with
`?since=`, a lost Redis subscription. Events are produced exactly as the tracking workers will (support.api_server).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from support import wait_for
from support.api_server import ApiServer, EventProducer, address, event_message
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hyperfollow.core.keys import RedisKeys

QUEUE = 8
MAX_REPLAY = 100
A, B, C = address(1), address(2), address(3)


@pytest.fixture(scope="module")
def api(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    log = tmp_path_factory.mktemp("ws") / "api.log"
    with ApiServer(service_env, log, HYPERFOLLOW_API_WS_QUEUE_SIZE=str(QUEUE),
                   HYPERFOLLOW_API_WS_MAX_REPLAY=str(MAX_REPLAY), HYPERFOLLOW_API_WS_DROP_GRACE_S="30") as server:
        yield server


@pytest.fixture()
def producer(api: ApiServer, redis_url: str, keys: RedisKeys, redis_client: redis.Redis) -> Iterator[EventProducer]:
    """Publishes like the tracking workers; the Redis namespace (the stream included) is emptied first."""
    made = EventProducer(redis_url, keys)
    yield made
    made.close()


def metric(api: ApiServer, name: str) -> float:
    text = httpx.get(f"{api.url}/metrics", timeout=5).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def stats_connections(api: ApiServer) -> int:
    return int(httpx.get(f"{api.url}/api/v1/stats", timeout=5).json()["websocket"]["active_connections"])


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.recv(), timeout))


async def open_feed(api: ApiServer, query: str = "", **options: Any) -> ClientConnection:
    ws = await connect(f"{api.ws_url}{'?' + query if query else ''}", **options)
    hello = await recv(ws)
    assert hello["type"] == "connection", hello
    return ws


async def events(ws: ClientConnection, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The next `count` trade_event data objects (fails on anything else)."""
    found = []
    while len(found) < count:
        frame = await recv(ws, timeout)
        assert frame["type"] == "trade_event", frame
        found.append(frame["data"])
    return found


async def assert_silent(ws: ClientConnection, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return closed.value.rcvd.code if closed.value.rcvd else None


def stream_ids(producer: EventProducer) -> list[str]:
    return [entry_id.decode() for entry_id, _ in producer.client.xrange(producer.keys.events_stream)]


# --- fan-out --------------------------------------------------------------------------------------------------------
async def test_several_clients_get_the_connection_message_then_every_event(api: ApiServer,
                                                                         producer: EventProducer) -> None:
    raw = await connect(api.ws_url)
    hello = await recv(raw)
    assert set(hello) >= {"type", "message", "timestamp"}
    assert hello["message"] == "Connected to real-time updates feed" and hello["timestamp"].endswith("Z")
    clients = [raw, *[await open_feed(api) for _ in range(3)]]
    wait_for(lambda: stats_connections(api) == 4, what="4 connections in stats")

    sent = [producer.publish(event_message(i, address(i), coin="ETH" if i % 2 else "BTC")) for i in range(1, 21)]
    for ws in clients:
        got = await events(ws, 20)
        assert [e["stream_id"] for e in got] == sent
        first = got[0]
        assert set(first) == {"id", "trader_id", "trader_address", "timestamp", "event_type", "details", "stream_id"}
        assert first["trader_address"] == address(1) and first["details"]["coin"] == "ETH"
        assert {"coin", "previous_size", "current_size", "size_change", "previous_position",
                "current_position"} <= set(first["details"])
    frame = orjson.loads(orjson.dumps(first))  # the data object is the producer's message, untouched
    assert frame["event_type"] == "position_opened"
    for ws in clients:
        await ws.close()
    wait_for(lambda: stats_connections(api) == 0, what="connections released")


async def test_a_burst_longer_than_the_queue_reaches_every_client_that_reads(api: ApiServer,
                                                                            producer: EventProducer) -> None:
    # the queue bounds how far a client's socket lags, not how many events arrive at once: a worker's batch
    # of events comes in one Redis read, and a client reading along must not be dropped for it
    clients = [await open_feed(api) for _ in range(3)]
    sent = producer.publish_batch([event_message(i, address(i)) for i in range(1, 4 * QUEUE + 1)])
    for ws in clients:
        assert [e["stream_id"] for e in await events(ws, len(sent))] == sent
    for ws in clients:
        await ws.close()
    wait_for(lambda: stats_connections(api) == 0, what="connections released")


async def test_filters_pick_events_per_client(api: ApiServer, producer: EventProducer) -> None:
    by_trader = await open_feed(api, f"trader={B.upper().replace('0X', '0x')},{C}")
    by_coin = await open_feed(api, "coin=ETH")
    by_type = await open_feed(api, "event_type=position_closed,position_liquidated")
    combined = await open_feed(api, f"trader={A}&coin=BTC&event_type=position_opened")
    everything = await open_feed(api)
    plan = [(A, "BTC", "position_opened"), (B, "ETH", "position_opened"), (C, "BTC", "position_closed"),
            (A, "ETH", "position_liquidated"), (A, "BTC", "position_closed"), (B, "SOL", "position_increased"),
            (A, "BTC", "position_opened")]
    sent = [producer.publish(event_message(int(who, 16), who, coin=coin, event_type=kind))
            for who, coin, kind in plan]

    def expect(pick: Any) -> list[str]:
        return [sid for sid, row in zip(sent, plan, strict=True) if pick(*row)]

    cases = [(by_trader, expect(lambda who, coin, kind: who in (B, C))),
             (by_coin, expect(lambda who, coin, kind: coin == "ETH")),
             (by_type, expect(lambda who, coin, kind: kind in ("position_closed", "position_liquidated"))),
             (combined, expect(lambda who, coin, kind: (who, coin, kind) == (A, "BTC", "position_opened"))),
             (everything, sent)]
    for ws, wanted in cases:
        assert [e["stream_id"] for e in await events(ws, len(wanted))] == wanted
    await asyncio.sleep(0.3)
    for ws, _ in cases:
        await assert_silent(ws, 0.05)
        await ws.close()


@pytest.mark.parametrize(("query", "words"), [("coin=BTC;DROP", "coin"), ("trader=0x12", "trader"),
                                              ("event_type=position_moved", "event_type"),
                                              ("since=yesterday", "since")])
async def test_bad_parameters_get_an_error_message_then_close_1008(api: ApiServer, query: str, words: str) -> None:
    ws = await connect(f"{api.ws_url}?{query}")
    frame = await recv(ws)
    assert frame["type"] == "error" and frame["message"].startswith(words) and frame["timestamp"]
    assert await close_code(ws) == 1008


async def test_ping_pong_and_unsupported_messages(api: ApiServer, producer: EventProducer) -> None:
    ws = await open_feed(api)
    await ws.send('{"type": "ping"}')
    assert (await recv(ws))["type"] == "pong"
    await ws.send("hello")
    assert (await recv(ws))["type"] == "error"
    sid = producer.publish(event_message(1, A))
    assert (await events(ws, 1))[0]["stream_id"] == sid
    await ws.close()


async def test_malformed_messages_are_skipped(api: ApiServer, producer: EventProducer) -> None:
    before = metric(api, 'hyperfollow_api_ws_events_total{result="malformed"}')
    ws = await open_feed(api)
    for junk in (b"garbage", b'{"id": 1}', orjson.dumps({**event_message(1, A), "event_type": "teleported"})):
        producer.client.publish(producer.keys.events_channel, junk)
    sid = producer.publish(event_message(2, B))
    assert [e["stream_id"] for e in await events(ws, 1)] == [sid]
    assert metric(api, 'hyperfollow_api_ws_events_total{result="malformed"}') == before + 3
    await ws.close()


# --- slow clients ----------------------------------------------------------------------------------------------------
async def test_a_slow_client_is_dropped_and_fast_ones_get_everything(api: ApiServer, producer: EventProducer) -> None:
    dropped_before = metric(api, 'hyperfollow_api_ws_clients_dropped_total{reason="slow"}')
    # a client that stops reading: its library stops taking frames off the socket once one waits, and its small
    # receive buffer (fixed, so the kernel does not grow it to tens of MB) fills fast
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", api.port))
    slow = await open_feed(api, max_queue=1, sock=sock)
    fast = [await open_feed(api) for _ in range(2)]
    # ~13 MB of incompressible padding (per-message deflate would shrink repeated bytes to nothing)
    total, padding = 200, base64.b64encode(os.urandom(48 * 1024)).decode()

    async def read_all(ws: ClientConnection) -> list[str]:
        return [e["stream_id"] for e in await events(ws, total, timeout=30)]

    readers = [asyncio.create_task(read_all(ws)) for ws in fast]
    sent = await asyncio.to_thread(lambda: [producer.publish(event_message(i, A, padding=padding))
                                            for i in range(total)])  # the readers keep reading meanwhile
    for reader in readers:
        assert await reader == sent
    wait_for(lambda: metric(api, 'hyperfollow_api_ws_clients_dropped_total{reason="slow"}') == dropped_before + 1,
             timeout=15, what="slow client dropped")
    assert stats_connections(api) == 2

    # the slow client now reads: a gap-free beginning, then why it was dropped, then a close
    received: list[str] = []
    notice = None
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            frame = await recv(slow, timeout=15)
            if frame["type"] == "trade_event":
                received.append(frame["data"]["stream_id"])
            else:
                notice = frame
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    assert notice is not None and notice["type"] == "error" and notice["code"] == "slow_client"
    assert 0 < len(received) < total and received == sent[:len(received)]
    # ... and resuming from its last id gets the rest, exactly
    rest = await resume_all(api, received[-1])
    assert received + rest == sent
    for ws in fast:
        await ws.close()


async def resume_all(api: ApiServer, since: str, query: str = "") -> list[str]:
    """Reconnect with ?since= until the replay is complete (the server caps one replay at MAX_REPLAY entries)."""
    got: list[str] = []
    while True:
        ws = await open_feed(api, f"since={since}{'&' + query if query else ''}")
        try:
            while True:
                frame = await recv(ws, timeout=2)
                if frame["type"] == "error":
                    assert frame["code"] == "replay_truncated", frame
                    since = frame["last_stream_id"]
                    break
                got.append(frame["data"]["stream_id"])
        except TimeoutError:  # caught up: nothing more to replay
            await ws.close()
            return got


# --- resuming --------------------------------------------------------------------------------------------------------
async def test_resume_after_disconnect_gets_what_was_missed_then_live(api: ApiServer, producer: EventProducer) -> None:
    ws = await open_feed(api)
    first = [producer.publish(event_message(i, A)) for i in range(5)]
    seen = [e["stream_id"] for e in await events(ws, 5)]
    assert seen == first
    await ws.close()
    missed = [producer.publish(event_message(i, B)) for i in range(10)]
    back = await open_feed(api, f"since={seen[-1]}")
    assert [e["stream_id"] for e in await events(back, 10)] == missed
    live = [producer.publish(event_message(i, C)) for i in range(5)]
    assert [e["stream_id"] for e in await events(back, 5)] == live
    await assert_silent(back)
    await back.close()


async def test_resume_while_events_keep_coming_has_no_gap_and_no_duplicate(api: ApiServer,
                                                                           producer: EventProducer) -> None:
    total = 400
    stop = threading.Event()

    def publish_steadily() -> None:
        for i in range(total):
            if stop.is_set():
                return
            producer.publish(event_message(i, address(i % 7 + 1), coin=("BTC", "ETH")[i % 2]))
            time.sleep(0.002)

    publisher = threading.Thread(target=publish_steadily)
    ws = await open_feed(api)
    publisher.start()
    try:
        received: list[str] = []
        for _ in range(4):  # read some, drop the connection, resume, while the publisher keeps going
            received += [e["stream_id"] for e in await events(ws, 40)]
            await ws.close()
            await asyncio.sleep(0.05)
            ws = await open_feed(api, f"since={received[-1]}")
        await asyncio.to_thread(publisher.join, 30)
        every = stream_ids(producer)
        received += [e["stream_id"] for e in await events(ws, len(every) - every.index(received[0]) - len(received))]
    finally:
        stop.set()
        publisher.join()
    await assert_silent(ws)
    await ws.close()
    assert received == every[every.index(received[0]):]
    assert len(set(received)) == len(received)


async def test_resume_respects_filters_and_the_replay_cap(api: ApiServer, producer: EventProducer) -> None:
    plan = [("BTC", A), ("ETH", B)] * 70
    sent = [producer.append(event_message(i, who, coin=coin)) for i, (coin, who) in enumerate(plan)]
    eth = await open_feed(api, "since=0&coin=ETH")
    # a replay stops after MAX_REPLAY stream entries and says where to go on
    first = [e["stream_id"] for e in await events(eth, MAX_REPLAY // 2)]
    assert first == [sid for sid, (coin, _) in zip(sent, plan, strict=True) if coin == "ETH"][:MAX_REPLAY // 2]
    notice = await recv(eth)
    assert notice["type"] == "error" and notice["code"] == "replay_truncated"
    assert notice["last_stream_id"] == sent[MAX_REPLAY - 1]
    assert await close_code(eth) == 1013
    rest = await resume_all(api, notice["last_stream_id"], "coin=ETH")
    assert first + rest == [sid for sid, (coin, _) in zip(sent, plan, strict=True) if coin == "ETH"]


async def test_resume_past_the_retained_stream_says_so(api: ApiServer, producer: EventProducer,
                                                       redis_url: str, keys: RedisKeys) -> None:
    short = EventProducer(redis_url, keys, maxlen=5)
    try:
        sent = [short.append(event_message(i, A)) for i in range(20)]
    finally:
        short.close()
    ws = await open_feed(api, f"since={sent[2]}")
    notice = await recv(ws)
    assert notice["type"] == "error" and notice["code"] == "resume_gap"
    assert [e["stream_id"] for e in await events(ws, 5)] == sent[-5:]
    await ws.close()
    # resuming from a retained id is gap-free: no notice
    ws = await open_feed(api, f"since={sent[-2]}")
    assert [e["stream_id"] for e in await events(ws, 1)] == sent[-1:]
    await ws.close()


# --- the process's own subscription ---------------------------------------------------------------------------------
async def test_a_lost_redis_subscription_catches_up_from_the_stream(api: ApiServer, producer: EventProducer,
                                                                    keys: RedisKeys) -> None:
    reconnects = metric(api, "hyperfollow_api_fanout_reconnects_total")
    ws = await open_feed(api)
    before = [producer.publish(event_message(i, A)) for i in range(3)]
    assert [e["stream_id"] for e in await events(ws, 3)] == before
    # events whose PUBLISH nobody received (as if sent while the subscription was down) ...
    unheard = [producer.append(event_message(i, B)) for i in range(5)]
    # ... then the server's subscription connection dies
    name = f"hyperfollow-api-feed:{keys.namespace}".rstrip(":")
    feed_ids = [c["id"] for c in producer.client.client_list()
                if c.get("name") == name and int(c.get("sub", 0)) > 0]
    assert len(feed_ids) == 1, "one Redis subscription per API process"
    producer.client.client_kill_filter(_id=feed_ids[0])
    assert [e["stream_id"] for e in await events(ws, 5)] == unheard
    wait_for(lambda: metric(api, "hyperfollow_api_fanout_reconnects_total") == reconnects + 1, what="reconnect")
    after = [producer.publish(event_message(i, C)) for i in range(3)]
    assert [e["stream_id"] for e in await events(ws, 3)] == after
    await assert_silent(ws)
    await ws.close()
