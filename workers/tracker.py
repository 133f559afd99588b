"""One trader's refresh: weight from the budget, `clearinghouseState`, diff, one transaction, then publish.

Order matters for "exactly once":

1. fetch the state (the exchange client takes the weight from the shared budget first, backs off on 429s
   and retries 5xx); a bad answer fails this trader only (:class:`TraderFailed`), which stays due;
2. when a reduction happened near the liquidation price, ask the fills whether it was a liquidation;
3. store events + snapshot + `last_tracked_at` in one transaction (workers/store.py);
4. after the commit: publish the events (Lua: stream then channel) and mark them published; clear the
   activity mark with the state's time. A crash between 3 and 4 loses nothing: the events wait for the
   republisher and the mark only causes one more refresh.

Database errors are not the trader's fault: they propagate and fail the batch (RQ retries it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.exceptions import RedisError

from hyperfollow.core.errors_exchange import (
    BudgetTimeout,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    MalformedResponse,
    RateLimited,
)
from hyperfollow.core.hl_models import ClearinghouseState
from hyperfollow.core.logging import get_logger
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.diff import diff_positions, positions_from_state
from hyperfollow.workers.liquidation import coins_needing_marks, liquidates, liquidation_candidates
from hyperfollow.workers.metrics import ACTIVITY_LAG, EVENTS, FAILURES, LIQUIDATION_CHECKS, PUBLISHED, REFRESHES
from hyperfollow.workers.publish import event_message
from hyperfollow.workers.store import (
    Observation,
    RecordResult,
    TraderRow,
    latest_snapshot,
    mark_published,
    record_observation,
)

__all__ = ["Refresh", "Tracker", "TraderFailed", "failure_kind"]

log = get_logger(__name__)


class TraderFailed(Exception):
    """This trader's refresh failed (bad or no answer); `kind` names why, for the metrics."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def failure_kind(error: Exception) -> str:
    if isinstance(error, RateLimited):
        return "rate_limited"
    if isinstance(error, ExchangeUnavailable):
        return "unavailable"
    if isinstance(error, MalformedResponse):
        return "malformed"
    if isinstance(error, ExchangeRejected):
        return "rejected"
    if isinstance(error, BudgetTimeout):
        return "budget"
    return "other"


@dataclass(frozen=True)
class Refresh:
    """What one refresh did."""

    address: str
    observed_ms: int
    events: int
    stale: bool
    published: int


class Tracker:
    def __init__(self, context: TrackingContext, shard: str) -> None:
        self.context = context
        self.shard = shard
        self.heartbeat = timedelta(seconds=context.settings.worker_heartbeat_snapshot_s)

    def _fetch(self, address: str) -> tuple[ClearinghouseState, int]:
        sent_ms = int(time.time() * 1000)
        try:
            state = self.context.run(self.context.info.clearinghouse_state(address))
        except ExchangeError as exc:
            raise TraderFailed(failure_kind(exc), str(exc)) from exc
        return state, state.time if state.time is not None else sent_ms

    def refresh(self, trader: TraderRow) -> Refresh:
        """Refresh one trader. Raises :class:`TraderFailed` for problems of this trader's answer."""
        address = trader.address
        state, observed_ms = self._fetch(address)
        raw = state.to_wire()
        try:
            positions = positions_from_state(raw)
        except ValueError as exc:
            raise TraderFailed("malformed", str(exc)) from exc
        self.context.mark_cache.update(positions.values(), observed_ms)
        observed_at = datetime.fromtimestamp(observed_ms / 1000, UTC)
        liquidated, checked_baseline = self._liquidations(trader, positions, observed_ms)
        result = record_observation(
            self.context.engine,
            Observation(trader=trader, state=raw, positions=positions, observed_at=observed_at,
                        account_value=state.margin_summary.account_value,
                        total_notional=state.margin_summary.total_ntl_pos),
            heartbeat=self.heartbeat, liquidated=liquidated, liquidation_baseline=checked_baseline)
        REFRESHES.labels(self.shard, "stale" if result.stale else "ok").inc()
        published = self._publish(result)
        self._clear_mark(address, observed_ms)
        return Refresh(address=address, observed_ms=observed_ms, events=len(result.events), stale=result.stale,
                       published=published)

    def _liquidations(self, trader: TraderRow, positions: dict, observed_ms: int) -> tuple[set[str], int | None]:
        """Coins whose reduction since the last snapshot the fills call a liquidation (and that snapshot's id)."""
        settings = self.context.settings
        if not settings.worker_liquidation_check:
            return set(), None
        with self.context.engine.connect() as conn:
            baseline = latest_snapshot(conn, trader.id)
        if baseline is None:
            return set(), None
        changes = diff_positions(baseline.positions, positions)
        start_ms = int(baseline.timestamp.timestamp() * 1000)
        marks, max_age_ms = self.context.mark_cache, settings.worker_liquidation_mark_max_age_ms
        if coins_needing_marks(changes, marks, observed_ms, max_age_ms):
            try:
                marks.update_mids(self.context.run(self.context.info.all_mids()), observed_ms)
            except ExchangeError as exc:  # judged without those marks: such a close is stored as a close
                log.warning("marks for the liquidation check failed", trader=trader.address, error=str(exc))
        coins = liquidation_candidates(changes, marks, observed_ms, settings.worker_liquidation_margin,
                                       max_age_ms=max_age_ms)
        if not coins:
            return set(), baseline.id
        try:
            fills = self.context.run(self.context.info.user_fills_by_time(trader.address, start_ms, observed_ms))
        except ExchangeError as exc:  # the close is still stored, as a close
            LIQUIDATION_CHECKS.labels(self.shard, "error").inc()
            log.warning("liquidation check failed", trader=trader.address, error=str(exc))
            return set(), baseline.id
        liquidated = {fill.coin for fill in fills if fill.coin in coins and liquidates(fill, trader.address)}
        LIQUIDATION_CHECKS.labels(self.shard, "liquidated" if liquidated else "not_liquidated").inc()
        return liquidated, baseline.id

    def _publish(self, result: RecordResult) -> int:
        if not result.events:
            return 0
        for event in result.events:
            EVENTS.labels(self.shard, event.event_type).inc()
        messages = [event_message(e.id, e.trader_id, e.address, e.timestamp, e.event_type, e.details)
                    for e in result.events]
        try:
            self.context.publisher.publish(messages)
        except RedisError as exc:  # stored, not published: the republisher sends them later
            log.warning("publishing events failed; left to the republisher", error=str(exc), events=len(messages))
            return 0
        mark_published(self.context.engine, [event.id for event in result.events])
        PUBLISHED.labels("worker").inc(len(messages))
        return len(messages)

    def _clear_mark(self, address: str, observed_ms: int) -> None:
        try:
            cleared = self.context.marks.clear(address, observed_ms)
        except RedisError as exc:  # the mark stays: one refresh more, nothing lost
            log.warning("clearing the activity mark failed", trader=address, error=str(exc))
            return
        if cleared.earliest_ms is not None:
            ACTIVITY_LAG.labels(self.shard).observe(max(0.0, (observed_ms - cleared.earliest_ms) / 1000))

    def count_failure(self, error: TraderFailed) -> None:
        REFRESHES.labels(self.shard, "failed").inc()
        FAILURES.labels(self.shard, error.kind).inc()
