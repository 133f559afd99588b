"""The shared REST weight budget: every process behind one egress IP takes weight here before each request.

The exchange allows 1200 weight per minute per IP; we spend at most the target (90 % by default) across all
processes of a budget group. The state lives in Redis and is changed only by one Lua script
(`budget.lua`, KEYS/ARGV in its header), a GCRA: each caller atomically *reserves* the next slot and learns
exactly how long to sleep until it. So

- any 60 s window holds at most the target plus one request (slots are spaced by weight x 60 s / target);
- callers are served first come, first served across processes, without polling (one round trip, then a
  sleep of exactly the right length);
- all processes use the Redis clock (`TIME` inside the script), not their own.

A 429 from the exchange (`penalize`) pushes the group's next slot past a back-off that doubles with every
consecutive 429 (capped, never shorter than the server's Retry-After) and is counted; reservations made
before it whose slot falls inside the back-off are dropped and re-queued after it. Extra weight known only
from an answer (`userFills` items) is `charge`d afterwards: it delays everyone's next slot by its weight.

Reservations never reach further ahead than `max_wait`: a caller arriving at a longer queue reserves nothing
and is told when to ask again (or gets :class:`BudgetTimeout` if that is past its own timeout).

Use :class:`WeightBudget` (asyncio, `await budget.acquire(w)`) in the async clients; the same operations are
available synchronously on :class:`SyncWeightBudget` (blocking sleeps) for sync code and for reading stats.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client import Counter, Histogram

from hyperfollow.core.errors_exchange import BudgetTimeout
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import Settings

__all__ = ["BudgetConfig", "BudgetStats", "Grant", "SyncWeightBudget", "WeightBudget", "budget_script"]

#: The script's text, loaded once per process; redis-py's Script runs it by SHA and reloads it on NOSCRIPT.
BUDGET_LUA = resources.files("hyperfollow.core").joinpath("budget.lua").read_text(encoding="utf-8")

WEIGHT_SPENT = Counter("hyperfollow_budget_weight_spent_total", "Weight this process took from the budget",
                       ["group"])
WAIT_SECONDS = Histogram("hyperfollow_budget_wait_seconds", "Time a caller slept for its budget slot", ["group"],
                         buckets=(0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
RATE_LIMITED = Counter("hyperfollow_budget_429_total", "HTTP 429 answers reported to the budget", ["group"])
REFUSED = Counter("hyperfollow_budget_refused_total", "Reservations refused because the queue was too long",
                  ["group"])


@dataclass(frozen=True)
class BudgetConfig:
    """Parameters of one budget group. Every process of a group must use the same `weight_per_minute`."""

    group: str = "default"
    weight_per_minute: int = 1080  # the target rate: the exchange's 1200 x budget_target
    max_wait: float = 30.0  # seconds: reservations never reach further ahead
    penalty_base: float = 2.0  # seconds of back-off after a first 429 ...
    penalty_cap: float = 60.0  # ... doubling per consecutive 429 up to this

    def __post_init__(self) -> None:
        if self.weight_per_minute <= 0:
            raise ValueError("weight_per_minute must be positive")
        if self.max_wait <= 0 or self.penalty_base <= 0 or self.penalty_cap < self.penalty_base:
            raise ValueError("max_wait and penalty_base must be positive, penalty_cap >= penalty_base")

    @property
    def emission_us(self) -> float:
        """Microseconds one unit of weight occupies."""
        return 60_000_000 / self.weight_per_minute

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BudgetConfig:
        values: dict[str, Any] = {"group": settings.budget_group,
                                  "weight_per_minute": settings.weight_budget_per_minute}
        for name in ("max_wait", "penalty_base", "penalty_cap"):
            value = getattr(settings, f"budget_{name}", None)
            if value is not None:
                values[name] = value
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class Grant:
    """A granted reservation: `slot_us` is its start on the Redis clock, `wait` how long the caller slept."""

    weight: int
    wait: float
    slot_us: int


@dataclass(frozen=True)
class BudgetStats:
    """The group's totals since its key was created (shared by all processes)."""

    group: str
    spent: int
    grants: int
    waited: int
    wait_seconds: float
    refused: int
    rate_limited: int
    streak: int
    voided: int
    backlog_seconds: float  # how far ahead the next free slot is
    penalty_seconds: float  # remaining back-off after a 429 (0 when none)


def budget_script(client: redis.Redis | aioredis.Redis) -> Any:
    """Register the budget script on a client (sync or asyncio); call once and keep the result."""
    return client.register_script(BUDGET_LUA)


def _num(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    return float(value or 0)


def _parse_stats(group: str, reply: list[Any]) -> BudgetStats:
    now, tat, spent, grants, waited, wait_us, refused, limited, streak, voided, penalty_ms = map(_num, reply)
    return BudgetStats(group=group, spent=int(spent), grants=int(grants), waited=int(waited),
                       wait_seconds=wait_us / 1e6, refused=int(refused), rate_limited=int(limited),
                       streak=int(streak), voided=int(voided), backlog_seconds=max(0.0, (tat - now) / 1e6),
                       penalty_seconds=penalty_ms / 1000)


class _BudgetBase:
    def __init__(self, keys: RedisKeys, config: BudgetConfig) -> None:
        self.config = config
        self._keys = [keys.budget(config.group), keys.budget_penalty(config.group)]
        self._streak = 0
        self._spent = WEIGHT_SPENT.labels(config.group)
        self._waits = WAIT_SECONDS.labels(config.group)
        self._limited = RATE_LIMITED.labels(config.group)
        self._refused = REFUSED.labels(config.group)

    @staticmethod
    def _check_weight(weight: int) -> int:
        if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
            raise ValueError(f"weight must be a positive integer, got {weight!r}")
        return weight

    def _acquire_args(self, weight: int, deadline: float | None) -> list[Any]:
        max_wait = self.config.max_wait
        if deadline is not None:
            max_wait = min(max_wait, max(0.0, deadline - time.monotonic()))
        return ["acquire", weight, repr(self.config.emission_us), int(max_wait * 1e6)]

    def _refusal(self, weight: int, retry_us: float, deadline: float | None) -> float:
        """Seconds to sleep before asking again after a refusal, or raise BudgetTimeout."""
        self._refused.inc()
        retry = retry_us / 1e6
        if deadline is not None and time.monotonic() + retry >= deadline:
            raise BudgetTimeout(self.config.group, weight, retry)
        # spread the callers that were refused together, so they do not all return at the same instant
        return retry + random.uniform(0, min(1.0, retry) * 0.1)

    def _granted(self, weight: int, wait: float) -> None:
        self._spent.inc(weight)
        self._waits.observe(wait)

    def _penalize_args(self, retry_after: float | None) -> list[Any]:
        self._limited.inc()
        return ["penalize", int(self.config.penalty_base * 1000), int(self.config.penalty_cap * 1000),
                int(max(0.0, retry_after or 0.0) * 1000)]


class WeightBudget(_BudgetBase):
    """The asyncio face of a budget group: `grant = await budget.acquire(weight)` before each request."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, config: BudgetConfig,
                 max_inflight: int = 16) -> None:
        super().__init__(keys, config)
        self._redis = client
        self._script = budget_script(client)
        # Many tasks may wait for weight at once; they must not each hold a Redis connection (redis-py's pool
        # raises past its size). Calls are short, so a few connections serve any number of waiters.
        self._inflight = asyncio.Semaphore(max_inflight)

    async def _call(self, *args: Any) -> list[Any]:
        async with self._inflight:
            return await self._script(keys=self._keys, args=list(args))

    async def _penalty_active(self) -> bool:
        async with self._inflight:
            return await self._redis.pttl(self._keys[1]) > 0

    async def acquire(self, weight: int, timeout: float | None = None) -> Grant:
        """Wait for `weight` (FIFO across every process of the group) and return the grant.

        Raises :class:`BudgetTimeout` without reserving anything when the slot would come later than
        `timeout` seconds from now.
        """
        self._check_weight(weight)
        deadline = None if timeout is None else time.monotonic() + timeout
        slept = 0.0
        while True:
            granted, wait_us, streak, slot_us = map(_num, await self._call(*self._acquire_args(weight, deadline)))
            self._streak = int(streak)
            if not granted:
                pause = self._refusal(weight, wait_us, deadline)
                await asyncio.sleep(pause)
                slept += pause
                continue
            wait = wait_us / 1e6
            if wait > 0:
                await asyncio.sleep(wait)
                slept += wait
                if await self._penalty_active():  # a 429 penalty began while we slept
                    await self._call("void", weight)
                    continue
            self._granted(weight, slept)
            return Grant(weight=weight, wait=slept, slot_us=int(slot_us))

    async def charge(self, weight: int) -> None:
        """Account extra weight learnt from an answer (it delays the group's next slot)."""
        if weight > 0:
            await self._call("charge", self._check_weight(weight), repr(self.config.emission_us))
            self._spent.inc(weight)

    async def penalize(self, retry_after: float | None = None) -> float:
        """Report an HTTP 429: the group backs off; returns the back-off in seconds."""
        backoff_ms, streak = map(_num, await self._call(*self._penalize_args(retry_after)))
        self._streak = int(streak)
        return backoff_ms / 1000

    async def record_success(self) -> None:
        """Report a successful answer; ends a 429 streak (a no-op round trip-free call when there is none)."""
        if self._streak:
            (streak,) = map(_num, await self._call("success"))
            self._streak = int(streak)

    async def stats(self) -> BudgetStats:
        return _parse_stats(self.config.group, await self._call("stats"))


class SyncWeightBudget(_BudgetBase):
    """The same budget for blocking code (sleeps with `time.sleep`)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, config: BudgetConfig) -> None:
        super().__init__(keys, config)
        self._redis = client
        self._script = budget_script(client)

    def _call(self, *args: Any) -> list[Any]:
        return self._script(keys=self._keys, args=list(args))

    def acquire(self, weight: int, timeout: float | None = None) -> Grant:
        self._check_weight(weight)
        deadline = None if timeout is None else time.monotonic() + timeout
        slept = 0.0
        while True:
            granted, wait_us, streak, slot_us = map(_num, self._call(*self._acquire_args(weight, deadline)))
            self._streak = int(streak)
            if not granted:
                pause = self._refusal(weight, wait_us, deadline)
                time.sleep(pause)
                slept += pause
                continue
            wait = wait_us / 1e6
            if wait > 0:
                time.sleep(wait)
                slept += wait
                if self._redis.pttl(self._keys[1]) > 0:
                    self._call("void", weight)
                    continue
            self._granted(weight, slept)
            return Grant(weight=weight, wait=slept, slot_us=int(slot_us))

    def charge(self, weight: int) -> None:
        if weight > 0:
            self._call("charge", self._check_weight(weight), repr(self.config.emission_us))
            self._spent.inc(weight)

    def penalize(self, retry_after: float | None = None) -> float:
        backoff_ms, streak = map(_num, self._call(*self._penalize_args(retry_after)))
        self._streak = int(streak)
        return backoff_ms / 1000

    def record_success(self) -> None:
        if self._streak:
            (streak,) = map(_num, self._call("success"))
            self._streak = int(streak)

    def stats(self) -> BudgetStats:
        return _parse_stats(self.config.group, self._call("stats"))
