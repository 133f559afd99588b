"""When `up` asks the scheduler for a first leaderboard."""

from __future__ import annotations

from hyperfollow.core.keys import RedisKeys
from hyperfollow.local.warmup import LeaderboardWarmup


def warmup(interval: float) -> LeaderboardWarmup:
    return LeaderboardWarmup("redis://unused", RedisKeys(""), interval_s=interval, started=1000.0, period_s=600)


def test_due_every_interval_during_the_first_minutes_only() -> None:
    made = warmup(60)
    assert not made.due(1000) and not made.due(1059)
    assert made.due(1060)
    made.next_at = 1060 + 60  # what request() does
    assert not made.due(1100) and made.due(1120)
    assert not made.due(1601)  # after the warm-up the scheduler's schedule alone applies


def test_zero_switches_it_off() -> None:
    assert not warmup(0).due(1060) and not warmup(0).due(1300)
