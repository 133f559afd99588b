"""The fan-out's own subscription against a real Redis, in-process: an idle subscription is probed with PING and
kept (not torn down and rebuilt), and events still flow after the quiet period."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis
from redis.asyncio import Redis
from support.api_server import address, event_message

from hyperfollow.api import fanout as fanout_module
from hyperfollow.api.fanout import Fanout
from hyperfollow.api.filters import EventFilter
from hyperfollow.api.metrics import FANOUT_RECONNECTS
from hyperfollow.core.keys import RedisKeys


async def test_an_idle_subscription_is_probed_not_rebuilt(redis_url: str, keys: RedisKeys, redis_client: redis.Redis,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout_module, "_POLL_S", 0.1)
    monkeypatch.setattr(fanout_module, "_PING_AFTER_S", 0.3)
    monkeypatch.setattr(fanout_module, "_DEAD_AFTER_S", 1.0)
    client = Redis.from_url(redis_url)
    fanout = Fanout(client, keys, queue_size=10)
    reconnects = FANOUT_RECONNECTS._value.get()
    await fanout.start()
    try:
        assert await fanout.wait_subscribed(5)
        subscriber = fanout.subscribe(EventFilter())
        await asyncio.sleep(2.5)  # several ping rounds; each pong proves the connection alive
        assert fanout.subscribed and FANOUT_RECONNECTS._value.get() == reconnects
        entry = redis_client.xadd(keys.events_stream, {"data": orjson.dumps(event_message(1, address(1)))})
        redis_client.publish(keys.events_channel, orjson.dumps({**event_message(1, address(1)),
                                                                "stream_id": entry.decode()}))
        event = await asyncio.wait_for(subscriber.queue.get(), 5)
        assert orjson.loads(event.frame)["data"]["stream_id"] == entry.decode()
        assert fanout.client_count == 1
        fanout.unsubscribe(subscriber)
        assert fanout.client_count == 0
    finally:
        await fanout.stop()
        await client.aclose()
    assert not fanout.subscribed
