"""The weight budget shared by real processes: one atomic queue across them, nobody starved.

The slow test against the simulator (every 60 s window within the target, zero 429s) is in
`test_budget_sim.py`; this one checks the cross-process atomicity quickly at a high rate.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import redis

from hyperfollow.bench.bench_budget import WorkerConfig, max_window_weight, run_workers
from hyperfollow.core.budget import BudgetConfig, SyncWeightBudget
from hyperfollow.core.keys import RedisKeys


def test_eight_processes_never_overlap_their_slots(redis_url: str, redis_namespace: str, keys: RedisKeys,
                                                   redis_client: redis.Redis, tmp_path: Path) -> None:
    group = f"p{uuid.uuid4().hex[:6]}"
    rate = 120_000  # weight per minute: 0.5 ms per unit, so 2 s is thousands of grants
    configs = [WorkerConfig(redis_url=redis_url, namespace=redis_namespace, group=group, weight_per_minute=rate,
                            start_key=keys.bench(f"{group}:start"), out=str(tmp_path / f"w{i}.json"),
                            duration=2.0, concurrency=3, weight=1 + i % 3, seed=i)
               for i in range(8)]
    results = run_workers(configs, redis_url, timeout=60)

    grants = sorted((t, w) for r in results for t, w in r["grants"])
    emission_us = 60e6 / rate
    for (earlier, weight), (later, _) in itertools.pairwise(grants):
        assert later - earlier >= weight * emission_us - 1, "two processes got overlapping slots"
    # every 100 ms holds at most 100 ms' worth of weight plus one request
    assert max_window_weight(grants, window_us=100_000) <= rate / 600 + 3
    # FIFO across processes: every process was served, in proportion to its demand
    per_process = [sum(w for _, w in r["grants"]) for r in results]
    fair = sum(per_process) / len(per_process)
    assert min(per_process) > fair * 0.3, per_process
    stats = SyncWeightBudget(redis_client, keys, BudgetConfig(group=group, weight_per_minute=rate)).stats()
    assert stats.spent == sum(per_process) and stats.grants == len(grants)
