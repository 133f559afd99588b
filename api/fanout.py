"""One Redis subscription per API process, fanned out to every WebSocket client through bounded queues.

The reader task subscribes to `RedisKeys.events_channel`, parses each message ONCE (validation, filter
attributes, the outgoing frame) and offers it to every subscriber whose filter matches. A subscriber whose
queue is full is dropped on the spot (its handler tells the client and closes), so a client that stops
reading never stalls the others and never grows memory without bound.

Resuming (`?since=<stream id>`) relies on the stream `RedisKeys.events_stream`, whose entries hold the message
JSON in the field `data` (see docs/api.md): a client is subscribed first (live messages queue up), then the
entries after `since` are replayed, then queued live messages whose stream id is not after the last replayed id
are skipped. The same seam protects the whole process when the Redis subscription itself is lost: after
re-subscribing, the entries after the last id seen are dispatched before the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from hyperfollow.api.filters import EventFilter, EventMeta, event_meta
from hyperfollow.api.messages import trade_event_frame
from hyperfollow.api.metrics import (
    FANOUT_RECONNECTS,
    FANOUT_SUBSCRIBED,
    WS_CLIENTS,
    WS_DROPPED,
    WS_EVENTS,
    WS_REPLAYED,
)
from hyperfollow.api.streams import StreamKey, format_stream_id, is_after, parse_stream_id
from hyperfollow.core.events import TradeEventMessage
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger

__all__ = ["STREAM_FIELD", "Fanout", "PreparedEvent", "ReplayResult", "Subscriber", "prepare_event"]

log = get_logger(__name__)

#: The field of a stream entry that holds the message JSON.
STREAM_FIELD = b"data"
_REPLAY_BATCH = 500
_POLL_S = 5.0
_PING_AFTER_S = 15.0
_DEAD_AFTER_S = 45.0


class PreparedEvent(NamedTuple):
    key: StreamKey | None
    meta: EventMeta
    frame: str


def prepare_event(raw: bytes | str, stream_id: str | None = None) -> PreparedEvent:
    """Validate one `TradeEventMessage` JSON and build its frame; `stream_id` overrides the message's own.

    Raises ValueError (pydantic's ValidationError included) on a malformed message.
    """
    obj = orjson.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("an event message must be a JSON object")
    TradeEventMessage.model_validate(obj)
    if stream_id is not None and obj.get("stream_id") != stream_id:
        obj["stream_id"] = stream_id
        data = orjson.dumps(obj).decode()
    else:
        data = raw.decode() if isinstance(raw, bytes) else raw
    sid = obj.get("stream_id")
    key = parse_stream_id(sid) if isinstance(sid, str) and sid else None
    return PreparedEvent(key, event_meta(obj), trade_event_frame(data))


async def _let_senders_run() -> None:
    """Yield to the event loop after each dispatched event.

    Messages already buffered on the Redis connection (a worker publishes a batch's events in one script call)
    are read without suspending, so without this the clients' sender tasks would not run until the whole burst
    was queued, and a burst longer than the queue would drop clients that read along perfectly well. With it, a
    full queue means what it should: the client's socket has fallen that far behind."""
    await asyncio.sleep(0)


class Subscriber:
    """One WebSocket client's view of the feed: its filter, its bounded queue, its resume floor."""

    __slots__ = ("dropped", "filter", "floor", "last_sent", "queue")

    def __init__(self, event_filter: EventFilter, queue_size: int) -> None:
        self.filter = event_filter
        self.queue: asyncio.Queue[PreparedEvent] = asyncio.Queue(queue_size)
        self.dropped = asyncio.Event()
        #: Queued messages with a stream id not after this one were already replayed.
        self.floor: StreamKey | None = None
        self.last_sent: StreamKey | None = None

    def offer(self, event: PreparedEvent) -> bool:
        """Queue `event` if the filter wants it; False when the queue is full (the client is too slow)."""
        if not self.filter.matches(event.meta):
            return True
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def wants(self, event: PreparedEvent) -> bool:
        return is_after(event.key, self.floor)


@dataclass
class ReplayResult:
    replayed: int
    last: StreamKey
    truncated: bool


class Fanout:
    def __init__(self, redis: Redis, keys: RedisKeys, *, queue_size: int = 1024) -> None:
        self._redis = redis
        self._keys = keys
        self._queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pubsub: Any = None
        self._closing = False
        #: Highest stream id dispatched (the catch-up point after a lost subscription).
        self._last_key: StreamKey | None = None
        #: After a catch-up, live messages up to here were already dispatched from the stream.
        self._floor: StreamKey | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fanout")

    async def stop(self) -> None:
        """Stop the reader. redis-py can swallow a cancellation that lands inside a read with a timeout, so the
        loops also watch `_closing`, and the connection is closed under a read that does not return."""
        self._closing = True
        task = self._task
        if task is not None:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=1.0)
            if pending and self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.aclose()
                task.cancel()
                _, pending = await asyncio.wait({task}, timeout=_POLL_S + 1.0)
            if pending:
                log.warning("event feed reader did not stop in time")
            elif not task.cancelled() and task.exception() is not None:
                log.warning("event feed reader ended with an error", error=repr(task.exception()))
        self._ready.clear()
        FANOUT_SUBSCRIBED.set(0)

    @property
    def subscribed(self) -> bool:
        return self._ready.is_set()

    async def wait_subscribed(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- subscribers -------------------------------------------------------------------------------------------
    def subscribe(self, event_filter: EventFilter) -> Subscriber:
        subscriber = Subscriber(event_filter, self._queue_size)
        self._subscribers.add(subscriber)
        WS_CLIENTS.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        WS_CLIENTS.set(len(self._subscribers))

    @property
    def client_count(self) -> int:
        return len(self._subscribers)

    # --- the shared subscription ------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = 0.1
        first = True
        while not self._closing:
            pubsub = self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._keys.events_channel)
                if self._last_key is None:
                    self._last_key = await self._stream_tail()
                elif not first:
                    await self._catch_up()
                self._ready.set()
                FANOUT_SUBSCRIBED.set(1)
                if not first:
                    FANOUT_RECONNECTS.inc()
                    log.info("event subscription restored", channel=self._keys.events_channel)
                first, delay = False, 0.1
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis errors above all; anything else must not end the feed either
                if self._closing:
                    return
                self._ready.clear()
                FANOUT_SUBSCRIBED.set(0)
                if isinstance(exc, RedisError | OSError):
                    log.warning("event subscription lost; retrying", error=str(exc), retry_in_s=delay)
                else:
                    log.exception("event feed failed; restarting it", retry_in_s=delay)
                first = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _listen(self, pubsub: Any) -> None:
        """Dispatch messages until the connection fails; a silent connection is probed with PING, and one that
        stays silent is treated as lost (a half-open TCP connection would otherwise wait forever)."""
        loop = asyncio.get_running_loop()
        last_traffic = loop.time()
        pinged = False
        while not self._closing:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_S)
            now = loop.time()
            if message is not None:
                last_traffic, pinged = now, False
                if message.get("type") == "message":
                    self._on_raw(message["data"])
                    await _let_senders_run()
                continue
            silent = now - last_traffic
            if silent > _DEAD_AFTER_S:
                raise ConnectionError(f"no answer from Redis for {silent:.0f} s on the event subscription")
            if silent > _PING_AFTER_S and not pinged:
                await pubsub.ping()
                pinged = True

    async def _stream_tail(self) -> StreamKey:
        entries = await self._redis.xrevrange(self._keys.events_stream, count=1)
        return parse_stream_id(entries[0][0]) if entries else (0, 0)

    async def _catch_up(self) -> None:
        """Dispatch the stream entries published while the subscription was down."""
        assert self._last_key is not None
        cursor, count = self._last_key, 0
        while True:
            batch = await self._redis.xrange(self._keys.events_stream, min="(" + format_stream_id(cursor),
                                             max="+", count=_REPLAY_BATCH)
            for entry_id, fields in batch:
                cursor = parse_stream_id(entry_id)
                event = self._prepare(fields.get(STREAM_FIELD), entry_id)
                if event is not None:
                    self._dispatch(event)
                    await _let_senders_run()
                    count += 1
            if len(batch) < _REPLAY_BATCH:
                break
        self._floor = cursor
        if count:
            log.info("caught up from the event stream", entries=count)

    def _prepare(self, raw: Any, stream_id: bytes | str | None = None) -> PreparedEvent | None:
        try:
            sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
            return prepare_event(raw, sid)
        except (ValueError, ValidationError, TypeError, orjson.JSONDecodeError) as exc:
            WS_EVENTS.labels("malformed").inc()
            shown = raw[:200] if isinstance(raw, bytes | str) else type(raw).__name__
            log.warning("malformed event message skipped", error=str(exc)[:300], message=str(shown))
            return None

    def _on_raw(self, raw: bytes) -> None:
        event = self._prepare(raw)
        if event is not None:
            self._dispatch(event)

    def _dispatch(self, event: PreparedEvent) -> None:
        if event.key is not None:
            if self._floor is not None and event.key <= self._floor:
                WS_EVENTS.labels("duplicate").inc()
                return
            if self._last_key is None or event.key > self._last_key:
                self._last_key = event.key
        WS_EVENTS.labels("dispatched").inc()
        slow = [subscriber for subscriber in self._subscribers if not subscriber.offer(event)]
        for subscriber in slow:
            self._subscribers.discard(subscriber)
            subscriber.dropped.set()
            WS_DROPPED.labels("slow").inc()
        if slow:
            WS_CLIENTS.set(len(self._subscribers))

    # --- resuming one client -----------------------------------------------------------------------------------
    async def replay(self, subscriber: Subscriber, since: StreamKey, send: Callable[[str], Awaitable[None]],
                     limit: int) -> ReplayResult:
        """Send `subscriber` the stream entries after `since` that match its filter, then set its floor.

        The subscriber must already be subscribed (its queue collects live messages meanwhile), and the
        process's subscription must be up, so nothing published during the replay is missed.
        """
        cursor, scanned, truncated = since, 0, False
        while not subscriber.dropped.is_set():
            want = min(_REPLAY_BATCH, limit - scanned)
            if want <= 0:
                truncated = True
                break
            batch = await self._redis.xrange(self._keys.events_stream, min="(" + format_stream_id(cursor),
                                             max="+", count=want)
            for entry_id, fields in batch:
                cursor = parse_stream_id(entry_id)
                scanned += 1
                event = self._prepare(fields.get(STREAM_FIELD), entry_id)
                if event is not None and subscriber.filter.matches(event.meta):
                    await send(event.frame)
                    subscriber.last_sent = cursor
                    WS_REPLAYED.inc()
            if len(batch) < want:
                break
        if truncated:
            # more entries exist than we replay: is the limit exactly at the end of the stream?
            rest = await self._redis.xrange(self._keys.events_stream, min="(" + format_stream_id(cursor),
                                            max="+", count=1)
            truncated = bool(rest)
        subscriber.floor = cursor
        return ReplayResult(replayed=scanned, last=cursor, truncated=truncated)

    async def trimmed_after(self, since: StreamKey) -> bool:
        """True when entries after `since` may have been trimmed from the bounded stream already."""
        if since == (0, 0):
            return False
        try:
            info = await self._redis.xinfo_stream(self._keys.events_stream)
        except RedisError:  # no stream yet
            return False
        first = info.get("first-entry")
        # Redis >= 7 counts every entry ever added: were any trimmed at all?
        if "entries-added" in info and int(info["entries-added"] or 0) <= int(info.get("length", 0) or 0):
            return False
        # Redis < 7 (the embedded server is 6.2) cannot tell: a `since` older than the first retained entry
        # may have had successors that were trimmed, so say so rather than risk a silent gap
        if not first:
            return True
        return parse_stream_id(first[0]) > since
