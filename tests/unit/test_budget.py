"""The weight budget's script against a real Redis, one process: spacing, FIFO, refusals, 429 back-off.

Fast rates (thousands of weight per minute) keep these tests short; the properties are the same as at the
exchange's 1080/min. Assertions use the slot times the script hands out (Redis clock), never wall-clock speed.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio as aioredis

from hyperfollow.core.budget import BudgetConfig, SyncWeightBudget, WeightBudget
from hyperfollow.core.errors_exchange import BudgetTimeout
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings


def test_config_from_settings_uses_the_target() -> None:
    config = BudgetConfig.from_settings(load_settings(weight_per_minute=1200, budget_target=0.9, budget_group="eu-1"))
    assert config.group == "eu-1" and config.weight_per_minute == 1080
    assert config.emission_us == pytest.approx(60e6 / 1080)
    with pytest.raises(ValueError):
        BudgetConfig(weight_per_minute=0)
    with pytest.raises(ValueError):
        BudgetConfig(penalty_base=10, penalty_cap=5)


@pytest.fixture()
async def aredis(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def budget(client: aioredis.Redis, keys: RedisKeys, **config: object) -> WeightBudget:
    values: dict[str, object] = {"group": f"g{uuid.uuid4().hex[:8]}", "weight_per_minute": 6000}  # 10 ms per unit
    values.update(config)
    return WeightBudget(client, keys, BudgetConfig(**values))  # type: ignore[arg-type]


async def test_slots_are_spaced_by_the_weight_before_them(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys)  # 10 ms per unit
    weights = [5, 1, 3, 2, 5, 4, 1, 2]
    done = sorted((g.slot_us, g.weight) for g in await asyncio.gather(*(b.acquire(w) for w in weights)))
    for (earlier, weight), (later, _) in itertools.pairwise(done):
        assert later - earlier >= weight * 10_000 - 1
    stats = await b.stats()
    assert stats.spent == sum(weights) and stats.grants == len(weights) and stats.waited >= len(weights) - 1


async def test_a_later_caller_queues_behind_an_earlier_one(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys)  # 10 ms per unit
    await b.acquire(1)
    big = asyncio.create_task(b.acquire(40))  # reserves 10 ms ahead, then sleeps
    while (await b.stats()).grants < 2:
        await asyncio.sleep(0.001)
    small = await b.acquire(1)  # asks later, however small: served after the 400 ms of the big one
    assert small.slot_us - (await big).slot_us >= 40 * 10_000 - 1


async def test_any_window_holds_at_most_the_rate_plus_one_request(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys, weight_per_minute=60_000)  # 1000 weight per second: 1 ms per unit
    weights = [1, 2, 20, 2, 2, 5, 2, 40, 2, 2] * 30
    done = await asyncio.gather(*(b.acquire(w) for w in weights))
    grants = sorted((g.slot_us, g.weight) for g in done)
    window_us, rate_per_window = 100_000, 100  # any 100 ms holds at most 100 weight + one request
    for i, (start, _) in enumerate(grants):
        spent = sum(w for t, w in grants[i:] if t < start + window_us)
        assert spent <= rate_per_window + max(weights)


async def test_a_long_queue_refuses_instead_of_reserving(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys, weight_per_minute=60, max_wait=0.5)  # 1 s per unit
    first = await b.acquire(2)  # now; the next slot is 2 s ahead, beyond max_wait
    assert first.wait == 0
    with pytest.raises(BudgetTimeout) as caught:
        await b.acquire(1, timeout=0.2)
    assert caught.value.wait > 1.0
    stats = await b.stats()
    assert stats.spent == 2 and stats.grants == 1 and stats.refused == 1  # nothing was reserved
    assert 1.0 < stats.backlog_seconds <= 2.0


async def test_a_429_backs_the_whole_group_off_with_doubling(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys, penalty_base=0.2, penalty_cap=0.5)
    assert await b.penalize() == pytest.approx(0.2)
    assert await b.penalize() <= 0.2  # the same burst of 429s: no second doubling
    other = budget(aredis, keys, group=b.config.group)  # another process of the group
    grant = await other.acquire(1)
    assert grant.wait >= 0.15  # waited out the back-off
    assert await b.penalize() == pytest.approx(0.4)  # still no success in between: doubled
    await asyncio.sleep(0.45)
    assert await b.penalize() == pytest.approx(0.5)  # capped
    await asyncio.sleep(0.55)
    stats = await b.stats()
    assert stats.rate_limited == 4 and stats.streak == 3
    await b.acquire(1)
    await b.record_success()
    assert (await b.stats()).streak == 0
    assert await b.penalize() == pytest.approx(0.2)  # a new streak starts from the base again


async def test_retry_after_is_honoured(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys, penalty_base=0.1, penalty_cap=0.2)
    assert await b.penalize(retry_after=0.6) == pytest.approx(0.6)
    assert (await b.stats()).penalty_seconds > 0.4


async def test_reservations_inside_a_new_penalty_are_requeued(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys, weight_per_minute=600, penalty_base=0.5, penalty_cap=1)  # 100 ms per unit
    await b.acquire(3)  # next free slot 300 ms ahead
    waiting = asyncio.create_task(b.acquire(2))
    await asyncio.sleep(0.05)  # it has reserved the slot at +300 ms and sleeps
    backoff = await b.penalize()
    grant = await waiting
    assert grant.wait >= backoff - 0.1  # not sent at +300 ms, inside the back-off
    stats = await b.stats()
    assert stats.voided == 2 and stats.spent == 5  # counted once


async def test_extra_weight_delays_the_next_slot(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys)  # 10 ms per unit
    first = await b.acquire(2)
    await b.charge(50)
    second = await b.acquire(2)
    assert second.slot_us - first.slot_us >= (2 + 50) * 10_000 - 1
    assert (await b.stats()).spent == 54


async def test_sync_and_async_callers_share_one_queue(aredis: aioredis.Redis, redis_url: str, keys: RedisKeys) -> None:
    a = budget(aredis, keys)
    sync_client = redis.Redis.from_url(redis_url)
    s = SyncWeightBudget(sync_client, keys, a.config)
    try:
        first = await a.acquire(4)
        second = await asyncio.to_thread(s.acquire, 4)
        third = await a.acquire(1)
        assert second.slot_us - first.slot_us >= 40_000 - 1 and third.slot_us - second.slot_us >= 40_000 - 1
        s.penalize()
        assert s.stats().rate_limited == 1
    finally:
        sync_client.close()


async def test_bad_weights_are_refused(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    b = budget(aredis, keys)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            await b.acquire(bad)  # type: ignore[arg-type]
