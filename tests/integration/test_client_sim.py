"""The /info client against the simulator over real HTTP: shapes, ground truth, retries, 429s, the budget."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from hyperfollow.core.budget import BudgetConfig, WeightBudget
from hyperfollow.core.errors_exchange import ExchangeRejected, ExchangeUnavailable, MalformedResponse
from hyperfollow.core.hl_info import InfoClient
from hyperfollow.core.hl_models import parse_clearinghouse_state
from hyperfollow.core.keys import RedisKeys
from hyperfollow.sim.server import SimConfig, SimServer


def requests_seen(request_type: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("hyperfollow_exchange_requests_total",
                                     {"type": request_type, "outcome": outcome}) or 0.0


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=3, traders=300, coins=6, trades_per_second=0, chaos_seed=5,
                                       weight_limit=0), port=0) as server:
        server.step(3000)
        yield server


@pytest.fixture()
def calm(sim: SimServer) -> Iterator[SimServer]:
    yield sim
    sim.set_chaos(error_probability=0.0, slow_probability=0.0)


@pytest.fixture()
async def aredis(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_states_match_the_simulators_ground_truth(calm: SimServer) -> None:
    traders = sorted(calm.traders_seen())[:25]
    async with InfoClient(calm.info_url) as client:
        meta = await client.meta()
        assert len(meta.coins) == 6 and meta.coins[0] == "BTC"
        mids = await client.all_mids()
        assert set(meta.coins) <= set(mids) and all(v > 0 for v in mids.values())
        for trader in traders:
            expected: dict[str, Decimal] = {}
            for record in calm.truth(trader=trader):
                expected[record["coin"]] = Decimal(record["after"]["szi"])
            state = await client.clearinghouse_state(trader)
            assert {c: p.szi for c, p in state.positions.items()} == {c: s for c, s in expected.items() if s}
            fills = await client.user_fills(trader)
            assert fills and all(f.time >= g.time for f, g in itertools.pairwise(fills))  # newest first
            for coin in {f.coin for f in fills}:  # each fill starts where the one before it left the position
                chain = [f for f in reversed(fills) if f.coin == coin]
                assert all(a.end_position == b.start_position for a, b in itertools.pairwise(chain))
                if coin in expected:
                    assert chain[-1].end_position == expected[coin]
            by_time = await client.user_fills_by_time(trader, start_time=0)
            assert {f.tid for f in by_time} == {f.tid for f in fills}
            portfolio = await client.portfolio(trader)
            assert "allTime" in portfolio.periods


async def test_unknown_address_is_an_empty_account(calm: SimServer) -> None:
    async with InfoClient(calm.info_url) as client:
        state = await client.clearinghouse_state("0x" + "ab" * 20)
    assert state.positions == {} and state.account_value == 0


async def test_server_errors_are_retried_then_reported(calm: SimServer) -> None:
    trader = sorted(calm.traders_seen())[0]
    calm.set_chaos(error_probability=0.5)
    async with InfoClient(calm.info_url, attempts=8, backoff_base=0.01, backoff_cap=0.05) as client:
        for _ in range(10):  # every read succeeds despite one 5xx in two
            await client.clearinghouse_state(trader)
    assert calm.stats()["chaos"]["errors_5xx"] > 0
    calm.set_chaos(error_probability=1.0)
    before = calm.stats()["chaos"]["errors_5xx"]
    async with InfoClient(calm.info_url, attempts=3, backoff_base=0.01, backoff_cap=0.05) as client:
        with pytest.raises(ExchangeUnavailable) as caught:
            await client.clearinghouse_state(trader)
    assert caught.value.attempts == 3 and "HTTP 5" in caught.value.last_error
    assert calm.stats()["chaos"]["errors_5xx"] - before == 3  # bounded: exactly the attempts


async def test_timeouts_are_retried(calm: SimServer) -> None:
    calm.set_chaos(slow_probability=1.0, slow_delay_s=1.0)
    async with InfoClient(calm.info_url, timeout=0.2, attempts=2, backoff_base=0.01) as client:
        with pytest.raises(ExchangeUnavailable, match="Timeout"):
            await client.all_mids()


async def test_a_bad_request_is_rejected_without_retrying(calm: SimServer) -> None:
    before = calm.stats()["bad_requests"]
    async with InfoClient(calm.info_url, attempts=5) as client:
        with pytest.raises(ExchangeRejected) as caught:
            await client.clearinghouse_state("0x123")
    assert caught.value.status == 422 and calm.stats()["bad_requests"] - before == 1


async def test_an_unexpected_body_is_a_typed_error(calm: SimServer) -> None:
    """The simulator answers `meta` where a state was expected: the parser must refuse it, typed."""
    async with InfoClient(calm.info_url) as client:
        with pytest.raises(MalformedResponse) as caught:
            await client.request({"type": "meta"}, parse_clearinghouse_state)
    assert caught.value.request_type == "clearinghouseState" and "universe" in caught.value.body_excerpt


async def test_429_without_a_budget_waits_for_retry_after() -> None:
    config = SimConfig(seed=1, traders=50, coins=2, trades_per_second=0, weight_limit=20, weight_window_s=1.0)
    with SimServer(config, port=0) as sim:
        before = requests_seen("meta", "rate_limited")
        async with InfoClient(sim.info_url, attempts=3, penalty_without_budget=0.1) as client:
            await client.meta()  # 20: the whole window
            await client.meta()  # 429, Retry-After 1 s, then fine
        assert sim.stats()["rate_limited"] == 1
        assert requests_seen("meta", "rate_limited") - before == 1


async def test_the_budget_prevents_the_429s_a_burst_would_get(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    # the exchange's 1200 per minute, scaled to 40 weight per 2 s; our target is 90 % of it
    config = SimConfig(seed=1, traders=50, coins=2, trades_per_second=0, weight_limit=40, weight_window_s=2.0)
    users = ["0x" + f"{i:040x}" for i in range(40)]
    with SimServer(config, port=0) as sim:
        async with InfoClient(sim.info_url, attempts=1) as client:  # no budget: the burst overshoots
            outcomes = await asyncio.gather(*(client.clearinghouse_state(u) for u in users), return_exceptions=True)
        assert sim.stats()["rate_limited"] > 0 and any(isinstance(o, Exception) for o in outcomes)
    with SimServer(config, port=0) as sim:
        budget = WeightBudget(aredis, keys, BudgetConfig(group=f"b{uuid.uuid4().hex[:6]}", weight_per_minute=1080))
        async with InfoClient(sim.info_url, budget=budget, attempts=1) as client:
            states = await asyncio.gather(*(client.clearinghouse_state(u) for u in users))
        assert len(states) == 40 and sim.stats()["rate_limited"] == 0
        assert (await budget.stats()).spent == 80


async def test_429s_penalise_the_group_and_requests_still_complete(aredis: aioredis.Redis, keys: RedisKeys) -> None:
    config = SimConfig(seed=1, traders=50, coins=2, trades_per_second=0, weight_limit=20, weight_window_s=1.0)
    with SimServer(config, port=0) as sim:
        budget = WeightBudget(aredis, keys, BudgetConfig(group=f"b{uuid.uuid4().hex[:6]}", weight_per_minute=60_000,
                                                         penalty_base=0.2, penalty_cap=2.0))
        async with InfoClient(sim.info_url, budget=budget, attempts=6) as client:
            states = await asyncio.gather(*(client.clearinghouse_state("0x" + f"{i:040x}") for i in range(30)))
        stats = await budget.stats()
        assert len(states) == 30
        assert stats.rate_limited == sim.stats()["rate_limited"] > 0  # every 429 was reported to the group
        assert stats.streak == 0  # the successes after the back-off ended the streak


async def test_user_fills_pay_their_per_item_weight(calm: SimServer, aredis: aioredis.Redis, keys: RedisKeys) -> None:
    counts = {t: len(calm.info({"type": "userFills", "user": t})) for t in calm.traders_seen()}
    trader, items = max(counts.items(), key=lambda kv: kv[1])
    assert items >= 20, "the simulated market should give someone 20 fills"
    budget = WeightBudget(aredis, keys, BudgetConfig(group=f"b{uuid.uuid4().hex[:6]}", weight_per_minute=60_000))
    async with InfoClient(calm.info_url, budget=budget) as client:
        fills = await client.user_fills(trader)
    assert len(fills) == items
    assert (await budget.stats()).spent == 20 + items // 20


async def test_recent_trades_newest_first_with_their_per_item_weight(calm: SimServer, aredis: aioredis.Redis,
                                                                     keys: RedisKeys) -> None:
    coin = calm.info({"type": "meta"})["universe"][0]["name"]
    raw = calm.info({"type": "recentTrades", "coin": coin})
    assert len(raw) == calm.config.recent_trades
    budget = WeightBudget(aredis, keys, BudgetConfig(group=f"b{uuid.uuid4().hex[:6]}", weight_per_minute=60_000))
    async with InfoClient(calm.info_url, budget=budget) as client:
        trades = await client.recent_trades(coin)
    assert [(t.tid, t.time) for t in trades] == [(r["tid"], r["time"]) for r in raw]
    assert all(t.coin == coin for t in trades)
    assert [t.time for t in trades] == sorted((t.time for t in trades), reverse=True)
    assert {t.buyer for t in trades} | {t.seller for t in trades} <= set(calm.traders_seen())
    assert (await budget.stats()).spent == 20 + len(raw) // 20
