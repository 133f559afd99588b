"""The whole tracking path as processes: the simulator, `hyperfollow discovery`, 2 shards x 2 `hyperfollow
worker` (each an RQ worker and a feeder candidate), real PostgreSQL and Redis.

Every position change the simulator made for tracked traders is stored exactly once (checked against its
ground truth by `compare_with_truth`), with zero 429s; then a worker is killed with SIGKILL in the middle of a
batch and, once the rest have recovered (its claims expire, another pod's feeder takes over if it led), the
truth still matches: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
import redis
from rq.job import Job
from sqlalchemy import Engine, text
from support import wait_for

from hyperfollow.bench.bench_tracking import TrackingSystem, catch_up, compare_with_truth, load_events
from hyperfollow.core.keys import RedisKeys, purge_namespace
from hyperfollow.sim.server import SimConfig

pytestmark = pytest.mark.slow

WORKER_ENV = {
    "BATCH_SIZE": "10",
    "HYPERFOLLOW_WORKER_CLAIM_LEASE_S": "6",   # a killed batch's traders are free again after 6 s
    "HYPERFOLLOW_WORKER_LEASE_TTL_S": "4",     # a killed feeder is replaced after 4 s
    "HYPERFOLLOW_WORKER_MAINTENANCE_S": "10",
}


@pytest.fixture(scope="module")
def system(service_env: dict[str, str], engine: Engine, redis_url: str, redis_namespace: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingSystem]:
    from hyperfollow.core.db.models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    client = redis.Redis.from_url(redis_url)
    purge_namespace(client, redis_namespace)
    client.close()
    env = {**service_env, "HYPERFOLLOW_BUDGET_GROUP": "e2e-tracking", "LOG_LEVEL": "INFO"}
    made = TrackingSystem(SimConfig(seed=21, traders=300, coins=5, trades_per_second=1.5), env=env,
                          keys=RedisKeys(redis_namespace), shards=2, workers_per_shard=2,
                          log_dir=tmp_path_factory.mktemp("tracking-e2e"), worker_env=WORKER_ENV)
    with made:
        yield made


def tracked_traders(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT address FROM traders")).scalars())


def check(system: TrackingSystem, engine: Engine) -> dict:
    caught = catch_up(system, engine, cap_s=40)
    assert caught["traders_not_refreshed"] == 0, "every trader that changed was refreshed after the pause"
    report = compare_with_truth(caught["truth"], load_events(engine), tracked_traders(engine))
    figures = report.figures()
    print(f"\ntracking vs ground truth: {figures}")
    assert report.errors == [], report.errors[:10]
    assert report.untracked_records == 0  # discovery found everyone who traded
    assert report.records > 50 and report.events >= report.seen_individually > 0
    assert system.sim.stats()["rate_limited"] == 0
    return figures


def test_every_change_is_stored_exactly_once_with_zero_429s(system: TrackingSystem, engine: Engine) -> None:
    system.sim.resume()
    time.sleep(20)
    figures = check(system, engine)
    # at this trade rate polling sees most changes one by one (several fills of one order are one change)
    assert figures["recall_individual"] > 0.5
    with engine.connect() as conn:
        unpublished = conn.execute(text("SELECT count(*) FROM trade_events WHERE published_at IS NULL")).scalar()
        assert conn.execute(text("SELECT count(*) FROM user_state_history WHERE account_value IS NULL")).scalar() == 0
    assert unpublished == 0
    events = system.redis.xlen(system.keys.events_stream)
    assert events == figures["events"]  # the stream holds each stored event once


def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(system: TrackingSystem,
                                                                        engine: Engine) -> None:
    system.sim.resume()
    # a rotation batch (10 traders, several seconds) is the likeliest to die with traders left to do
    victim = wait_for(lambda: system.busy_worker("i"), timeout=30, step=0.02, what="a worker running a batch")
    name, pid, job_id = victim
    batch = Job.fetch(job_id, connection=system.redis).args[1]
    os.kill(pid, signal.SIGKILL)
    killed_at = datetime.now(UTC)
    system.processes[name].wait(timeout=10)

    def refreshed_since_the_kill() -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM traders WHERE address = ANY(:a) AND last_tracked_at > :t"),
                                {"a": batch, "t": killed_at}).scalar() == len(batch)

    # trading goes on; the killed batch's claims expire (6 s) and all of its traders are refreshed again
    wait_for(refreshed_since_the_kill, timeout=60, step=0.5, what="the killed batch's traders refreshed again")
    shard, index = name.split("-w")
    system.start_worker(shard, int(index))  # what the Deployment would do
    time.sleep(5)
    check(system, engine)
    stream = system.redis.xrange(system.keys.events_stream)
    ids = [int(orjson.loads(fields[b"data"])["id"]) for _, fields in stream]
    assert len(ids) == len(set(ids))


def test_sigterm_finishes_the_current_trader_hands_the_rest_back_and_exits(system: TrackingSystem,
                                                                           engine: Engine) -> None:
    system.sim.resume()
    for _ in range(3):  # the batch seen running may end before the signal lands: then try another
        name, pid, job_id = wait_for(lambda: system.busy_worker("i"), timeout=30, step=0.02,
                                     what="a worker running a batch")
        signalled = datetime.now(UTC)
        os.kill(pid, signal.SIGTERM)
        assert system.processes[name].wait(timeout=60) == 0  # a warm shutdown, well inside the grace period
        shard, index = name.split("-w")
        system.start_worker(shard, int(index))
        job = Job.fetch(job_id, connection=system.redis)
        if job.ended_at is not None and job.ended_at.replace(tzinfo=UTC) < signalled:
            continue
        assert job.get_status() == "finished"  # the running job completed, it was not abandoned
        summary = job.return_value()
        assert summary["stopped"] == "shutdown" or summary["released"] == 0
        if summary["stopped"] == "shutdown":
            assert summary["released"] > 0  # what it did not do was handed back, not lost
        break
    else:
        pytest.fail("no batch was still running when SIGTERM arrived, three times")
    time.sleep(5)
    check(system, engine)
