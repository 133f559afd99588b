"""When the supervisor restarts a service, and when it gives up. Pure: no processes, no clocks of its own.

The rules (docs/local.md):

- A service that exits without being asked to (any exit status) is restarted after a back-off of 1, 2, 4, 8,
  16 s for its 1st to 5th restart in a row. A 6th exit in a row marks it **failed**: it is reported and left
  stopped, the others keep running. A service that ran for `stable_after_s` (5 minutes) before exiting starts
  a new row, so rare crashes over days never add up to a failure.
- Health is checked every 10 s once the service is up. A service whose health endpoint does not answer at all
  (connection refused, timeout) three checks in a row is hung: it is stopped (SIGTERM, grace, SIGKILL) and
  restarted like a crash. One that answers "unhealthy" three checks in a row is restarted the same way only
  when its health describes the service itself (workers' feeder thread, the scheduler's cron thread, the
  simulator). Discovery's and the API's health describe the exchange and the stores, which they retry on their
  own: they are shown `unhealthy` and left running.
- While starting, a service has `start_timeout_s` to answer healthy before failed checks count.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Health", "HealthTracker", "RestartBudget", "backoff_delay"]


def backoff_delay(restart_number: int, base_s: float = 1.0, cap_s: float = 60.0) -> float:
    """Seconds to wait before the `restart_number`-th restart in a row (1-based): base, 2·base, 4·base, …"""
    if restart_number < 1:
        raise ValueError("restarts are counted from 1")
    return min(cap_s, base_s * 2 ** (restart_number - 1))


@dataclass
class RestartBudget:
    """Counts restarts in a row; says how long to wait before the next one, or that the service has failed."""

    max_restarts: int = 5
    stable_after_s: float = 300.0
    base_s: float = 1.0
    in_a_row: int = 0

    def after_exit(self, ran_for_s: float) -> float | None:
        """Back-off before restarting a service that exited after running `ran_for_s`; None = give up."""
        if ran_for_s >= self.stable_after_s:
            self.in_a_row = 0
        if self.in_a_row >= self.max_restarts:
            return None
        self.in_a_row += 1
        return backoff_delay(self.in_a_row, self.base_s)


class Health(Enum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"      # the service answered, and said it is not well (e.g. HTTP 503)
    NO_ANSWER = "not answering"  # nothing answered: refused, timed out, or garbage


@dataclass
class HealthTracker:
    """Consecutive failed checks of one running service instance."""

    restart_when_unhealthy: bool = True
    checks_to_restart: int = 3
    failures: int = 0
    last: Health | None = None
    ever_healthy: bool = False

    def record(self, result: Health, *, counting: bool = True) -> bool:
        """Record a check; return True when the service should be restarted. `counting` is False while the
        service is still within its start-up time and has not been healthy yet."""
        self.last = result
        if result is Health.HEALTHY:
            self.failures = 0
            self.ever_healthy = True
            return False
        if not counting and not self.ever_healthy:
            return False
        self.failures += 1
        if self.failures < self.checks_to_restart:
            return False
        return result is Health.NO_ANSWER or self.restart_when_unhealthy
