"""The exchange's WebSocket protocol as pure functions: frames in, typed events out; no sockets here.

Frames the server sends:

- the plain text `Websocket connection established.` right after connecting (not JSON; ignored);
- `{"channel": "subscriptionResponse", "data": {"method": "subscribe", "subscription": {...}}}` acks;
- `{"channel": "pong"}` answering our `{"method": "ping"}`;
- `{"channel": "error", "data": "..."}` when it refuses something;
- data channels, e.g. `{"channel": "trades", "data": [WsTrade, ...]}`.

:func:`classify_frame` turns one frame into one of the event types below, or raises
:class:`~hyperfollow.core.errors_exchange.MalformedMessage` for a frame that is not JSON or not of that
shape. Inside a `trades` frame a bad trade does not spoil the others: it is counted in `Trades.invalid`.

:class:`RateWindow` is the sliding-window limiter the client uses for the exchange's per-minute limits
(new connections, messages sent).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from hyperfollow.core.errors_exchange import InvalidTrade, MalformedMessage
from hyperfollow.core.hl_models import Trade, parse_trades

__all__ = [
    "GREETING",
    "Ack",
    "ChannelMessage",
    "ErrorFrame",
    "Greeting",
    "Pong",
    "RateWindow",
    "Reconnected",
    "Trades",
    "ack_matches",
    "classify_frame",
    "ping_message",
    "subscription_key",
    "subscription_message",
]

GREETING = "Websocket connection established."


@dataclass(frozen=True, slots=True)
class Greeting:
    text: str


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Ack:
    method: str  # "subscribe" | "unsubscribe"
    subscription: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    message: str


@dataclass(frozen=True, slots=True)
class Trades:
    """One `trades` frame: its good trades, and how many were unusable (counted, skipped)."""

    coin: str
    trades: list[Trade]
    invalid: int = 0
    errors: list[InvalidTrade] = field(default_factory=list, repr=False)


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """Any other data channel (`l2Book`, `userFills`, ...), passed on as parsed JSON."""

    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class Reconnected:
    """A connection came back and every subscription is acknowledged again; data in between was missed."""

    connection: int
    downtime: float  # seconds since the last frame received before the link went down
    subscriptions: int


Frame = Greeting | Pong | Ack | ErrorFrame | Trades | ChannelMessage


def subscription_key(subscription: dict[str, Any]) -> str:
    """A canonical, hashable name of a subscription (key order does not matter)."""
    return orjson.dumps(subscription, option=orjson.OPT_SORT_KEYS).decode()


def subscription_message(method: str, subscription: dict[str, Any]) -> bytes:
    return orjson.dumps({"method": method, "subscription": subscription})


def ping_message() -> bytes:
    return b'{"method":"ping"}'


def ack_matches(sent: dict[str, Any], acked: dict[str, Any]) -> bool:
    """Whether an ack's echoed subscription is the one we sent (the server may add defaulted keys)."""
    return all(acked.get(key) == value for key, value in sent.items())


def classify_frame(frame: str | bytes) -> Frame:
    """One frame from the server -> a typed event. Raises MalformedMessage for frames we cannot read."""
    text = frame.decode("utf-8", errors="replace") if isinstance(frame, bytes) else frame
    stripped = text.strip()
    if stripped == GREETING:
        return Greeting(stripped)
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise MalformedMessage("", text, "not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("channel"), str):
        raise MalformedMessage("", message, "expected an object with a 'channel'")
    channel = message["channel"]
    data = message.get("data")
    if channel == "trades":
        if not isinstance(data, list):
            raise MalformedMessage(channel, message, "trades data must be a list")
        trades, errors = parse_trades(data)
        return Trades(coin=trades[0].coin if trades else "", trades=trades, invalid=len(errors), errors=errors)
    if channel == "pong":
        return Pong()
    if channel == "subscriptionResponse":
        if not isinstance(data, dict) or not isinstance(data.get("subscription"), dict):
            raise MalformedMessage(channel, message, "expected data.subscription")
        method = data.get("method", "subscribe")
        return Ack(method=str(method), subscription=data["subscription"])
    if channel == "error":
        return ErrorFrame(data if isinstance(data, str) else orjson.dumps(data).decode())
    return ChannelMessage(channel=channel, data=data)


class RateWindow:
    """At most `limit` events in any `period` seconds (a sliding window of event times).

    `delay(now)` is how long to wait before the next event may happen; `record(now)` books one.
    """

    def __init__(self, limit: int, period: float = 60.0) -> None:
        if limit <= 0 or period <= 0:
            raise ValueError("limit and period must be positive")
        self.limit = limit
        self.period = period
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()

    def delay(self, now: float) -> float:
        self._expire(now)
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.period - now

    def record(self, now: float) -> None:
        self._expire(now)
        self._times.append(now)

    def __len__(self) -> int:
        return len(self._times)
