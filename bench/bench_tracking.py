"""Benchmark: sharded tracking against the simulator — budget use, and detection latency active-first vs the
seed's plain oldest-first rotation, in the same run on the same simulated market.

The whole system runs as processes: the simulator (in this process), `hyperfollow discovery`, and 2 shards x
2 `hyperfollow worker` processes sharing one weight budget at the exchange's real limit (1200 weight per
minute per IP, our target 90 %: 540 `clearinghouseState` per minute). The simulated population (5,000
traders, `--quick`: 2,000) is registered up front and observed once before the market opens (a deployment
that has been running for a while), so every trader competes for the budget. Each phase then

1. opens the market for `MARKET_S` seconds (same seed, so the same trades in both phases) and counts the
   `clearinghouseState` answers the simulator served in that window: (a) refreshes per minute vs the target;
2. pauses the market and lets the trackers catch up (until every trader that traded has been refreshed
   since, or a cap: with plain rotation that takes up to one full pass over the population);
3. compares what was stored with the simulator's ground truth (:func:`compare_with_truth`): no event stored
   twice, every stored state was the true state when it was observed, the final states match; and
   (b) detection latency per change = stored (commit) time − the change's time on the exchange.

Phase A uses active-first selection (discovery's activity marks), phase B `oldest_first` (the seed's way).
"""

from __future__ import annotations

import bisect
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import redis
from rq import Queue, Worker
from sqlalchemy import Engine, text

from hyperfollow.bench.support import percentiles, scratch_database, servers
from hyperfollow.core.db.engine import make_engine
from hyperfollow.core.keys import ACTIVE_BUCKETS, RedisKeys, purge_namespace
from hyperfollow.core.slots import slot, tile
from hyperfollow.sim.server import SimConfig, SimServer

__all__ = ["StoredEvent", "TrackingSystem", "TruthReport", "compare_with_truth", "load_events", "run"]

State = tuple[Decimal, Decimal | None]
FLAT: State = (Decimal(0), None)


def state_of(position: Mapping[str, Any] | None) -> State:
    """(signed size, entry price) of a position object (truth's before/after or an event's position); flat."""
    if not position:
        return FLAT
    size = Decimal(str(position.get("szi") or "0"))
    if size == 0:
        return FLAT
    entry = position.get("entryPx")
    return size.normalize(), Decimal(str(entry)).normalize() if entry not in (None, "") else None


@dataclass(frozen=True)
class StoredEvent:
    id: int
    trader: str
    coin: str
    event_type: str
    previous: State
    current: State
    observed_ms: int
    since_ms: int | None  # the previous observation of the trader (None: the first)
    created_ms: int


def _ms(value: str | datetime | None) -> int | None:
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return round(when.timestamp() * 1000)


def load_events(engine: Engine) -> list[StoredEvent]:
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT e.id, t.address, e.coin, e.event_type, e.details, e.timestamp, e.created_at
            FROM trade_events e JOIN traders t ON t.id = e.trader_id ORDER BY e.id""")).all()
    return [StoredEvent(id=r.id, trader=r.address, coin=r.coin, event_type=r.event_type,
                        previous=state_of(r.details.get("previous_position")),
                        current=state_of(r.details.get("current_position")), observed_ms=_ms(r.timestamp) or 0,
                        since_ms=_ms(r.details.get("previous_observed_at")), created_ms=_ms(r.created_at) or 0)
            for r in rows]


@dataclass
class TruthReport:
    """How stored events compare with the simulator's ground truth (see :func:`compare_with_truth`)."""

    records: int = 0  # position changes of tracked traders
    untracked_records: int = 0  # changes of traders never stored (discovery missed them)
    events: int = 0
    pairs: int = 0  # (trader, coin) with changes
    observable: int = 0  # changes as a poller can tell them apart: one per (trader, coin, millisecond)
    seen_individually: int = 0  # observable changes that one event reports exactly (nothing else in between)
    covered: int = 0  # changes inside some event's observation interval
    latencies: list[float] = field(default_factory=list)  # seconds, per covered change
    errors: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.seen_individually / self.observable if self.observable else 1.0

    def figures(self) -> dict[str, Any]:
        latency = {k: round(v, 3) for k, v in percentiles(self.latencies).items()}
        return {"changes": self.records, "observable_changes": self.observable, "events": self.events,
                "untracked_changes": self.untracked_records, "recall_individual": round(self.recall, 4),
                "changes_covered": self.covered, "violations": len(self.errors), "latency_s": latency}


def compare_with_truth(truth: Iterable[Mapping[str, Any]], events: Iterable[StoredEvent], tracked: set[str],
                       *, final: bool = True) -> TruthReport:
    """Check stored events against ground truth, per (trader, coin). Polling sees the net change between two
    observations, so "every change stored exactly once" means:

    - the events chain: each starts from the state the previous one ended in (the first from flat), so none
      is missing and none is stored twice;
    - each event's state is the true state at its observation time (or one of the states at that very ms);
    - with `final`, the last event's state (flat without events) is the final true state: nothing was lost.

    Recall is the share of observable changes (one per trader, coin and millisecond: an order's fills land
    together) that one event reports on its own; latency is measured for every change inside an
    event's interval (previous observation, observation]: the event's commit time minus the change's time.
    """
    report = TruthReport()
    by_pair: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for record in truth:
        if record["trader"] in tracked:
            by_pair[(record["trader"], record["coin"])].append(record)
            report.records += 1
        else:
            report.untracked_records += 1
    stored: dict[tuple[str, str], list[StoredEvent]] = defaultdict(list)
    for event in events:
        stored[(event.trader, event.coin)].append(event)
        report.events += 1
    report.pairs = len(by_pair)
    report.observable = sum(len({int(r["time"]) for r in records}) for records in by_pair.values())
    for pair in sorted(set(by_pair) | set(stored)):
        records = sorted(by_pair.get(pair, []), key=lambda r: r["seq"])
        mine = sorted(stored.get(pair, []), key=lambda e: (e.observed_ms, e.id))
        _check_pair(pair, records, mine, report, final)
    return report


def _check_pair(pair: tuple[str, str], records: list[Mapping[str, Any]], events: list[StoredEvent],
                report: TruthReport, final: bool) -> None:
    times = [int(r["time"]) for r in records]
    after = [state_of(r["after"]) for r in records]
    name = f"{pair[0]}/{pair[1]}"
    state = FLAT
    for event in events:
        if event.previous != state:
            report.errors.append(f"{name}: event {event.id} starts from {event.previous}, not {state} (dup/loss)")
        state = event.current
        before_t = bisect.bisect_left(times, event.observed_ms)
        upto_t = bisect.bisect_right(times, event.observed_ms)
        valid = {after[before_t - 1] if before_t else FLAT} | set(after[before_t:upto_t])
        if event.current not in valid:
            report.errors.append(f"{name}: event {event.id} says {event.current} at {event.observed_ms}, "
                                 f"truth {sorted(valid, key=str)}")
        start = 0 if event.since_ms is None else bisect.bisect_right(times, event.since_ms)
        inside = range(start, upto_t)
        report.covered += len(inside)
        report.latencies += [(event.created_ms - times[i]) / 1000 for i in inside]
        # changes in one millisecond (one order's fills) are one observable change
        if inside and times[inside[0]] == times[inside[-1]]:
            net = (state_of(records[inside[0]]["before"]), state_of(records[inside[-1]]["after"]))
            if net == (event.previous, event.current):
                report.seen_individually += 1
    if final and state != (after[-1] if after else FLAT):
        report.errors.append(f"{name}: final stored state {state}, truth {after[-1] if after else FLAT}")


# --- running the system -------------------------------------------------------------------------------------------
class TrackingSystem:
    """The simulator (in this process), discovery and shard workers (processes) on one database and Redis."""

    def __init__(self, sim_config: SimConfig, *, env: Mapping[str, str], keys: RedisKeys, shards: int,
                 workers_per_shard: int, log_dir: Path, worker_env: Mapping[str, str] | None = None) -> None:
        self.sim = SimServer(sim_config.model_copy(update={"start_paused": True}), port=0)
        self.keys = keys
        self.shards = [(f"shard{i}", slots) for i, slots in enumerate(tile(shards))]
        self.workers_per_shard = workers_per_shard
        self.log_dir = log_dir
        self.env = dict(env)
        self.worker_env = dict(worker_env or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.redis = redis.Redis.from_url(env["REDIS_URL"])

    def _env(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self.env, "HYPERLIQUID_API_URL": self.sim.info_url, "WEBSOCKET_URL": self.sim.ws_url, **extra}

    def _spawn(self, name: str, args: list[str], extra: Mapping[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen([sys.executable, "-m", "hyperfollow.core", *args], env=self._env(extra),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.processes[name] = process
        return process

    def start_worker(self, shard: str, index: int) -> subprocess.Popen[bytes]:
        slots = dict(self.shards)[shard]
        return self._spawn(f"{shard}-w{index}", ["worker", "--shard", shard, "--slots", str(slots)],
                           self.worker_env)

    def start(self, timeout: float = 60.0) -> TrackingSystem:
        self.sim.start()
        return self.start_processes(timeout)

    def start_processes(self, timeout: float = 60.0) -> TrackingSystem:
        """Discovery and the workers (the simulator already started); wait until all are ready."""
        self._spawn("discovery", ["discovery"], {})
        for shard, _ in self.shards:
            for index in range(self.workers_per_shard):
                self.start_worker(shard, index)
        deadline = time.monotonic() + timeout
        coins = self.sim.sim.config.coins
        while not self.ready(coins):
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}: {self.logs(name)[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the tracking system did not start in time")
            time.sleep(0.2)
        return self

    def ready(self, coins: int) -> bool:
        stats = self.sim.stats()
        if stats["ws_subscriptions"] < coins:
            return False
        for shard, _ in self.shards:
            queue = Queue(self.keys.track_queue(shard), connection=self.redis)
            if Worker.count(queue=queue) < self.workers_per_shard or not self.redis.get(self.keys.feeder_lock(shard)):
                return False
        return True

    def logs(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def busy_worker(self, kind: str | None = None) -> tuple[str, int, str] | None:
        """(process name, pid, job id) of a worker process running a batch (of `kind`, if given)."""
        pids = {p.pid: name for name, p in self.processes.items() if "-w" in name and p.poll() is None}
        for shard, _ in self.shards:
            for worker in Worker.all(queue=Queue(self.keys.track_queue(shard), connection=self.redis)):
                job_id = worker.get_current_job_id()
                if worker.pid in pids and job_id and (kind is None or job_id.startswith(f"{kind}-")):
                    return pids[worker.pid], worker.pid, job_id
        return None

    def marks(self) -> int:
        with self.redis.pipeline(transaction=False) as pipe:
            for bucket in range(ACTIVE_BUCKETS):
                pipe.zcard(self.keys.active(bucket))
            return sum(pipe.execute())

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.sim.stop()
        self.redis.close()

    def __enter__(self) -> TrackingSystem:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def truth_of(sim: SimServer) -> list[dict[str, Any]]:
    return sim.truth()


def not_caught_up(engine: Engine, truth: list[Mapping[str, Any]]) -> int:
    """Traders whose latest refresh is not newer than their latest change in `truth` (or never happened)."""
    last_change: dict[str, int] = {}
    for record in truth:
        last_change[record["trader"]] = max(last_change.get(record["trader"], 0), int(record["time"]))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT address, last_tracked_at FROM traders WHERE address = ANY(:a)"),
                            {"a": sorted(last_change)}).all()
    refreshed = {row.address: _ms(row.last_tracked_at) or 0 for row in rows}
    return sum(1 for trader, changed in last_change.items() if refreshed.get(trader, 0) <= changed)


def catch_up(system: TrackingSystem, engine: Engine, cap_s: float) -> dict[str, Any]:
    """Pause the market and wait until every trader that changed has been refreshed since (or `cap_s`)."""
    system.sim.pause()
    time.sleep(1.0)  # discovery's last flush
    truth = truth_of(system.sim)
    started = time.monotonic()
    left = not_caught_up(engine, truth)
    while left and time.monotonic() - started < cap_s:
        time.sleep(0.5)
        left = not_caught_up(engine, truth)
    return {"seconds": round(time.monotonic() - started, 1), "traders_not_refreshed": left, "truth": truth}


# --- the benchmark --------------------------------------------------------------------------------------------------
MARKET_S = 90.0
RATE = 2.0  # trades per second: ~4 traders change per second, about half of the budget's 9 refreshes


def _observe_population(sim: SimServer, engine: Engine) -> int:
    """Register every simulated trader and store one observation of each (all flat before the market opens)."""
    addresses = sim.addresses()
    with engine.begin() as conn:
        for start in range(0, len(addresses), 1000):
            chunk = addresses[start:start + 1000]
            states = [sim.info({"type": "clearinghouseState", "user": a}) for a in chunk]
            at = [datetime.fromtimestamp(s["time"] / 1000, UTC) for s in states]
            conn.execute(text("""
                INSERT INTO traders (address, slot, last_tracked_at) SELECT * FROM unnest(
                    CAST(:a AS varchar[]), CAST(:s AS int2[]), CAST(:t AS timestamptz[]))"""),
                         {"a": chunk, "s": [slot(a) for a in chunk], "t": at})
            conn.execute(text("""
                INSERT INTO user_state_history (trader_id, timestamp, state_data, account_value, total_notional)
                SELECT t.id, u.at, CAST(u.state AS jsonb), 0, 0
                FROM unnest(CAST(:a AS varchar[]), CAST(:t AS timestamptz[]), CAST(:j AS text[])) AS u(a, at, state)
                JOIN traders t ON t.address = u.a"""),
                         {"a": chunk, "t": at, "j": [orjson.dumps(s).decode() for s in states]})
    return len(addresses)


def run_phase(selection: str, *, quick: bool, database_server: str, redis_url: str) -> dict[str, Any]:
    traders = 2000 if quick else 5000
    market_s = 30.0 if quick else MARKET_S
    namespace = f"hfb{uuid.uuid4().hex[:6]}:"
    keys = RedisKeys(namespace)
    config = SimConfig(seed=7, traders=traders, coins=12, trades_per_second=RATE)
    with scratch_database(database_server) as database_url, tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFOLLOW_")}
        env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, HYPERFOLLOW_REDIS_NAMESPACE=namespace,
                   HYPERFOLLOW_HOME=home, HYPERFOLLOW_LOG_FORMAT="json", HYPERFOLLOW_BUDGET_GROUP="bench",
                   LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        worker_env = {"HYPERFOLLOW_WORKER_SELECTION": selection, "BATCH_SIZE": "50"}
        engine = make_engine(database_url)
        system = TrackingSystem(config, env=env, keys=keys, shards=2, workers_per_shard=2, log_dir=Path(home),
                                worker_env=worker_env)
        try:
            system.sim.start()
            population = _observe_population(system.sim, engine)
            system.start_processes()
            system.sim.resume()
            begin = system.sim.stats()
            time.sleep(market_s)
            end = system.sim.stats()
            # a full rotation at the target rate, plus slack: the cap of the catch-up
            caught = catch_up(system, engine, cap_s=population / 9.0 * 1.2 + 30)
            events = load_events(engine)
            with engine.connect() as conn:
                tracked = set(conn.execute(text("SELECT address FROM traders")).scalars())
            report = compare_with_truth(caught["truth"], events, tracked)
            stats = system.sim.stats()
        finally:
            system.stop()
            engine.dispose()
            _drop_namespace(redis_url, namespace)
    minutes = (end["time"] - begin["time"]) / 60_000
    served = end["info_requests"].get("clearinghouseState", 0) - begin["info_requests"].get("clearinghouseState", 0)
    target_per_min = 1200 * 0.9 / 2
    return {
        "selection": selection,
        "traders": population,
        "market_seconds": market_s,
        "refreshes_per_min": round(served / minutes, 1),
        "target_refreshes_per_min": target_per_min,
        "budget_use": round(served / minutes / target_per_min, 4),
        "sim_429s": stats["rate_limited"],
        "catch_up_seconds": caught["seconds"],
        "traders_not_refreshed_at_cap": caught["traders_not_refreshed"],
        **report.figures(),
        "first_violations": report.errors[:5],
    }


def _drop_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    purge_namespace(client, namespace)
    client.close()


def run(quick: bool = False) -> dict[str, Any]:
    database_server, redis_url = servers()
    active = run_phase("active_first", quick=quick, database_server=database_server, redis_url=redis_url)
    rotation = run_phase("oldest_first", quick=quick, database_server=database_server, redis_url=redis_url)
    a50, b50 = active["latency_s"].get("p50"), rotation["latency_s"].get("p50")
    a99, b99 = active["latency_s"].get("p99"), rotation["latency_s"].get("p99")
    return {
        "workload": {"sim_trades_per_second": RATE, "shards": 2, "workers_per_shard": 2,
                     "weight_limit_per_min": 1200, "budget_target": 0.9},
        "active_first": active,
        "oldest_first": rotation,
        "latency_ratio_p50": round(b50 / a50, 1) if a50 and b50 else None,
        "latency_ratio_p99": round(b99 / a99, 1) if a99 and b99 else None,
    }
