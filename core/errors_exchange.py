"""Typed errors of the exchange clients (REST `/info`, WebSocket) and of the weight budget.

Every error a worker loop can meet from the exchange is an :class:`ExchangeError`, so a loop catches one type,
counts it and carries on; none of them is a bare `ValueError`/`KeyError` leaking out of a parser.

=========================  ===========================================================================
error                      meaning (and what the client already did)
=========================  ===========================================================================
MalformedResponse          the answer was not JSON or not of the expected shape (not retried)
ExchangeRejected           4xx other than 429, e.g. 422 for a bad request body (not retried)
RateLimited                429 on every attempt (the budget was penalised and the client retried)
ExchangeUnavailable        5xx, timeouts or network errors on every attempt (retried with back-off)
MalformedMessage           a WebSocket frame or an item in it was not of the expected shape (skipped)
InvalidTrade               one trade of a `trades` frame is unusable (bad address, missing field)
WsLimitExceeded            a subscription would break the exchange's WebSocket limits
WsSubscribeTimeout         the server did not acknowledge a (un)subscription in time
BudgetTimeout              the weight budget could not grant the weight within the caller's timeout
=========================  ===========================================================================
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "BudgetTimeout",
    "ExchangeError",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "InvalidTrade",
    "MalformedMessage",
    "MalformedResponse",
    "RateLimited",
    "WsLimitExceeded",
    "WsSubscribeTimeout",
    "excerpt",
]

#: How much of an offending body an error carries (enough to see what came, never a whole account's fills).
EXCERPT_CHARS = 300


def excerpt(body: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short printable form of a body (bytes, text or parsed JSON), truncated with a marker."""
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body[: limit * 4]).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body
    else:
        try:
            text = orjson.dumps(body, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):
            text = repr(body)
    if len(text) > limit:
        return text[:limit] + f"...[{len(text) - limit} more chars]"
    return text


class ExchangeError(Exception):
    """Base of every error talking to the exchange. `request_type` is the `/info` type or WS channel."""

    def __init__(self, message: str, *, request_type: str = "") -> None:
        super().__init__(message)
        self.request_type = request_type


class MalformedResponse(ExchangeError):
    """The exchange answered with a body we cannot use: not JSON, or not the documented shape."""

    def __init__(self, request_type: str, body: Any, detail: str = "") -> None:
        self.body_excerpt = excerpt(body)
        self.detail = detail
        message = f"malformed {request_type!r} response"
        if detail:
            message += f": {detail}"
        super().__init__(f"{message}; body: {self.body_excerpt}", request_type=request_type)


class ExchangeRejected(ExchangeError):
    """The exchange refused the request itself (4xx other than 429); retrying the same request cannot help."""

    def __init__(self, request_type: str, status: int, body: Any) -> None:
        self.status = status
        self.body_excerpt = excerpt(body)
        super().__init__(f"{request_type!r} rejected with HTTP {status}: {self.body_excerpt}",
                         request_type=request_type)


class RateLimited(ExchangeError):
    """HTTP 429 on every attempt. `retry_after` is the server's last hint in seconds, if it gave one."""

    def __init__(self, request_type: str, attempts: int, retry_after: float | None = None) -> None:
        self.attempts = attempts
        self.retry_after = retry_after
        super().__init__(f"{request_type!r} rate limited (HTTP 429) on all {attempts} attempts",
                         request_type=request_type)


class ExchangeUnavailable(ExchangeError):
    """5xx answers, timeouts or network errors on every attempt."""

    def __init__(self, request_type: str, attempts: int, last_error: str) -> None:
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(f"{request_type!r} failed after {attempts} attempts: {last_error}",
                         request_type=request_type)


class MalformedMessage(ExchangeError):
    """A WebSocket frame (or one item in it) is not of the expected shape."""

    def __init__(self, channel: str, message: Any, detail: str = "") -> None:
        self.body_excerpt = excerpt(message)
        self.detail = detail
        super().__init__(f"malformed {channel or 'websocket'} message" + (f": {detail}" if detail else "")
                         + f"; message: {self.body_excerpt}", request_type=channel)


class InvalidTrade(MalformedMessage):
    """One trade of a `trades` frame is unusable; the caller counts it and keeps the others."""

    def __init__(self, message: Any, detail: str = "") -> None:
        super().__init__("trades", message, detail)


class WsLimitExceeded(ExchangeError):
    """Subscribing would exceed the exchange's WebSocket limits (subscriptions, connections, users)."""


class WsSubscribeTimeout(ExchangeError):
    """The server did not acknowledge a subscribe/unsubscribe within the timeout."""


class BudgetTimeout(ExchangeError):
    """The shared weight budget cannot grant the weight within the caller's timeout."""

    def __init__(self, group: str, weight: int, wait: float) -> None:
        self.group = group
        self.weight = weight
        self.wait = wait
        super().__init__(f"weight budget {group!r} cannot grant {weight} within the timeout "
                         f"(next slot in {wait:.1f} s)")
