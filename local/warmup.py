"""A fresh installation's first leaderboards, sooner than the scheduler's 10-minute tick.

The scheduler computes the leaderboard at every 10th minute (workers/scheduler.py); a user who just ran
`make run` would look at an empty leaderboard for up to 10 minutes. During its first 10 minutes, `up` asks for
a computation every `HYPERFOLLOW_UP_WARMUP_LEADERBOARD_S` seconds: it enqueues the scheduler's own job
(`hyperfollow.workers.leaderboard.compute_leaderboard`) on the scheduler's queue (`RedisKeys.periodic_queue`),
so the real scheduler process runs the real computation (it serializes on an advisory lock, so a run that
meets the cron's is harmless). After that the scheduler's schedule alone applies.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import redis
from rq import Queue

from hyperfollow.core.keys import RedisKeys

__all__ = ["LEADERBOARD_JOB", "LeaderboardWarmup"]

LEADERBOARD_JOB = "hyperfollow.workers.leaderboard.compute_leaderboard"
WARMUP_PERIOD_S = 600.0


@dataclass
class LeaderboardWarmup:
    redis_url: str
    keys: RedisKeys
    interval_s: float
    started: float
    period_s: float = WARMUP_PERIOD_S
    next_at: float | None = None

    def due(self, now: float) -> bool:
        if self.interval_s <= 0 or now - self.started > self.period_s:
            return False
        if self.next_at is None:
            self.next_at = self.started + self.interval_s
        return now >= self.next_at

    def request(self, now: float) -> bool:
        """Enqueue a computation unless one is still waiting; return True when one was enqueued."""
        self.next_at = now + self.interval_s
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            queue = Queue(self.keys.periodic_queue, connection=client)
            waiting = [job for job in queue.get_jobs() if job.func_name == LEADERBOARD_JOB]
            if waiting:
                return False
            queue.enqueue(LEADERBOARD_JOB, job_timeout=900, result_ttl=3600, failure_ttl=86_400,
                          description="leaderboard (first minutes of hyperfollow up)")
            return True
        except redis.RedisError:
            return False  # the scheduler's own schedule still applies; the next round tries again
        finally:
            with contextlib.suppress(redis.RedisError):
                client.close()
