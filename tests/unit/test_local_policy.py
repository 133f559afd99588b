"""Restart back-off and the health rules of the local supervisor."""

from __future__ import annotations

import pytest

from hyperfollow.local.policy import Health, HealthTracker, RestartBudget, backoff_delay


def test_back_off_doubles_from_one_second() -> None:
    assert [backoff_delay(n) for n in range(1, 6)] == [1, 2, 4, 8, 16]
    assert backoff_delay(10, cap_s=60) == 60
    with pytest.raises(ValueError):
        backoff_delay(0)


def test_five_restarts_in_a_row_then_failed() -> None:
    budget = RestartBudget(max_restarts=5, stable_after_s=300)
    assert [budget.after_exit(1.0) for _ in range(5)] == [1, 2, 4, 8, 16]
    assert budget.after_exit(1.0) is None
    assert budget.after_exit(1.0) is None  # stays failed


def test_a_long_run_starts_a_new_row() -> None:
    budget = RestartBudget(max_restarts=2, stable_after_s=300)
    assert budget.after_exit(5) == 1 and budget.after_exit(5) == 2
    assert budget.after_exit(301) == 1  # ran 5 minutes: rare crashes never add up to a failure


def test_no_answer_three_times_restarts_any_service() -> None:
    tracker = HealthTracker(restart_when_unhealthy=False, checks_to_restart=3)
    assert not tracker.record(Health.NO_ANSWER)
    assert not tracker.record(Health.NO_ANSWER)
    assert tracker.record(Health.NO_ANSWER)


def test_unhealthy_answers_restart_only_services_whose_health_is_their_own() -> None:
    own = HealthTracker(restart_when_unhealthy=True, checks_to_restart=3)
    outside = HealthTracker(restart_when_unhealthy=False, checks_to_restart=3)
    assert [own.record(Health.UNHEALTHY) for _ in range(3)] == [False, False, True]
    assert [outside.record(Health.UNHEALTHY) for _ in range(5)] == [False] * 5
    assert outside.failures == 5 and outside.last is Health.UNHEALTHY


def test_a_healthy_answer_resets_the_count() -> None:
    tracker = HealthTracker(checks_to_restart=3)
    tracker.record(Health.NO_ANSWER)
    tracker.record(Health.NO_ANSWER)
    assert not tracker.record(Health.HEALTHY)
    assert not tracker.record(Health.NO_ANSWER) and tracker.failures == 1


def test_failures_while_starting_do_not_count_until_the_start_timeout() -> None:
    tracker = HealthTracker(checks_to_restart=2)
    assert [tracker.record(Health.NO_ANSWER, counting=False) for _ in range(10)] == [False] * 10
    assert tracker.failures == 0
    assert not tracker.record(Health.NO_ANSWER, counting=True)
    assert tracker.record(Health.NO_ANSWER, counting=True)
    # once it has been healthy, failures count even within the start time
    started = HealthTracker(checks_to_restart=1)
    started.record(Health.HEALTHY, counting=False)
    assert started.record(Health.NO_ANSWER, counting=False)
