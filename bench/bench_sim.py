"""Simulator throughput: trades per second delivered over a real WebSocket to one client.

The simulator runs as its own process (`hyperfollow sim`, as in `make run`) asked for far more trades than it
can make, so it runs flat out; a client subscribed to every coin counts the trades it receives. Ours batches
every coin's trades of a tick into one message (up to 2000); the baseline sends one trade per message, the
naive way. Figures: trades/s received by the client (the point), trades/s the server emitted over the client's
whole session (connect and warm-up included), and the ratio. A third run uses the firehose mode (trades made
before serving, emitted at 100,000/s asked), where only formatting and sending remain on the emission path;
there the client itself is usually the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson
import websockets

from hyperfollow.bench.support import free_port

__all__ = ["run"]


async def _receive(ws_url: str, coins: list[str], warmup: float, seconds: float, resume_url: str
                   ) -> dict[str, float]:
    async with websockets.connect(ws_url, max_size=None, compression=None) as ws:
        await ws.recv()  # greeting
        for coin in coins:
            await ws.send(orjson.dumps({"method": "subscribe", "subscription": {"type": "trades", "coin": coin}}))
        async with httpx.AsyncClient() as client:     # the simulator starts paused: trades flow from now on
            (await client.post(resume_url)).raise_for_status()
        start = time.monotonic()
        counted = messages = 0
        measuring_since = None
        while True:
            now = time.monotonic()
            if measuring_since is None and now - start >= warmup:
                measuring_since, counted, messages = now, 0, 0
            if measuring_since is not None and now - measuring_since >= seconds:
                break
            raw = await ws.recv()
            message = orjson.loads(raw)
            if message.get("channel") == "trades":
                counted += len(message["data"])
                messages += 1
        elapsed = time.monotonic() - measuring_since
        return {"trades_per_s": counted / elapsed, "messages_per_s": messages / elapsed}


def _measure(max_batch: int, rate: float, seconds: float, traders: int, coins: int, pregenerate: int = 0
             ) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "HYPERFOLLOW_LOG_FORMAT": "json"}
    command = [sys.executable, "-m", "hyperfollow.core", "sim", "--port", str(port), "--traders", str(traders),
               "--coins", str(coins), "--rate", str(rate), "--weight-limit", "0", "--max-batch", str(max_batch),
               "--no-deflate", "--max-new-connections", "0", "--pregenerate", str(pregenerate), "--paused"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60 + pregenerate / 5000
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("simulator did not start")
            time.sleep(0.1)
        meta = httpx.post(f"{base}/info", json={"type": "meta"}).json()
        names = [c["name"] for c in meta["universe"]]
        before = httpx.get(f"{base}/_sim/stats").json()
        t0 = time.monotonic()
        received = asyncio.run(_receive(f"ws://127.0.0.1:{port}/ws", names, warmup=1.0, seconds=seconds,
                                        resume_url=f"{base}/_sim/resume"))
        after = httpx.get(f"{base}/_sim/stats").json()
        generated = (after["trades_emitted"] - before["trades_emitted"]) / (time.monotonic() - t0)
        return {"max_batch": max_batch, "pregenerated": pregenerate,
                "pending_left": after["pending_trades"], "received_trades_per_s": round(received["trades_per_s"]),
                "messages_per_s": round(received["messages_per_s"]),
                "server_emitted_trades_per_s_whole_session": round(generated),
                "server_skipped_behind": after["trades_skipped_behind"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    traders, coins = 5000, 20
    ours = _measure(max_batch=2000, rate=200_000, seconds=seconds, traders=traders, coins=coins)
    baseline = _measure(max_batch=1, rate=200_000, seconds=seconds, traders=traders, coins=coins)
    firehose_seconds = 1.0 if quick else 4.0
    firehose = _measure(max_batch=2000, rate=100_000, seconds=firehose_seconds, traders=traders, coins=coins,
                        pregenerate=int(100_000 * (firehose_seconds + 2)))
    return {
        "setup": f"{traders} traders, {coins} coins, asked for 200000 trades/s, one client on all coins, "
                 f"{seconds:g} s measured",
        "batched": ours,
        "baseline_one_trade_per_message": baseline,
        "ratio_received": round(ours["received_trades_per_s"] / max(1, baseline["received_trades_per_s"]), 2),
        "firehose_pregenerated_100k_per_s": firehose,
    }
