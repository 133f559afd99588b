"""Benchmark: the shared weight budget with >= 8 worker processes against the simulator.

The same uneven workload runs three times, each against a fresh simulator (which enforces the exchange's
1200 weight per minute per IP and answers 429 beyond it):

- **shared**: every process takes weight from one Redis budget group (ours);
- **split** (naive baseline): each process limits itself to target / N on its own;
- **unshared** (naive baseline): each process limits itself to the whole target, unaware of the others.

Half the processes always have work (two requests in flight each), half are light (a request every 2 s).
Figures per mode: utilisation = weight spent / target over a steady window, the largest weight any 60 s
window held (from the grants), and the 429s (the simulator's count and the clients'). The point is the
ratio: the shared budget uses ~all of the target with zero 429s; a static split wastes the light processes'
share; no coordination overshoots the exchange's limit and collects 429s.

`python -m hyperfollow.bench.bench_budget worker CONFIG_JSON` is one load process (also used by the tests).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hyperfollow.bench.support import servers
from hyperfollow.core.keys import purge_namespace

__all__ = ["WorkerConfig", "max_window_weight", "run", "run_workers", "weight_in"]

WORKERS = 8
TARGET = 1080  # the default: 1200 x 0.9


@dataclass
class WorkerConfig:
    """One load process. `info_url` None: take weight only (no HTTP), to test the budget alone."""

    redis_url: str
    namespace: str
    group: str
    weight_per_minute: int
    start_key: str
    out: str
    duration: float
    info_url: str | None = None
    concurrency: int = 2
    pace: float = 0.0  # seconds each task rests between requests (0: as fast as the budget allows)
    fills_fraction: float = 0.0  # share of userFills requests (weight 20 + per-item extra)
    weight: int = 2  # budget-only mode: weight per acquire
    users: list[str] = field(default_factory=list)
    seed: int = 0


# --- one worker process ----------------------------------------------------------------------------------------
async def _worker(config: WorkerConfig) -> dict[str, Any]:
    import redis.asyncio as aioredis
    from prometheus_client import REGISTRY

    from hyperfollow.core.budget import BudgetConfig, Grant, WeightBudget
    from hyperfollow.core.errors_exchange import ExchangeError
    from hyperfollow.core.hl_info import InfoClient
    from hyperfollow.core.keys import RedisKeys

    grants: list[tuple[int, int]] = []
    charges: list[tuple[int, int]] = []

    class RecordingBudget(WeightBudget):
        async def acquire(self, weight: int, timeout: float | None = None) -> Grant:
            grant = await super().acquire(weight, timeout)
            grants.append((grant.slot_us, weight))
            return grant

        async def charge(self, weight: int) -> None:
            await super().charge(weight)
            if weight > 0:
                charges.append((int(time.time() * 1e6), weight))

    client = aioredis.from_url(config.redis_url)
    budget = RecordingBudget(client, RedisKeys(config.namespace),
                             BudgetConfig(group=config.group, weight_per_minute=config.weight_per_minute))
    info = InfoClient(config.info_url, budget=budget, attempts=3) if config.info_url else None
    rng = random.Random(config.seed)
    errors: dict[str, int] = {}
    print("ready", flush=True)
    while (start := await client.get(config.start_key)) is None:
        await asyncio.sleep(0.02)
    start_at = float(start)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = start_at + config.duration

    async def task(index: int) -> None:
        n = index
        while time.time() < deadline:
            if info is None:
                await budget.acquire(config.weight)
            else:
                user = config.users[n % len(config.users)]
                n += config.concurrency
                try:
                    if rng.random() < config.fills_fraction:
                        await info.user_fills(user)
                    else:
                        await info.clearinghouse_state(user)
                except ExchangeError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if config.pace:
                await asyncio.sleep(config.pace * rng.uniform(0.8, 1.2))

    try:
        await asyncio.gather(*(task(i) for i in range(config.concurrency)))
    finally:
        if info is not None:
            await info.aclose()
        await client.aclose()

    def sample(outcome: str) -> int:
        return int(sum(REGISTRY.get_sample_value("hyperfollow_exchange_requests_total",
                                                 {"type": t, "outcome": outcome}) or 0
                       for t in ("clearinghouseState", "userFills")))

    return {"grants": grants, "charges": charges, "ok": sample("ok"), "rate_limited": sample("rate_limited"),
            "server_errors": sample("server_error"), "errors": errors}


def _worker_main(argv: list[str]) -> None:
    config = WorkerConfig(**json.loads(argv[0]))
    result = asyncio.run(_worker(config))
    Path(config.out).write_text(json.dumps(result))


# --- the parent: start workers, gather what they did --------------------------------------------------------------
def run_workers(configs: list[WorkerConfig], redis_url: str, timeout: float | None = None,
                monitor: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Start one process per config, release them together, wait, and return their results.

    `monitor` is called about twice a second while they run (to sample the simulator, say).
    """
    import redis

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "hyperfollow.bench.bench_budget", "worker",
                               json.dumps(asdict(c))], stdout=subprocess.PIPE, env=env, text=True)
             for c in configs]
    try:
        for proc in procs:  # each prints "ready" once imported and connected
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"budget worker failed to start (exit {proc.poll()})")
        client = redis.Redis.from_url(redis_url)
        start_keys = {c.start_key for c in configs}
        start_at = time.time() + 0.3
        for key in start_keys:
            client.set(key, repr(start_at), ex=3600)
        client.close()
        limit = time.monotonic() + (timeout if timeout is not None else max(c.duration for c in configs) + 120)
        while any(proc.poll() is None for proc in procs):
            if time.monotonic() > limit:
                raise RuntimeError("budget workers did not finish in time")
            if monitor is not None:
                monitor()
            time.sleep(0.5)
        failed = [proc.returncode for proc in procs if proc.returncode != 0]
        if failed:
            raise RuntimeError(f"budget workers exited with {failed}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for c in configs:
        result = json.loads(Path(c.out).read_text())
        result["start_at"] = start_at
        results.append(result)
    return results


def weight_in(events: list[tuple[int, int]], start_us: float, end_us: float) -> int:
    return sum(w for t, w in events if start_us <= t < end_us)


def max_window_weight(events: list[tuple[int, int]], window_us: float = 60e6) -> int:
    """The most weight any window of that length holds (windows start at each event: that is where maxima are)."""
    ordered = sorted(events)
    best, total, j = 0, 0, 0
    for i, (start, _) in enumerate(ordered):
        if i:
            total -= ordered[i - 1][1]
        j = max(j, i)
        while j < len(ordered) and ordered[j][0] < start + window_us:
            total += ordered[j][1]
            j += 1
        best = max(best, total)
    return best


def _users(count: int = 400) -> list[str]:
    rng = random.Random(7)
    return ["0x" + "".join(rng.choice("0123456789abcdef") for _ in range(40)) for _ in range(count)]


def _phase(mode: str, redis_url: str, namespace: str, duration: float, window: tuple[float, float],
           workdir: Path) -> dict[str, Any]:
    from hyperfollow.core.keys import RedisKeys
    from hyperfollow.sim.server import SimConfig, SimServer

    group = f"bench-{uuid.uuid4().hex[:6]}"
    users = _users()
    with SimServer(SimConfig(seed=1, traders=500, coins=10, trades_per_second=5.0), port=0) as sim:
        configs = []
        for i in range(WORKERS):
            busy = i % 2 == 0
            per_worker = {"shared": TARGET, "split": TARGET // WORKERS, "unshared": TARGET}[mode]
            configs.append(WorkerConfig(
                redis_url=redis_url, namespace=namespace,
                group=group if mode == "shared" else f"{group}-w{i}", weight_per_minute=per_worker,
                start_key=RedisKeys(namespace).bench(f"{group}:start"), out=str(workdir / f"{mode}-{i}.json"),
                duration=duration, info_url=sim.info_url, concurrency=2 if busy else 1,
                pace=0.0 if busy else 2.0, fills_fraction=0.02 if busy else 0.0, users=users, seed=i))
        peak = 0

        def sample() -> None:  # the simulator's own sliding 60 s window of accepted weight, as the exchange sees it
            nonlocal peak
            peak = max(peak, sum(sim.stats()["weight_used"].values()))

        results = run_workers(configs, redis_url, monitor=sample)
        sample()
        sim_stats = sim.stats()
    start_us = results[0]["start_at"] * 1e6
    grants = [tuple(g) for r in results for g in r["grants"]] + [tuple(c) for r in results for c in r["charges"]]
    spent = weight_in(grants, start_us + window[0] * 1e6, start_us + window[1] * 1e6)  # type: ignore[arg-type]
    minutes = (window[1] - window[0]) / 60
    errors: dict[str, int] = {}
    for r in results:
        for name, count in r["errors"].items():
            errors[name] = errors.get(name, 0) + count
    return {
        "mode": mode,
        # weight our budgets granted (with zero 429s, what the exchange accepted) / target, in the steady window
        "utilisation": round(spent / (TARGET * minutes), 4),
        "weight_granted_per_minute": round(spent / minutes, 1),
        "max_granted_in_any_60s": max_window_weight(grants) if duration >= 60 else None,  # type: ignore[arg-type]
        "peak_exchange_window_weight": peak,  # the simulator's sliding 60 s window, sampled every 0.5 s
        "requests_ok": sum(r["ok"] for r in results),
        "http_429_client": sum(r["rate_limited"] for r in results),
        "http_429_sim": int(sim_stats["rate_limited"]),
        "errors": errors,
    }


def run(quick: bool = False) -> dict[str, Any]:
    import redis

    redis_url = servers()[1]
    namespace = f"bench{uuid.uuid4().hex[:6]}:"
    duration, window = (30.0, (5.0, 25.0)) if quick else (80.0, (10.0, 70.0))
    phases: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
            for mode in ("shared", "split", "unshared"):
                phases[mode] = _phase(mode, redis_url, namespace, duration, window, Path(tmp))
    finally:
        client = redis.Redis.from_url(redis_url)
        purge_namespace(client, namespace)
        client.close()
    shared, split = phases["shared"], phases["split"]
    return {
        "workers": WORKERS,
        "target_weight_per_minute": TARGET,
        "exchange_limit_per_minute": 1200,
        "measured_window_s": window[1] - window[0],
        "utilisation_shared": shared["utilisation"],
        "http_429_shared": shared["http_429_sim"],
        "utilisation_split_baseline": split["utilisation"],
        "utilisation_ratio_shared_vs_split": round(shared["utilisation"] / split["utilisation"], 2)
        if split["utilisation"] else None,
        "http_429_unshared_baseline": phases["unshared"]["http_429_sim"],
        "phases": phases,
    }


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2:])
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
