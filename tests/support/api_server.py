"""A real `hyperfollow api` server in a subprocess, and a way to publish events as the tracking workers do.

`EventProducer.publish` uses the workers' producer (workers/publish.py), which does what the contract in
docs/api.md says: XADD the message JSON to the events stream in the field `data`, then PUBLISH the same JSON
with `stream_id` set to the entry id, in one Lua script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from hyperfollow.core.keys import RedisKeys
from hyperfollow.workers.publish import EventPublisher

from . import free_port, wait_for

__all__ = ["ApiServer", "EventProducer", "address", "event_message"]

_ids = count(1)


def address(n: int) -> str:
    """A deterministic valid address for test trader number `n`."""
    return "0x" + f"{n:040x}"


def event_message(trader_id: int, trader_address: str, *, coin: str = "BTC", event_type: str = "position_opened",
                  event_id: int | None = None, size: float = 1.0, **extra_details: Any) -> dict[str, Any]:
    """A `TradeEventMessage` as the producer publishes it (before the stream id is known)."""
    now = datetime.now(UTC).isoformat()
    return {
        "id": event_id if event_id is not None else next(_ids),
        "trader_id": trader_id,
        "trader_address": trader_address,
        "timestamp": now,
        "event_type": event_type,
        "details": {"coin": coin, "previous_size": 0.0, "current_size": size, "size_change": size,
                    "previous_position": {}, "current_position": {"coin": coin, "szi": str(size)},
                    "observed_at": now, **extra_details},
    }


class EventProducer:
    """Publishes events with the tracking workers' producer (workers/publish.py: stream, then the channel)."""

    def __init__(self, redis_url: str, keys: RedisKeys, maxlen: int = 100_000) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.keys = keys
        self.maxlen = maxlen
        self.publisher = EventPublisher(self.client, keys, maxlen=maxlen, approximate=False)

    def append(self, message: dict[str, Any]) -> str:
        """Only the stream (as if the publish was missed by everyone)."""
        entry = self.client.xadd(self.keys.events_stream, {"data": orjson.dumps(message)}, maxlen=self.maxlen,
                                 approximate=False)
        return entry.decode()

    def publish(self, message: dict[str, Any]) -> str:
        [stream_id] = self.publish_batch([message])
        return stream_id

    def publish_batch(self, messages: list[dict[str, Any]]) -> list[str]:
        """In one script call, as a worker publishes a batch's events: they reach subscribers back to back."""
        stream_ids = self.publisher.publish(messages)
        for message, stream_id in zip(messages, stream_ids, strict=True):
            assert stream_id is not None, f"event {message['id']} was published before"
        return [str(stream_id) for stream_id in stream_ids]

    def close(self) -> None:
        self.client.close()


class ApiServer:
    """`hyperfollow api` on a free port; `stop()` sends SIGTERM and waits (SIGKILL after 15 s)."""

    def __init__(self, env: dict[str, str], log_path: Path, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/v1/updates"
        self.env = {**env, "HYPERFOLLOW_API_HOST": "127.0.0.1", "HYPERFOLLOW_API_PORT": str(self.port),
                    "HYPERFOLLOW_API_ACCESS_LOG": "false", **settings}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0, healthy: bool = True) -> ApiServer:
        """Start and wait until /health says healthy with the feed subscribed (or, with `healthy=False`, until
        the server answers at all: for servers started against an unreachable database or Redis)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "hyperfollow.core", "api"], env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"api exited with {self.process.returncode}:\n{self.logs()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/health", timeout=1.0)
            except httpx.HTTPError:
                return False
            return not healthy or (answer.status_code == 200 and answer.json().get("feed") == "subscribed")

        wait_for(ready, timeout=timeout, step=0.1, what="api server healthy")
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(timeout=5)

    def __enter__(self) -> ApiServer:
        return self if self.process is not None else self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
