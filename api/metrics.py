"""Prometheus metrics of the API process, and the ASGI middleware that times HTTP requests by route.

Labels use the route template (`/traders/{trader}/events`), never the raw path, so cardinality stays bounded.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CACHE_LOOKUPS",
    "FANOUT_RECONNECTS",
    "FANOUT_SUBSCRIBED",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "WS_CLIENTS",
    "WS_DROPPED",
    "WS_EVENTS",
    "WS_FRAMES_SENT",
    "WS_REPLAYED",
    "RequestMetricsMiddleware",
]

HTTP_REQUESTS = Counter("hyperfollow_api_http_requests_total", "HTTP requests answered",
                        ["method", "route", "status"])
HTTP_LATENCY = Histogram("hyperfollow_api_http_request_duration_seconds", "HTTP request handling time", ["route"],
                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
CACHE_LOOKUPS = Counter("hyperfollow_api_leaderboard_cache_total", "leaderboard cache lookups",
                        ["result"])  # hit, miss, stale (older generation), error (Redis unreachable)
WS_CLIENTS = Gauge("hyperfollow_api_ws_clients", "WebSocket clients connected to this process")
WS_DROPPED = Counter("hyperfollow_api_ws_clients_dropped_total", "WebSocket clients dropped", ["reason"])
WS_EVENTS = Counter("hyperfollow_api_ws_events_total", "event messages received from Redis",
                    ["result"])  # dispatched, malformed, duplicate (already replayed after a reconnect)
WS_FRAMES_SENT = Counter("hyperfollow_api_ws_frames_sent_total", "trade_event frames sent to clients")
WS_REPLAYED = Counter("hyperfollow_api_ws_replayed_total", "stream entries replayed to resuming clients")
FANOUT_SUBSCRIBED = Gauge("hyperfollow_api_fanout_subscribed", "1 while the Redis event subscription is up")
FANOUT_RECONNECTS = Counter("hyperfollow_api_fanout_reconnects_total", "Redis event subscription re-established")


class RequestMetricsMiddleware:
    """Counts and times HTTP requests (WebSocket connections have their own metrics)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            HTTP_LATENCY.labels(template).observe(time.perf_counter() - started)
