"""Async client of the exchange's `/info` endpoint (httpx), within the shared weight budget.

Each attempt first takes the request's weight from the budget (:func:`~hyperfollow.core.weights.info_weight`)
and, once the answer is in, charges the per-item extra weight (`userFills`: 1 per 20 fills). Then:

=================  ==========================================================================================
answer             what happens
=================  ==========================================================================================
200 + good body    parsed into the typed model; a 429 streak of the group ends
200 + bad body     :class:`MalformedResponse` (request type + truncated body); not retried
429                the budget group backs off (doubling, honouring Retry-After); retried after it
5xx, timeout,      retried after a jittered exponential back-off; :class:`ExchangeUnavailable` when
network error      out of attempts
other 4xx          :class:`ExchangeRejected`; not retried
=================  ==========================================================================================

Without a budget (tests, one-off tools) the client sleeps the 429 back-off itself. Request bodies hold only
public data (addresses, coin names); logs carry the request type, status and attempt, never a body.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import orjson
from prometheus_client import Counter, Histogram

from hyperfollow.core.budget import WeightBudget
from hyperfollow.core.errors_exchange import (
    ExchangeRejected,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from hyperfollow.core.hl_models import (
    ClearinghouseState,
    Fill,
    Meta,
    Portfolio,
    Trade,
    parse_all_mids,
    parse_clearinghouse_state,
    parse_fills,
    parse_meta,
    parse_portfolio,
    parse_recent_trades,
)
from hyperfollow.core.logging import get_logger
from hyperfollow.core.settings import Settings
from hyperfollow.core.weights import extra_weight, info_weight

__all__ = ["InfoClient", "backoff_delay", "parse_retry_after"]

log = get_logger(__name__)
T = TypeVar("T")

REQUESTS = Counter("hyperfollow_exchange_requests_total", "/info requests by type and outcome",
                   ["type", "outcome"])
LATENCY = Histogram("hyperfollow_exchange_request_seconds", "/info request latency (one attempt)", ["type"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


def backoff_delay(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, base * 2^attempt)] (attempt counts from 0)."""
    return rng() * min(cap, base * (2 ** attempt))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class InfoClient:
    """`/info` reads. `url` is the full endpoint (`HYPERLIQUID_API_URL`, e.g. https://api.hyperliquid.xyz/info).

    Use as `async with InfoClient(url, budget=budget) as client: state = await client.clearinghouse_state(a)`.
    """

    def __init__(self, url: str, *, budget: WeightBudget | None = None, timeout: float = 10.0,
                 attempts: int = 5, backoff_base: float = 0.25, backoff_cap: float = 8.0,
                 penalty_without_budget: float = 2.0, http: httpx.AsyncClient | None = None) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url = url
        self.budget = budget
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.penalty_without_budget = penalty_without_budget
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), headers={"Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    @classmethod
    def from_settings(cls, settings: Settings, budget: WeightBudget | None = None, **overrides: Any) -> InfoClient:
        values: dict[str, Any] = {"budget": budget}
        if hasattr(settings, "exchange_timeout"):
            values["timeout"] = settings.exchange_timeout  # type: ignore[attr-defined]
            values["attempts"] = settings.exchange_attempts  # type: ignore[attr-defined]
        values.update(overrides)
        return cls(settings.hyperliquid_api_url, **values)

    async def __aenter__(self) -> InfoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # --- the requests ------------------------------------------------------------------------------------
    async def meta(self, dex: str = "") -> Meta:
        body: dict[str, Any] = {"type": "meta"}
        if dex:
            body["dex"] = dex
        return await self.request(body, parse_meta)

    async def clearinghouse_state(self, user: str, dex: str = "") -> ClearinghouseState:
        return await self.request({"type": "clearinghouseState", "user": user, "dex": dex},
                                  parse_clearinghouse_state)

    async def user_fills(self, user: str, aggregate_by_time: bool = False) -> list[Fill]:
        body: dict[str, Any] = {"type": "userFills", "user": user}
        if aggregate_by_time:
            body["aggregateByTime"] = True
        return await self.request(body, lambda raw: parse_fills(raw, "userFills"), items=len)

    async def user_fills_by_time(self, user: str, start_time: int, end_time: int | None = None,
                                 aggregate_by_time: bool = False) -> list[Fill]:
        body: dict[str, Any] = {"type": "userFillsByTime", "user": user, "startTime": start_time}
        if end_time is not None:
            body["endTime"] = end_time
        if aggregate_by_time:
            body["aggregateByTime"] = True
        return await self.request(body, lambda raw: parse_fills(raw, "userFillsByTime"), items=len)

    async def recent_trades(self, coin: str) -> list[Trade]:
        """The coin's latest trades on the tape, newest first (how many, the exchange does not document)."""
        trades, invalid = await self.request({"type": "recentTrades", "coin": coin}, parse_recent_trades,
                                             items=lambda answer: len(answer[0]) + len(answer[1]))
        if invalid:
            log.info("invalid trades skipped in a recentTrades answer", coin=coin, count=len(invalid),
                     first_error=str(invalid[0]))
        return trades

    async def portfolio(self, user: str) -> Portfolio:
        return await self.request({"type": "portfolio", "user": user}, parse_portfolio)

    async def all_mids(self, dex: str = "") -> dict[str, Decimal]:
        body: dict[str, Any] = {"type": "allMids"}
        if dex:
            body["dex"] = dex
        return await self.request(body, parse_all_mids)

    # --- the machinery -----------------------------------------------------------------------------------
    async def request(self, body: dict[str, Any], parse: Callable[[Any], T],
                      items: Callable[[T], int] | None = None) -> T:
        """POST `body` with budget, retries and typed errors; return `parse(json)`.

        `items(result)` counts the items an answer holds, for the per-item extra weight.
        """
        request_type = str(body["type"])
        payload = orjson.dumps(body)
        last_error = ""
        retry_after: float | None = None
        limited = False
        for attempt in range(self.attempts):
            if self.budget is not None:
                await self.budget.acquire(info_weight(request_type))
            started = time.perf_counter()
            try:
                response = await self._http.post(self.url, content=payload)
            except httpx.RequestError as exc:  # timeouts, refused, reset, protocol and decoding errors
                LATENCY.labels(request_type).observe(time.perf_counter() - started)
                REQUESTS.labels(request_type, "network_error").inc()
                last_error, limited = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, False
                await self._retry_pause(request_type, attempt, last_error)
                continue
            LATENCY.labels(request_type).observe(time.perf_counter() - started)
            status = response.status_code
            if status == 429:
                REQUESTS.labels(request_type, "rate_limited").inc()
                limited = True
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                backoff = await self._penalize(retry_after, last_attempt=attempt + 1 >= self.attempts)
                log.warning("exchange rate limit (429)", request_type=request_type, attempt=attempt + 1,
                            backoff_seconds=round(backoff, 3), retry_after=retry_after)
                continue
            if status >= 500:
                REQUESTS.labels(request_type, "server_error").inc()
                last_error, limited = f"HTTP {status}", False
                await self._retry_pause(request_type, attempt, last_error)
                continue
            if status >= 400:
                REQUESTS.labels(request_type, "rejected").inc()
                raise ExchangeRejected(request_type, status, response.content)
            result = self._parse(request_type, response.content, parse)
            if self.budget is not None:
                await self.budget.record_success()
                if items is not None:
                    await self.budget.charge(extra_weight(request_type, items(result)))
            REQUESTS.labels(request_type, "ok").inc()
            return result
        if limited:
            raise RateLimited(request_type, self.attempts, retry_after)
        raise ExchangeUnavailable(request_type, self.attempts, last_error)

    def _parse(self, request_type: str, content: bytes, parse: Callable[[Any], T]) -> T:
        try:
            raw = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            REQUESTS.labels(request_type, "malformed").inc()
            raise MalformedResponse(request_type, content, f"not JSON ({exc})") from None
        try:
            return parse(raw)
        except MalformedResponse:
            REQUESTS.labels(request_type, "malformed").inc()
            raise

    async def _penalize(self, retry_after: float | None, last_attempt: bool) -> float:
        if self.budget is not None:  # the next acquire() waits out the group's back-off
            return await self.budget.penalize(retry_after)
        backoff = max(self.penalty_without_budget, retry_after or 0.0)
        if not last_attempt:
            await asyncio.sleep(backoff)
        return backoff

    async def _retry_pause(self, request_type: str, attempt: int, error: str) -> None:
        if attempt + 1 >= self.attempts:
            return
        delay = backoff_delay(attempt, self.backoff_base, self.backoff_cap)
        log.info("retrying exchange request", request_type=request_type, attempt=attempt + 1, error=error,
                 delay_seconds=round(delay, 3))
        await asyncio.sleep(delay)
