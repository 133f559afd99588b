"""Eight processes hammer one budget group against the simulator for over a minute.

Every 60 s window of granted weight stays within the target plus one request, the simulator (the exchange's
1200 per minute per IP, answering 429 beyond) never refuses anything, and the group uses its target.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from hyperfollow.bench.bench_budget import WorkerConfig, max_window_weight, run_workers, weight_in
from hyperfollow.core.budget import BudgetConfig, SyncWeightBudget
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings
from hyperfollow.sim.server import SimConfig, SimServer

DURATION = 75.0


@pytest.mark.slow
def test_eight_processes_stay_within_the_target_with_zero_429s(redis_url: str, redis_namespace: str,
                                                               keys: RedisKeys, redis_client: redis.Redis,
                                                               tmp_path: Path) -> None:
    target = load_settings(weight_per_minute=1200, budget_target=0.9).weight_budget_per_minute  # 1080
    group = f"s{uuid.uuid4().hex[:6]}"
    users = ["0x" + f"{i:040x}" for i in range(1, 500)]
    with SimServer(SimConfig(seed=4, traders=300, coins=4, trades_per_second=2.0), port=0) as sim:
        configs = [WorkerConfig(redis_url=redis_url, namespace=redis_namespace, group=group, weight_per_minute=target,
                                start_key=keys.bench(f"{group}:start"), out=str(tmp_path / f"w{i}.json"),
                                duration=DURATION, info_url=sim.info_url, concurrency=2, fills_fraction=0.03,
                                users=users, seed=i)
                   for i in range(8)]
        results = run_workers(configs, redis_url)
        sim_stats = sim.stats()

    heaviest = 20  # userFills; clearinghouseState is 2
    spent = [tuple(g) for r in results for g in r["grants"]] + [tuple(c) for r in results for c in r["charges"]]
    assert max_window_weight(spent) <= target + heaviest  # type: ignore[arg-type]
    assert sim_stats["rate_limited"] == 0 and sum(r["rate_limited"] for r in results) == 0
    assert not any(r["errors"] for r in results)
    assert sim_stats["info_requests"].get("userFills", 0) > 0  # the mix really had heavy requests

    start_us = results[0]["start_at"] * 1e6
    steady = weight_in(spent, start_us + 5e6, start_us + 65e6)  # type: ignore[arg-type]
    assert steady >= 0.9 * target, f"only {steady} of {target} weight used in a busy minute"
    assert all(sum(w for _, w in r["grants"]) > 0.05 * target for r in results)  # nobody starved
    stats = SyncWeightBudget(redis_client, keys, BudgetConfig(group=group, weight_per_minute=target)).stats()
    assert stats.rate_limited == 0 and stats.spent == sum(w for _, w in spent)
