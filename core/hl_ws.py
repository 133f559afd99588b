"""WebSocket client of the exchange (`websockets`): subscriptions kept alive across disconnects.

    async with WsClient(settings.websocket_url) as ws:
        await ws.subscribe_trades(["BTC", "ETH"])
        async for event in ws:                      # Trades | ChannelMessage | Reconnected
            if isinstance(event, Trades):
                for trade in event.trades: ...

What it takes care of:

- **Acks.** `subscribe`/`unsubscribe` return once the server's `subscriptionResponse` arrived
  (:class:`WsSubscribeTimeout` after `ack_timeout`; a subscription the server refuses is dropped).
- **Heartbeat.** `{"method": "ping"}` every `ping_interval` (50 s; the server closes a link it had nothing
  to send on for 60 s). A link that stays silent for `ping_interval + pong_timeout` is closed and replaced.
- **Reconnects.** A dropped link is reopened with exponential back-off and full jitter, every subscription
  is sent again and acknowledged, and a :class:`Reconnected` event tells the consumer that data was missed.
- **Limits (per IP, enforced here per client):** `max_subscriptions` (1000) in all, at most
  `subscriptions_per_connection` on one link (more links are opened, up to `max_connections` = 10), at most
  10 distinct users across user-specific subscriptions, `new_connections_per_minute` (30) and
  `messages_per_minute` (2000) sent — both as sliding windows the client waits on rather than break.
- **Bad frames** are counted (`stats.malformed_frames`, `stats.invalid_trades`) and skipped, never raised
  into the loop; the greeting text is ignored.

Events are delivered in order per connection through one bounded queue: a consumer that stops reading stalls
the reader (backpressure) instead of losing messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import websockets
from prometheus_client import Counter
from websockets.asyncio.client import ClientConnection, connect

from hyperfollow.core.errors_exchange import ExchangeError, MalformedMessage, WsLimitExceeded, WsSubscribeTimeout
from hyperfollow.core.hl_ws_protocol import (
    Ack,
    ChannelMessage,
    ErrorFrame,
    Greeting,
    Pong,
    RateWindow,
    Reconnected,
    Trades,
    ack_matches,
    classify_frame,
    ping_message,
    subscription_key,
    subscription_message,
)
from hyperfollow.core.logging import get_logger

__all__ = ["WsClient", "WsEvent", "WsStats", "WsSubscribeRejected"]

log = get_logger(__name__)

WsEvent = Trades | ChannelMessage | Reconnected

MESSAGES = Counter("hyperfollow_ws_messages_total", "WebSocket frames received, by channel", ["channel"])
MALFORMED = Counter("hyperfollow_ws_malformed_total", "WebSocket frames or trades skipped as malformed", ["kind"])
RECONNECTS = Counter("hyperfollow_ws_reconnects_total", "WebSocket links reopened after a drop")


class WsSubscribeRejected(ExchangeError):
    """The server answered a (un)subscription with an error frame."""


class _Disconnected(Exception):
    """The link went away while a request waited for its ack (the caller retries on the next link)."""


@dataclass
class WsStats:
    messages: int = 0
    trades: int = 0
    invalid_trades: int = 0
    malformed_frames: int = 0
    errors: int = 0
    connects: int = 0
    reconnects: int = 0
    pings: int = 0
    pongs: int = 0


@dataclass
class _Pending:
    method: str
    subscription: dict[str, Any]
    future: asyncio.Future[None]


class _Connection:
    """One link and the subscriptions it carries; `run()` keeps it open until closed."""

    def __init__(self, client: WsClient, index: int) -> None:
        self.client = client
        self.index = index
        self.subs: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()
        self.pending: list[_Pending] = []
        self.ready = asyncio.Event()
        self.ws: ClientConnection | None = None
        self.last_rx = time.monotonic()
        self.closed = False
        self.healthy = False  # the current/last link got as far as being fully subscribed
        self.task = asyncio.create_task(self.run(), name=f"hl-ws-{index}")

    # --- requests -------------------------------------------------------------------------------------------
    async def _send(self, payload: bytes) -> None:
        ws = self.ws
        if ws is None:
            raise _Disconnected
        await self.client._take_message_slot()
        try:
            await ws.send(payload.decode())
        except websockets.ConnectionClosed:
            raise _Disconnected from None

    async def _request(self, method: str, subscription: dict[str, Any], timeout: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = _Pending(method, subscription, future)
        self.pending.append(pending)
        try:
            await self._send(subscription_message(method, subscription))
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise WsSubscribeTimeout(f"no ack for {method} {subscription_key(subscription)} within {timeout} s",
                                     request_type=str(subscription.get("type", ""))) from None
        finally:
            with contextlib.suppress(ValueError):
                self.pending.remove(pending)

    async def add(self, key: str, subscription: dict[str, Any], timeout: float) -> None:
        self.subs[key] = subscription
        deadline = time.monotonic() + timeout
        try:
            while key not in self.acked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WsSubscribeTimeout(f"no link to subscribe {key} on within {timeout} s")
                if not self.ready.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.ready.wait(), remaining)
                    continue  # resubscription may have covered it
                try:
                    await self._request("subscribe", subscription, min(remaining, self.client.ack_timeout))
                except _Disconnected:
                    continue
                self.acked.add(key)
        except BaseException:
            self.subs.pop(key, None)
            raise

    async def remove(self, key: str, timeout: float) -> None:
        subscription = self.subs.pop(key, None)
        was_acked = key in self.acked
        self.acked.discard(key)
        if subscription is None or not was_acked or not self.ready.is_set():
            return  # never reached the server on this link, or the link is down (it will not be re-sent)
        with contextlib.suppress(_Disconnected):
            await self._request("unsubscribe", subscription, timeout)

    # --- the link ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        client = self.client
        attempt = 0
        # the last frame received on the last healthy link (None before the first one): anything the server sent
        # after it may have been lost with the link, also what was still queued server-side when it dropped
        down_since: float | None = None
        while not self.closed:
            await client._take_connection_slot()
            self.healthy = False
            try:
                async with connect(client.url, ping_interval=None, open_timeout=client.open_timeout,
                                   close_timeout=2, max_size=client.max_frame_bytes, max_queue=64) as ws:
                    self.ws = ws
                    self.last_rx = time.monotonic()
                    client.stats.connects += 1
                    await self._session(ws, down_since)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.WebSocketException, _Disconnected, WsSubscribeTimeout) as exc:
                log.info("websocket link lost", connection=self.index, error=f"{type(exc).__name__}: {exc}")
            except Exception:  # a bug must not silently end the link's task: log it and reconnect
                log.exception("websocket link failed unexpectedly", connection=self.index)
            finally:
                self._went_down()
            if self.closed:
                return
            healthy = self.healthy
            if healthy:
                down_since = self.last_rx
            client.stats.reconnects += 1
            RECONNECTS.inc()
            attempt = 0 if healthy else attempt + 1
            await asyncio.sleep(random.uniform(0, min(client.reconnect_cap, client.reconnect_base * (2 ** attempt))))

    async def _session(self, ws: ClientConnection, down_since: float | None) -> None:
        """Serve one link until it ends; `self.healthy` tells whether it got as far as being fully subscribed."""
        reader = asyncio.create_task(self._read(ws), name=f"hl-ws-{self.index}-reader")
        pinger: asyncio.Task[None] | None = None
        try:
            await self._resubscribe(reader)
            self.healthy = True
            self.ready.set()
            if down_since is not None:
                await self.client._queue.put(Reconnected(connection=self.index,
                                                         downtime=time.monotonic() - down_since,
                                                         subscriptions=len(self.acked)))
            pinger = asyncio.create_task(self._ping(ws), name=f"hl-ws-{self.index}-pinger")
            done, _ = await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raise what ended the link
        finally:
            for task in (reader, pinger):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _resubscribe(self, reader: asyncio.Task[None]) -> None:
        subs = dict(self.subs)
        if not subs:
            return
        requests = {key: asyncio.create_task(self._request("subscribe", sub, self.client.ack_timeout))
                    for key, sub in subs.items()}
        waiter = asyncio.gather(*requests.values(), return_exceptions=True)
        done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await waiter
            reader.result()
            raise _Disconnected
        for key, outcome in zip(requests, waiter.result(), strict=True):
            if outcome is None:
                self.acked.add(key)
            elif isinstance(outcome, WsSubscribeRejected):
                log.warning("subscription refused on resubscribe; dropped", subscription=key, error=str(outcome))
                self.subs.pop(key, None)
                self.client._forget(key)
            elif isinstance(outcome, BaseException):
                raise outcome

    async def _ping(self, ws: ClientConnection) -> None:
        client = self.client
        while True:
            await asyncio.sleep(client.ping_interval)
            if time.monotonic() - self.last_rx > client.ping_interval + client.pong_timeout:
                log.info("websocket link silent; replacing it", connection=self.index)
                await ws.close(code=1011, reason="no pong")
                return
            await self._send(ping_message())
            client.stats.pings += 1

    async def _read(self, ws: ClientConnection) -> None:
        client = self.client
        async for frame in ws:
            self.last_rx = time.monotonic()
            client.stats.messages += 1
            try:
                event = classify_frame(frame)
            except MalformedMessage as exc:
                client.stats.malformed_frames += 1
                MALFORMED.labels("frame").inc()
                log.info("malformed websocket frame skipped", connection=self.index, error=str(exc))
                continue
            if isinstance(event, Trades):
                MESSAGES.labels("trades").inc()
                client.stats.trades += len(event.trades)
                if event.invalid:
                    client.stats.invalid_trades += event.invalid
                    MALFORMED.labels("trade").inc(event.invalid)
                    log.info("invalid trades skipped", connection=self.index, count=event.invalid,
                             first_error=str(event.errors[0]))
                if event.trades:
                    await client._queue.put(event)
            elif isinstance(event, ChannelMessage):
                MESSAGES.labels(event.channel).inc()
                await client._queue.put(event)
            elif isinstance(event, Ack):
                MESSAGES.labels("subscriptionResponse").inc()
                self._resolve_ack(event)
            elif isinstance(event, Pong):
                MESSAGES.labels("pong").inc()
                client.stats.pongs += 1
            elif isinstance(event, ErrorFrame):
                MESSAGES.labels("error").inc()
                client.stats.errors += 1
                self._resolve_error(event)
            elif isinstance(event, Greeting):
                continue

    def _resolve_ack(self, ack: Ack) -> None:
        for pending in self.pending:
            if (pending.method == ack.method and not pending.future.done()
                    and ack_matches(pending.subscription, ack.subscription)):
                pending.future.set_result(None)
                return
        log.debug("unmatched subscription ack", ack=str(ack))

    def _resolve_error(self, error: ErrorFrame) -> None:
        """Fail the waiting request the error names (the server quotes the subscription in its text)."""
        text = error.message
        for pending in self.pending:
            values = [str(v) for v in pending.subscription.values()]
            if not pending.future.done() and values and all(v in text for v in values):
                pending.future.set_exception(WsSubscribeRejected(f"server refused {pending.method} "
                                                                 f"{subscription_key(pending.subscription)}: {text}"))
                return
        log.warning("websocket error frame", connection=self.index, error=text[:300])

    def _went_down(self) -> None:
        self.ws = None
        self.ready.clear()
        self.acked.clear()
        for pending in self.pending:
            if not pending.future.done():
                pending.future.set_exception(_Disconnected())
                pending.future.exception()  # mark retrieved: nobody may be waiting any more

    async def close(self) -> None:
        self.closed = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class WsClient:
    """Subscriptions to the exchange's WebSocket over as many links as the limits need (see module doc)."""

    def __init__(self, url: str, *, ping_interval: float = 50.0, pong_timeout: float | None = None,
                 ack_timeout: float = 10.0, open_timeout: float = 10.0, max_subscriptions: int = 1000,
                 subscriptions_per_connection: int = 1000, max_connections: int = 10, max_users: int = 10,
                 new_connections_per_minute: int = 30, messages_per_minute: int = 2000,
                 reconnect_base: float = 0.5, reconnect_cap: float = 30.0, queue_size: int = 10_000,
                 max_frame_bytes: int = 16 * 2**20) -> None:
        if ping_interval <= 0 or ack_timeout <= 0 or subscriptions_per_connection <= 0 or max_connections <= 0:
            raise ValueError("intervals, timeouts and limits must be positive")
        self.url = url
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout if pong_timeout is not None else min(10.0, ping_interval)
        self.ack_timeout = ack_timeout
        self.open_timeout = open_timeout
        self.max_subscriptions = max_subscriptions
        self.subscriptions_per_connection = subscriptions_per_connection
        self.max_connections = max_connections
        self.max_users = max_users
        self.reconnect_base = reconnect_base
        self.reconnect_cap = reconnect_cap
        self.max_frame_bytes = max_frame_bytes
        self.stats = WsStats()
        self._connect_window = RateWindow(new_connections_per_minute, 60.0)
        self._message_window = RateWindow(messages_per_minute, 60.0)
        self._connect_lock = asyncio.Lock()
        self._message_lock = asyncio.Lock()
        self._subscribing: dict[str, asyncio.Task[None]] = {}
        self._queue: asyncio.Queue[WsEvent | None] = asyncio.Queue(queue_size)
        self._connections: list[_Connection] = []
        self._where: dict[str, _Connection] = {}
        self._next_index = 0
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> WsClient:
        values: dict[str, Any] = {}
        if hasattr(settings, "ws_ping_interval"):
            values["ping_interval"] = settings.ws_ping_interval
        values.update(overrides)
        return cls(settings.websocket_url, **values)

    async def __aenter__(self) -> WsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- public API ---------------------------------------------------------------------------------------------
    @property
    def subscriptions(self) -> list[dict[str, Any]]:
        return [conn.subs[key] for key, conn in self._where.items() if key in conn.subs]

    @property
    def connections(self) -> int:
        """Links currently open and fully subscribed."""
        return sum(1 for conn in self._connections if conn.ready.is_set())

    async def subscribe(self, subscription: dict[str, Any]) -> None:
        """Subscribe (idempotent) and wait for the ack; kept across reconnects until unsubscribed."""
        if self._closed:
            raise RuntimeError("client is closed")
        key = subscription_key(subscription)
        running = self._subscribing.get(key)
        if running is None:
            conn = self._where.get(key)
            if conn is not None and key in conn.acked:
                return
            if conn is None:
                self._check_limits(subscription)
                conn = self._pick_connection()
                self._where[key] = conn
            running = asyncio.create_task(self._subscribe_on(conn, key, subscription))
            self._subscribing[key] = running
        await asyncio.shield(running)

    async def _subscribe_on(self, conn: _Connection, key: str, subscription: dict[str, Any]) -> None:
        try:
            await conn.add(key, subscription, self.open_timeout + self.ack_timeout)
        except BaseException:
            if key not in conn.subs:
                self._forget(key)
            raise
        finally:
            self._subscribing.pop(key, None)

    async def subscribe_trades(self, coins: Iterable[str]) -> None:
        await asyncio.gather(*(self.subscribe({"type": "trades", "coin": coin}) for coin in coins))

    async def unsubscribe(self, subscription: dict[str, Any]) -> None:
        """Stop a subscription (waits for the server's ack when the link is up)."""
        key = subscription_key(subscription)
        conn = self._where.pop(key, None)
        if conn is None:
            return
        await conn.remove(key, self.ack_timeout)
        if not conn.subs and not any(c is conn for c in self._where.values()):
            self._connections.remove(conn)
            await conn.close()

    async def events(self) -> AsyncIterator[WsEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def __aiter__(self) -> AsyncIterator[WsEvent]:
        return self.events()

    async def next_event(self, timeout: float | None = None) -> WsEvent:
        event = await asyncio.wait_for(self._queue.get(), timeout)
        if event is None:
            raise RuntimeError("client is closed")
        return event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(conn.close() for conn in self._connections))
        self._connections.clear()
        self._where.clear()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    # --- internals ------------------------------------------------------------------------------------------------
    def _check_limits(self, subscription: dict[str, Any]) -> None:
        if len(self._where) >= self.max_subscriptions:
            raise WsLimitExceeded(f"at most {self.max_subscriptions} subscriptions per IP")
        user = subscription.get("user")
        if user is not None:
            users = {str(conn.subs[k].get("user")).lower() for k, conn in self._where.items()
                     if k in conn.subs and conn.subs[k].get("user") is not None}
            if str(user).lower() not in users and len(users) >= self.max_users:
                raise WsLimitExceeded(f"at most {self.max_users} distinct users across user subscriptions")

    def _pick_connection(self) -> _Connection:
        load: dict[int, int] = {id(conn): 0 for conn in self._connections}
        for conn in self._where.values():
            load[id(conn)] = load.get(id(conn), 0) + 1
        open_ones = [conn for conn in self._connections if load[id(conn)] < self.subscriptions_per_connection]
        if open_ones:
            return min(open_ones, key=lambda conn: load[id(conn)])
        if len(self._connections) >= self.max_connections:
            raise WsLimitExceeded(f"{self.max_connections} connections x {self.subscriptions_per_connection} "
                                  "subscriptions are in use")
        conn = _Connection(self, self._next_index)
        self._next_index += 1
        self._connections.append(conn)
        return conn

    def _forget(self, key: str) -> None:
        self._where.pop(key, None)

    @staticmethod
    async def _take_slot(window: RateWindow, lock: asyncio.Lock) -> None:
        async with lock:
            while (delay := window.delay(time.monotonic())) > 0:
                await asyncio.sleep(delay)
            window.record(time.monotonic())

    async def _take_connection_slot(self) -> None:
        await self._take_slot(self._connect_window, self._connect_lock)

    async def _take_message_slot(self) -> None:
        await self._take_slot(self._message_window, self._message_lock)
