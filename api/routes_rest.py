"""The REST endpoints (the seed's table, plus trader detail). Read-only endpoints read PostgreSQL and Redis only.

No `from __future__ import annotations` here: the parameter types (`Limit`, …) are built per app from the
settings inside `rest_router`, and FastAPI must see them as objects, not as names it cannot resolve.
"""

import asyncio
import hmac
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text

from hyperfollow.api.messages import now_iso
from hyperfollow.api.positions import open_positions
from hyperfollow.api.queries import (
    LeaderboardQuery,
    TraderRef,
    count_stats,
    find_trader,
    latest_snapshot,
    leaderboard,
    list_traders,
    trader_events,
    trader_metrics,
)
from hyperfollow.api.schemas import (
    CacheCleared,
    EventOut,
    Health,
    LeaderboardRow,
    Order,
    SortField,
    Stats,
    TraderDetail,
    TraderOut,
    Window,
)
from hyperfollow.api.settings import ApiSettings
from hyperfollow.api.state import AppState, get_state
from hyperfollow.core.addresses import normalise_address
from hyperfollow.core.events import EventType

__all__ = ["TRADER_PATTERN", "parse_trader_ref", "rest_router"]

#: A trader in a path: numeric id or address (any case).
TRADER_PATTERN = r"^(?:[0-9]{1,19}|0x[0-9a-fA-F]{40})$"
COIN_QUERY_PATTERN = r"^(?:[a-z0-9]{1,16}:)?[A-Za-z0-9]{1,24}$"  # core.settings.COIN_PATTERN
SEARCH_PATTERN = r"^(?:0x)?[0-9a-fA-F]{1,40}$"
MAX_OFFSET = 1_000_000
MAX_ID = 2**63 - 1
CHECK_TIMEOUT_S = 2.0

State = Annotated[AppState, Depends(get_state)]
_bearer = HTTPBearer(auto_error=False, description="the admin token (HYPERFOLLOW_ADMIN_TOKEN)")
_JSON_ERRORS: dict[int | str, dict[str, Any]] = {422: {"description": "invalid parameter (`message` says which)"},
                                                 503: {"description": "PostgreSQL or Redis unavailable"}}


def parse_trader_ref(value: str) -> TraderRef | None:
    """A path's trader: a numeric id or an address; 422 when it is neither; None for an id no trader can have."""
    if value.isascii() and value.isdigit():
        number = int(value)
        return TraderRef(id=number) if 1 <= number <= MAX_ID else None
    try:
        return TraderRef(address=normalise_address(value))
    except ValueError as exc:
        raise HTTPException(422, f"trader: must be a numeric id or an address; {exc}") from None


def _require_admin(state: AppState, credentials: HTTPAuthorizationCredentials | None) -> None:
    token = state.settings.admin_token
    if token is None or not token.get_secret_value():
        raise HTTPException(403, "admin endpoints are disabled: set HYPERFOLLOW_ADMIN_TOKEN to enable them")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(401, "admin token required: send `Authorization: Bearer <token>`",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), token.get_secret_value().encode()):
        raise HTTPException(403, "invalid admin token")


class _SingleFlight:
    """Concurrent misses of the same cache key share one database query."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[bytes]] = {}

    async def run(self, key: str, produce: Any) -> bytes:
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            body = await produce()
            future.set_result(body)
            return body
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._running[key]


def rest_router(settings: ApiSettings) -> APIRouter:
    router = APIRouter()
    flights = _SingleFlight()
    page_size = settings.default_page_size
    Limit = Annotated[int, Query(ge=1, le=settings.max_page_size,
                                 description=f"rows per page (1 … {settings.max_page_size})")]
    Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
    TraderParam = Annotated[str, Path(pattern=TRADER_PATTERN, max_length=42,
                                      description="numeric trader id or address (0x + 40 hex digits)")]

    # --- health -----------------------------------------------------------------------------------------------
    @router.get("/health", response_model=Health, tags=["service"],
                responses={503: {"model": Health, "description": "PostgreSQL or Redis unreachable"}})
    async def health(state: State) -> JSONResponse:
        """The seed's health check, now checking PostgreSQL and Redis (503 when either is down)."""

        async def database() -> None:
            async with state.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        results = await asyncio.gather(asyncio.wait_for(database(), CHECK_TIMEOUT_S),
                                       asyncio.wait_for(state.redis.ping(), CHECK_TIMEOUT_S), return_exceptions=True)
        db_state, redis_state = (("ok" if not isinstance(r, BaseException) else f"error: {type(r).__name__}")
                                 for r in results)
        healthy = db_state == "ok" and redis_state == "ok"
        body = Health(status="healthy" if healthy else "unhealthy", database=db_state, redis=redis_state,
                      feed="subscribed" if state.fanout.subscribed else "reconnecting")
        return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)

    # --- leaderboard -------------------------------------------------------------------------------------------
    async def _leaderboard(state: AppState, q: LeaderboardQuery) -> Response:
        key = state.cache.key(q.sort_by.value, q.order.value, q.cache_suffix())
        found = await state.cache.get(key)
        if found.body is not None:
            return Response(found.body, media_type="application/json", headers={"X-Cache": "hit"})

        async def produce() -> bytes:
            async with state.engine.connect() as conn:
                body = orjson.dumps(await leaderboard(conn, q), option=orjson.OPT_UTC_Z)
            await state.cache.put(key, found.generation, body)
            return body

        body = await flights.run(key, produce) if state.cache.enabled else await produce()
        return Response(body, media_type="application/json", headers={"X-Cache": "miss"})

    @router.get("/api/v1/leaderboard", response_model=list[LeaderboardRow], tags=["leaderboard"],
                responses=_JSON_ERRORS)
    async def get_leaderboard(
        state: State,
        sort_by: Annotated[SortField, Query(description="metric to sort by")] = SortField.win_rate,
        order: Annotated[Order, Query(description="asc or desc")] = Order.desc,
        window: Annotated[Window, Query(description="metrics window")] = Window.all,
        limit: Limit = page_size,
        offset: Offset = 0,
        min_trades: Annotated[int, Query(ge=0, le=1_000_000_000, description="at least this many trades")] = 0,
        min_volume: Annotated[float, Query(ge=0, le=1e15, allow_inf_nan=False,
                                           description="at least this much volume, USD")] = 0.0,
        include_low_sample: Annotated[bool, Query(description="list traders with too few trades (after the "
                                                              "others)")] = True,
    ) -> Response:
        """Ranked traders. Low-sample rows come after every real record whatever the sort field. Cached 5 min
        under `leaderboard_cache:{sort_by}:{order}:…`; a new computation invalidates the cache."""
        return await _leaderboard(state, LeaderboardQuery(sort_by, order, window, limit, offset, min_trades,
                                                          min_volume, include_low_sample))

    @router.get("/leaderboard", response_model=list[LeaderboardRow], tags=["leaderboard"], responses=_JSON_ERRORS)
    async def legacy_leaderboard(state: State) -> Response:
        """The seed's legacy leaderboard: `win_rate desc`, one page."""
        return await _leaderboard(state, LeaderboardQuery(limit=page_size))

    # --- traders -----------------------------------------------------------------------------------------------
    @router.get("/traders", response_model=list[TraderOut], tags=["traders"], responses=_JSON_ERRORS)
    async def get_traders(
        state: State,
        limit: Limit = page_size,
        offset: Offset = 0,
        search: Annotated[str | None, Query(pattern=SEARCH_PATTERN, max_length=42,
                                            description="an address, or its first hex digits")] = None,
        active: Annotated[bool | None, Query(description="only active (true) or inactive (false) traders")] = None,
    ) -> list[dict[str, Any]]:
        """Traders by id; `search` matches addresses by their beginning (case-insensitive)."""
        prefix = None
        if search:
            prefix = search.lower()
            prefix = prefix if prefix.startswith("0x") else "0x" + prefix
        async with state.engine.connect() as conn:
            return await list_traders(conn, limit=limit, offset=offset, address_prefix=prefix, active=active)

    async def _trader_or_404(state: AppState, conn: Any, trader: str) -> dict[str, Any]:
        ref = parse_trader_ref(trader)
        found = await find_trader(conn, ref) if ref is not None else None
        if found is None:
            raise HTTPException(404, f"trader not found: {trader}")
        return found

    @router.get("/traders/{trader}", response_model=TraderDetail, tags=["traders"],
                responses={404: {"description": "no such trader"}, **_JSON_ERRORS})
    async def get_trader(state: State, trader: TraderParam) -> dict[str, Any]:
        """A trader, its open positions (from the newest state snapshot) and its metrics per window."""
        async with state.engine.connect() as conn:
            found = await _trader_or_404(state, conn, trader)
            snapshot = await latest_snapshot(conn, found["id"])
            metrics = await trader_metrics(conn, found["id"])
        return {"trader": found, "metrics": metrics,
                "snapshot_at": snapshot["timestamp"] if snapshot else None,
                "account_value": snapshot["account_value"] if snapshot else None,
                "total_notional": snapshot["total_notional"] if snapshot else None,
                "positions": open_positions(snapshot["state_data"]) if snapshot else []}

    @router.get("/traders/{trader}/events", response_model=list[EventOut], tags=["traders"],
                responses={404: {"description": "no such trader"}, **_JSON_ERRORS})
    async def get_trader_events(
        state: State,
        trader: TraderParam,
        limit: Limit = page_size,
        offset: Offset = 0,
        event_type: Annotated[EventType | None, Query(description="only this type")] = None,
        coin: Annotated[str | None, Query(pattern=COIN_QUERY_PATTERN, max_length=41,
                                          description="only this coin, e.g. BTC")] = None,
    ) -> list[dict[str, Any]]:
        """A trader's position events, newest first."""
        async with state.engine.connect() as conn:
            found = await _trader_or_404(state, conn, trader)
            return await trader_events(conn, found["id"], limit=limit, offset=offset,
                                       event_type=event_type.value if event_type else None, coin=coin)

    # --- admin and stats ---------------------------------------------------------------------------------------
    @router.post("/api/v1/cache/clear", response_model=CacheCleared, tags=["admin"],
                 responses={401: {"description": "no bearer token"},
                            403: {"description": "wrong token, or admin endpoints disabled"},
                            503: {"description": "Redis unavailable"}})
    async def clear_cache(state: State,
                          credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
                          ) -> dict[str, Any]:
        """Delete every cached leaderboard page (admin: `Authorization: Bearer $HYPERFOLLOW_ADMIN_TOKEN`)."""
        _require_admin(state, credentials)
        cleared = await state.cache.clear()
        return {"message": f"Cleared {cleared} cache entries", "cleared": cleared}

    @router.get("/api/v1/cache/clear", include_in_schema=False)
    async def clear_cache_get() -> JSONResponse:
        return JSONResponse({"detail": "use POST with `Authorization: Bearer <admin token>` (GET was the seed's "
                                       "unauthenticated way and is gone)"}, status_code=405,
                            headers={"Allow": "POST"})

    @router.get("/api/v1/stats", response_model=Stats, tags=["service"], responses=_JSON_ERRORS)
    async def stats(state: State) -> dict[str, Any]:
        """Counts from PostgreSQL, this process's WebSocket clients, and whether Redis answers."""
        try:
            redis_ok = bool(await asyncio.wait_for(state.redis.ping(), CHECK_TIMEOUT_S))
        except Exception:
            redis_ok = False
        async with state.engine.connect() as conn:
            counts = await count_stats(conn)
        return {"database": counts, "websocket": {"active_connections": state.fanout.client_count},
                "cache": {"redis_connected": redis_ok}, "timestamp": now_iso()}

    return router
