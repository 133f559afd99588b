"""The operator with the session's real PostgreSQL and Redis: shard figures in status, Redis cleanup on delete."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import yaml
from k8s.conftest import Cluster, eventually, operator_env, running_operator, shard_manifest
from rq import Queue
from sqlalchemy import Engine, insert

from hyperfollow.core.db.models import Trader
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.slots import slot

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.fixture(scope="module")
def operator_with_stores(cluster: Cluster, database_url: str, redis_url: str, redis_namespace: str
                         ) -> Iterator[Any]:
    env = operator_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url,
                        "HYPERFOLLOW_REDIS_NAMESPACE": redis_namespace})
    with running_operator(env) as runner:
        yield runner


def _traders(db: Engine, now: datetime) -> tuple[int, int]:
    """Insert traders; return (active ones in slots [0, 8192), their staleness in seconds)."""
    rows, expected, oldest = [], 0, 0
    for index in range(40):
        address = "0x" + secrets.token_hex(20)
        row: dict[str, Any] = {"address": address, "slot": slot(address), "is_active": index % 10 != 0,
                               "first_seen_at": now - timedelta(hours=2),
                               "last_tracked_at": now - timedelta(seconds=30 + index)}
        if index == 7:  # never refreshed: its age counts from when it was first seen
            row["last_tracked_at"] = None
            row["first_seen_at"] = now - timedelta(seconds=600)
        rows.append(row)
        if row["is_active"] and row["slot"] < 8192:
            expected += 1
            age = now - (row["last_tracked_at"] or row["first_seen_at"])
            oldest = max(oldest, int(age.total_seconds()))
    with db.begin() as conn:
        conn.execute(insert(Trader), rows)
    return expected, oldest


def test_status_shows_traders_staleness_queue_and_feeder(cluster: Cluster, operator_with_stores: Any,
                                                         namespace: str, db: Engine, redis_client: redis.Redis,
                                                         keys: RedisKeys) -> None:
    now = datetime.now(UTC)
    expected, oldest = _traders(db, now)
    assert expected > 5
    queue = Queue(keys.track_queue("figures"), connection=redis_client)
    queue.enqueue("builtins.len", "abc")
    queue.enqueue("builtins.len", "abcd")
    redis_client.set(keys.feeder_lock("figures"), "worker-pod-1", ex=60)
    redis_client.sadd(keys.feeder_pending("figures"), "0x" + "ab" * 20)

    cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump(shard_manifest("figures", 0, 8192, workers=1)))
    status = eventually(lambda: ((cluster.shard(namespace, "figures") or {}).get("status") or {}).get(
        "trackedTraders") is not None and cluster.shard(namespace, "figures")["status"], what="figures in status")
    assert status["trackedTraders"] == expected
    assert oldest <= status["stalenessSeconds"] <= oldest + 60
    assert status["queuedJobs"] == 2
    assert status["feeder"] == "worker-pod-1"
    row = cluster.kubectl("get", "ts", "figures", "-n", namespace).stdout.splitlines()[1].split()
    assert row[4] == str(expected)  # the TRADERS column

    # deleting the shard removes its queue (and jobs), feeder lease and pending set from Redis
    cluster.kubectl("delete", "-n", namespace, "ts/figures", "--wait=true", "--timeout=20s")
    assert not redis_client.exists(queue.key, keys.feeder_lock("figures"), keys.feeder_pending("figures"))
    assert queue.key.encode() not in redis_client.smembers(Queue.redis_queues_keys)
    assert cluster.deployment(namespace, "figures-workers") is None
