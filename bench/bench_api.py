"""API benchmark: leaderboard requests from the Redis cache vs uncached, and WebSocket fan-out latency.

1. Leaderboard: a realistic table (100k metric rows: ~33k traders x 3 windows) in a fresh database; the same
   request mix (every sort field, both orders, every window, 100 rows) against a server with the cache on
   (warmed) and one with it off (`HYPERFOLLOW_API_CACHE_TTL_S=0`, every request queries PostgreSQL). Requests per
   second and latency percentiles at a fixed concurrency, from a minimal keep-alive HTTP/1.1 client (so the
   load generator costs little of the shared CPU).
2. Fan-out: N WebSocket clients (1000) on one server; events published on Redis as the workers do, each
   stamped with its publish time; latency = receive time - publish time, for every (client, event) pair.
   Baseline: the seed's way, one Redis subscription per WebSocket client (a small server in this module).

Servers run in subprocesses so the load generator never shares their event loop. Both sides share one
2-core machine here: figures are for comparison within a run, not absolute capacity.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from itertools import cycle
from typing import Any

import httpx
import orjson
import psycopg
import redis

from hyperfollow.bench.support import free_port, scratch_database, servers

__all__ = ["run", "serve_seed_way"]

SORT_FIELDS = ["win_rate", "total_volume_usd", "account_age_days", "max_profit_usd", "max_loss_usd",
               "avg_risk_ratio", "max_drawdown", "realized_pnl_usd", "roi", "trade_count"]
WINDOWS = ["7d", "30d", "all"]


# --- plumbing -------------------------------------------------------------------------------------------------------
def _wait_http(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout} s")


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        _wait_http(ready_url, process=process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@contextlib.contextmanager
def _api_server(env: dict[str, str], **settings: str) -> Iterator[str]:
    port = free_port()
    env = {**env, "HYPERFOLLOW_API_HOST": "127.0.0.1", "HYPERFOLLOW_API_PORT": str(port),
           "HYPERFOLLOW_API_ACCESS_LOG": "false", "LOG_LEVEL": "WARNING", **settings}
    with _process([sys.executable, "-m", "hyperfollow.core", "api"], env, f"http://127.0.0.1:{port}/health"):
        yield f"127.0.0.1:{port}"


def _fill_metrics(database_url: str, traders: int) -> int:
    """`traders` traders with metrics in every window: deterministic pseudo-random values within the constraints."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO traders (address, slot) SELECT '0x' || lpad(to_hex(n), 40, '0'), n %% 16384 "
                     "FROM generate_series(1, %s) AS n", (traders,))
        conn.execute("""
            INSERT INTO leaderboard_metrics (trader_id, "window", account_age_days, total_volume_usd, win_rate,
                avg_risk_ratio, max_drawdown, max_profit_usd, max_loss_usd, realized_pnl_usd, roi, trade_count,
                win_count, low_sample)
            SELECT id, w, (h % 1000)::int, (h % 50000000) / 7.0, (h % 10007) / 10007.0, (h % 3001) / 1000.0,
                   (h % 9973) / 9973.0, (h % 1000003) / 3.0, (h % 999983) / 5.0, (h % 2000003) - 1000000,
                   ((h % 40009) - 10000) / 10000.0, tc, tc / 2, tc < 10
            FROM (SELECT id, w, abs(hashtextextended(id::text || w, 7)) AS h,
                         (abs(hashtextextended(w || id::text, 11)) % 500)::int AS tc
                  FROM traders, unnest(ARRAY['7d', '30d', 'all']) AS w) AS s""")
        conn.execute("ANALYZE leaderboard_metrics")
        conn.execute("ANALYZE traders")
        return int(conn.execute("SELECT count(*) FROM leaderboard_metrics").fetchone()[0])  # type: ignore[index]


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


# --- leaderboard load -------------------------------------------------------------------------------------------------
async def _http_worker(host: str, port: int, paths: Iterator[str], stop_at: float,
                       latencies: list[float], statuses: dict[int, int]) -> None:
    """One keep-alive connection sending requests back to back (a minimal HTTP/1.1 client: cheap to run)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            path = next(paths)
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(address: str, paths: list[str], seconds: float, concurrency: int) -> dict[str, Any]:
    host, port = address.split(":")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    rotation = cycle(paths)
    started = time.perf_counter()
    await asyncio.gather(*[_http_worker(host, int(port), rotation, started + seconds, latencies, statuses)
                           for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, **_percentiles(latencies)}


def _leaderboard_paths() -> list[str]:
    return [f"/api/v1/leaderboard?sort_by={field}&order={order}&window={window}&limit=100"
            for field in SORT_FIELDS for order in ("desc", "asc") for window in WINDOWS]


def _bench_leaderboard(env: dict[str, str], quick: bool) -> dict[str, Any]:
    seconds, concurrency = (3.0, 16) if quick else (10.0, 32)
    paths = _leaderboard_paths()
    results: dict[str, Any] = {"distinct_requests": len(paths), "concurrency": concurrency, "seconds": seconds}
    for label, ttl in (("uncached", "0"), ("cached", "300")):
        with _api_server(env, HYPERFOLLOW_API_CACHE_TTL_S=ttl,
                         HYPERFOLLOW_REDIS_NAMESPACE=f"hfbench{uuid.uuid4().hex[:6]}:") as address:
            asyncio.run(_load(address, paths, 1.0, 4))  # warm-up: pools, plans, and (cached) every page
            for path in paths:
                httpx.get(f"http://{address}{path}", timeout=30)
            results[label] = asyncio.run(_load(address, paths, seconds, concurrency))
    cached, uncached = results["cached"], results["uncached"]
    results["throughput_ratio"] = round(cached["requests_per_s"] / max(uncached["requests_per_s"], 0.1), 1)
    results["p99_ratio"] = round(uncached["p99_ms"] / max(cached["p99_ms"], 0.01), 1)
    return results


# --- WebSocket fan-out ------------------------------------------------------------------------------------------------
async def _fanout(ws_url: str, redis_url: str, channel: str, stream: str | None, clients: int, messages: int,
                  rate: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    received = [0] * clients
    sockets = []
    gate = asyncio.Semaphore(50)

    async def open_one() -> Any:
        async with gate:
            ws = await connect(ws_url, max_queue=None, open_timeout=60, ping_interval=None)
            await ws.recv()  # the connection message
            return ws

    started = time.perf_counter()
    sockets = list(await asyncio.gather(*[open_one() for _ in range(clients)]))
    connect_s = time.perf_counter() - started

    async def reader(index: int, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for frame in ws:
                now = time.time_ns()
                data = orjson.loads(frame)
                sent = data.get("data", {}).get("details", {}).get("bench_sent_ns")
                if sent:
                    latencies.append((now - sent) / 1e9)
                    received[index] += 1

    readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
    client = redis.asyncio.Redis.from_url(redis_url)
    await asyncio.sleep(0.5)
    for number in range(messages):
        now = time.time_ns()
        body = {"id": number + 1, "trader_id": 1, "trader_address": "0x" + "ab" * 20,
                "timestamp": "2026-01-01T00:00:00Z", "event_type": "position_opened",
                "details": {"coin": "BTC", "previous_size": 0, "current_size": 1, "size_change": 1,
                            "previous_position": {}, "current_position": {"coin": "BTC", "szi": "1"},
                            "observed_at": "2026-01-01T00:00:00Z", "bench_sent_ns": now}}
        if stream:
            entry = await client.xadd(stream, {"data": orjson.dumps(body)}, maxlen=10_000, approximate=True)
            body["stream_id"] = entry.decode()
        await client.publish(channel, orjson.dumps(body))
        await asyncio.sleep(max(0.0, 1 / rate - (time.time_ns() - now) / 1e9))
    deadline = time.perf_counter() + 30
    while sum(received) < clients * messages and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
    for ws in sockets:
        await ws.close()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await client.aclose()
    return {"clients": clients, "messages": messages, "publish_rate_per_s": rate,
            "delivered": sum(received), "expected": clients * messages, "connect_s": round(connect_s, 2),
            **_percentiles(latencies)}


def _bench_fanout(env: dict[str, str], redis_url: str, quick: bool) -> dict[str, Any]:
    from hyperfollow.core.keys import RedisKeys

    clients, messages, rate = (100, 30, 10.0) if quick else (1000, 100, 10.0)
    results: dict[str, Any] = {}
    namespace = f"hfbench{uuid.uuid4().hex[:6]}:"
    keys = RedisKeys(namespace)
    with _api_server(env, HYPERFOLLOW_REDIS_NAMESPACE=namespace,
                     HYPERFOLLOW_API_WS_QUEUE_SIZE=str(max(1024, messages * 2))) as address:
        results["ours"] = asyncio.run(_fanout(f"ws://{address}/ws/v1/updates", redis_url, keys.events_channel,
                                              keys.events_stream, clients, messages, rate))
    port = free_port()
    command = [sys.executable, "-m", "hyperfollow.bench.bench_api", "seed-way", str(port), redis_url,
               keys.events_channel]
    with _process(command, env, f"http://127.0.0.1:{port}/health"):
        results["seed_way"] = asyncio.run(_fanout(f"ws://127.0.0.1:{port}/ws", redis_url, keys.events_channel,
                                                  None, clients, messages, rate))
    with contextlib.suppress(redis.RedisError):
        redis.Redis.from_url(redis_url).delete(keys.events_stream)
    ours, seed = results["ours"], results["seed_way"]
    if ours.get("p99_ms") and seed.get("p99_ms"):
        results["p99_ratio"] = round(seed["p99_ms"] / ours["p99_ms"], 1)
    return results


def serve_seed_way(port: int, redis_url: str, channel: str) -> None:
    """The seed's fan-out, as a baseline: every WebSocket client opens its own Redis subscription."""
    import uvicorn
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    shared = Redis.from_url(redis_url, max_connections=5000)

    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def feed(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text('{"type":"connection","message":"Connected to real-time updates feed"}')
        pubsub = shared.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(channel)
        try:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    data = message["data"].decode()
                    await ws.send_text(f'{{"type":"trade_event","data":{data},"timestamp":"now"}}')
        except Exception:
            pass
        finally:
            await pubsub.aclose()

    app = Starlette(routes=[Route("/health", health), WebSocketRoute("/ws", feed)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws_per_message_deflate=False)


# --- entry point ------------------------------------------------------------------------------------------------------
def run(quick: bool = False) -> dict[str, Any]:
    database_server, redis_url = servers()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFOLLOW_API_")}
    traders = 3_334 if quick else 33_334
    with scratch_database(database_server) as database_url:
        rows = _fill_metrics(database_url, traders)
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, HYPERFOLLOW_LOG_FORMAT="json")
        leaderboard = _bench_leaderboard(env, quick)
        fanout = _bench_fanout(env, redis_url, quick)
    return {"leaderboard": {"metric_rows": rows, **leaderboard}, "ws_fanout": fanout}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "seed-way":
        serve_seed_way(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        print(orjson.dumps(run(quick="--quick" in sys.argv), option=orjson.OPT_INDENT_2).decode())
