"""What a tracking process keeps between jobs: connections, the exchange client, one event loop.

`hyperfollow worker` runs RQ's SimpleWorker: jobs run in the worker process itself (no fork per job), so the
PostgreSQL pool, the Redis connections, the HTTP keep-alive connections to the exchange and the metrics all
live as long as the process. The exchange client is asyncio (core/hl_info.py); the rest of a job is plain
blocking code, so the context owns one :class:`asyncio.Runner` and runs each request on its loop (the client
and its budget stay bound to that loop).

The context is built once per process (`configure`, or lazily from the environment by `current`).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from rq.timeouts import BaseTimeoutException
from sqlalchemy import Engine

from hyperfollow.core.budget import BudgetConfig, WeightBudget
from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.hl_info import InfoClient
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings
from hyperfollow.workers.liquidation import MarkCache
from hyperfollow.workers.marks import MarkClearer
from hyperfollow.workers.publish import EventPublisher
from hyperfollow.workers.settings import TrackingSettings

__all__ = ["TrackingContext", "configure", "current", "reset"]

T = TypeVar("T")


@dataclass
class TrackingContext:
    settings: TrackingSettings
    database_url: str
    redis_url: str
    keys: RedisKeys
    #: Set on SIGTERM (warm shutdown): a running batch stops after the trader it is refreshing.
    shutdown: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.engine: Engine = make_engine(self.database_url, pool_size=2, application_name="hyperfollow-worker")
        self.redis = redis.Redis.from_url(self.redis_url, socket_timeout=30, socket_connect_timeout=10,
                                          health_check_interval=30)
        s = self.settings
        self.publisher = EventPublisher(self.redis, self.keys, maxlen=s.worker_stream_maxlen,
                                        dedupe_window_s=s.worker_publish_dedupe_s)
        self.marks = MarkClearer(self.redis, self.keys)
        self.mark_cache = MarkCache()
        self._runner: asyncio.Runner | None = None
        self._info: InfoClient | None = None

    # --- the exchange ------------------------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the context's loop.

        An exception raised into the loop by a signal (RQ's job timeout, a cold shutdown) can leave a request
        half done on it: the loop and its client are then replaced. Errors of the coroutine itself are not.
        """
        if self._runner is None:
            self._runner = asyncio.Runner()
        try:
            return self._runner.run(coro)
        except (BaseTimeoutException, SystemExit, KeyboardInterrupt):
            self._drop_loop()
            raise

    @property
    def info(self) -> InfoClient:
        if self._info is None:
            self._info = self.run(self._make_info())
        return self._info

    async def _make_info(self) -> InfoClient:
        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=30, socket_connect_timeout=10)
        budget = WeightBudget(client, self.keys, BudgetConfig.from_settings(self.settings))
        return InfoClient.from_settings(self.settings, budget=budget)

    def _drop_loop(self) -> None:
        self._info = None
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):  # a broken loop is being thrown away
                runner.close()

    def close(self) -> None:
        if self._info is not None and self._runner is not None:
            info = self._info
            with contextlib.suppress(Exception):
                self.run(info.aclose())
        self._drop_loop()
        self.redis.close()
        self.engine.dispose()


_current: TrackingContext | None = None
_lock = threading.Lock()


def configure(context: TrackingContext) -> TrackingContext:
    """Make `context` the one jobs of this process use."""
    global _current
    with _lock:
        _current = context
    return context


def current() -> TrackingContext:
    """The process's context; built from the environment on first use when nothing configured one."""
    global _current
    with _lock:
        if _current is None:
            from hyperfollow.core.runtime import resolve_servers

            settings = load_settings(TrackingSettings)
            servers = resolve_servers(settings)
            _current = TrackingContext(settings=settings, database_url=servers.database_url,
                                       redis_url=servers.redis_url, keys=RedisKeys(settings.redis_namespace))
        return _current


def reset() -> None:
    """Close and forget the process's context (tests)."""
    global _current
    with _lock:
        context, _current = _current, None
    if context is not None:
        context.close()
