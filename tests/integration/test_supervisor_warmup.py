"""`up`'s first leaderboards: the scheduler's own job on the scheduler's own queue, never two waiting."""

from __future__ import annotations

import redis
from rq import Queue

from hyperfollow.core.keys import RedisKeys
from hyperfollow.local.warmup import LEADERBOARD_JOB, LeaderboardWarmup


def test_the_scheduler_job_is_enqueued_once_while_one_waits(redis_url: str, keys: RedisKeys,
                                                            redis_client: redis.Redis) -> None:
    queue = Queue(keys.periodic_queue, connection=redis_client)
    queue.empty()
    made = LeaderboardWarmup(redis_url, keys, interval_s=1, started=0.0)
    assert made.request(now=1.0)
    assert not made.request(now=2.0)  # the first is still waiting for the scheduler
    jobs = queue.get_jobs()
    assert [job.func_name for job in jobs] == [LEADERBOARD_JOB]
    assert jobs[0].timeout == 900
    queue.empty()
    assert made.request(now=3.0) and made.next_at == 4.0


def test_an_unreachable_redis_is_not_an_error(keys: RedisKeys) -> None:
    made = LeaderboardWarmup("redis://127.0.0.1:9/0", keys, interval_s=1, started=0.0)
    assert not made.request(now=1.0)
    assert made.next_at == 2.0  # tried again next round
