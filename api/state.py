"""What the request handlers share within one API process (built in the app's lifespan)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from hyperfollow.api.cache import LeaderboardCache
from hyperfollow.api.fanout import Fanout
from hyperfollow.api.settings import ApiSettings
from hyperfollow.core.keys import RedisKeys

__all__ = ["AppState", "get_state", "state_of"]


@dataclass
class AppState:
    settings: ApiSettings
    keys: RedisKeys
    engine: AsyncEngine
    redis: Redis
    cache: LeaderboardCache
    fanout: Fanout


def state_of(connection: HTTPConnection) -> AppState:
    return connection.app.state.hf  # type: ignore[no-any-return]


async def get_state(connection: HTTPConnection) -> AppState:
    """FastAPI dependency. Async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread
    hand-off on every request."""
    return state_of(connection)
