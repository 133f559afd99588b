"""The FastAPI application: `create_app()` wires settings, PostgreSQL, Redis, the event fan-out and the routes.

`uvicorn --factory hyperfollow.api.app:create_app` works too (settings from the environment); the supported
entry point is `hyperfollow api`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from hyperfollow.api.cache import LeaderboardCache
from hyperfollow.api.fanout import Fanout
from hyperfollow.api.metrics import RequestMetricsMiddleware
from hyperfollow.api.routes_rest import rest_router
from hyperfollow.api.routes_web import STATIC_DIR, web_router
from hyperfollow.api.routes_ws import ws_router
from hyperfollow.api.settings import ApiSettings
from hyperfollow.api.state import AppState
from hyperfollow.core.db.engine import make_async_engine
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import get_logger
from hyperfollow.core.settings import load_settings

__all__ = ["create_app", "validation_message"]

log = get_logger(__name__)

DESCRIPTION = """Leaderboard, traders, position events and a live WebSocket feed (`/ws/v1/updates`).

WebSocket: first a `connection` message, then one `trade_event` per position change; optional query
parameters `trader`, `coin`, `event_type` (comma-separated) and `since` (a stream id, to resume without gaps).
"""

#: Clearer words than a regular expression for the pattern-checked parameters.
_PATTERN_HINTS = {
    "trader": "must be a numeric trader id or an address (0x + 40 hex digits)",
    "search": "must be an address or its first hex digits (e.g. 0x12ab)",
    "coin": "must be a perp coin name, e.g. BTC, kPEPE or xyz:TSLA",
}


def validation_message(errors: list[dict[str, Any]]) -> str:
    """One line naming each bad parameter and what is wrong with it."""
    parts = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body", "header")]
        name = ".".join(loc) or "request"
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "string_pattern_mismatch" and loc and loc[-1] in _PATTERN_HINTS:
            message = _PATTERN_HINTS[loc[-1]]
        parts.append(f"{name}: {message}")
    return "; ".join(parts)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        return JSONResponse({"detail": errors, "message": validation_message(errors)}, status_code=422)

    @app.exception_handler(DBAPIError)
    async def database_down(request: Request, exc: DBAPIError) -> Response:
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            log.warning("database unavailable", error=str(exc.orig)[:300], path=request.url.path)
            return JSONResponse({"detail": "database unavailable"}, status_code=503)
        raise exc

    @app.exception_handler(PoolTimeoutError)
    async def pool_exhausted(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return JSONResponse({"detail": "database busy: no connection available"}, status_code=503)

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> JSONResponse:
        log.warning("redis unavailable", error=str(exc)[:300], path=request.url.path)
        return JSONResponse({"detail": "redis unavailable"}, status_code=503)


def create_app(settings: ApiSettings | None = None, *, database_url: str | None = None,
               redis_url: str | None = None) -> FastAPI:
    """Build the app. URLs default to the settings', else the embedded servers' (started when needed)."""
    settings = settings or load_settings(ApiSettings)
    if database_url is None or redis_url is None:
        from hyperfollow.core.runtime import resolve_servers

        servers = resolve_servers(settings)
        database_url, redis_url = database_url or servers.database_url, redis_url or servers.redis_url
    keys = RedisKeys(settings.redis_namespace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_async_engine(database_url, pool_size=settings.db_pool_size,
                                   application_name="hyperfollow-api")
        redis = Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=5, health_check_interval=30)
        # its own connection pool: the subscription blocks a connection for good
        feed_redis = Redis.from_url(redis_url, socket_connect_timeout=3,
                                    client_name=f"hyperfollow-api-feed:{keys.namespace}".rstrip(":"))
        fanout = Fanout(feed_redis, keys, queue_size=settings.ws_queue_size)
        app.state.hf = AppState(settings=settings, keys=keys, engine=engine, redis=redis,
                                cache=LeaderboardCache(redis, keys, settings.cache_ttl_s), fanout=fanout)
        await fanout.start()
        log.info("api ready", namespace=keys.namespace or "(none)", cache_ttl_s=settings.cache_ttl_s,
                 ws_queue_size=settings.ws_queue_size)
        try:
            yield
        finally:
            await fanout.stop()
            await feed_redis.aclose()
            await redis.aclose()
            await engine.dispose()

    app = FastAPI(title="hyperfollow", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    _error_handlers(app)
    app.include_router(web_router())
    app.include_router(rest_router(settings))
    app.include_router(ws_router())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], allow_credentials=False)
    app.add_middleware(RequestMetricsMiddleware)
    return app
