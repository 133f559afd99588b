"""PostgreSQL side of a refresh: one transaction per trader stores the events, the snapshot and the time.

`record_observation` locks the trader's row (`FOR UPDATE`), so two refreshes of one trader (a retried job
next to a new batch) are serialized: the second diffs against what the first stored. It then

1. reads the latest snapshot (the diff's baseline); an observation not newer than it is *stale* and dropped
   (the stored sequence of states only moves forward in time);
2. diffs, and inserts the events with `ON CONFLICT (idempotency_key) DO NOTHING`: the key is derived from the
   baseline snapshot's id, so a retry of an attempt that never committed derives the same keys and one that
   did commit starts from the new snapshot — no event is stored twice, none lost;
3. stores a snapshot when positions changed, on the first observation, or as a heartbeat when the last one
   is older than the heartbeat interval (account value and total notional filled for the leaderboard);
4. moves `last_tracked_at` forward to the observation time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, text

from hyperfollow.workers.diff import Position, diff_positions, event_details, idempotency_key, positions_from_state

__all__ = [
    "Observation",
    "RecordResult",
    "Snapshot",
    "StoredEvent",
    "TraderRow",
    "latest_snapshot",
    "load_traders",
    "mark_published",
    "record_observation",
]

FIRST_BASELINE = "none"


@dataclass(frozen=True)
class TraderRow:
    id: int
    address: str
    is_active: bool
    last_tracked_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    id: int
    timestamp: datetime
    positions: dict[str, Position]


@dataclass(frozen=True)
class Observation:
    """A fetched state: the raw body (as the exchange sent it), its positions and its time."""

    trader: TraderRow
    state: Mapping[str, Any]
    positions: dict[str, Position]
    observed_at: datetime
    account_value: Decimal | None
    total_notional: Decimal | None


@dataclass(frozen=True)
class StoredEvent:
    id: int
    trader_id: int
    address: str
    timestamp: datetime
    event_type: str
    coin: str
    details: dict[str, Any]


@dataclass(frozen=True)
class RecordResult:
    events: list[StoredEvent]
    snapshot_id: int | None  # the snapshot stored now, if any
    baseline_id: int | None  # the snapshot the diff started from
    stale: bool = False
    first: bool = False


_LOAD = text("SELECT id, address, is_active, last_tracked_at FROM traders WHERE address = ANY(:addresses)")
_LOCK = text("SELECT id, last_tracked_at FROM traders WHERE id = :id FOR UPDATE")
_LATEST = text("""
    SELECT id, timestamp, state_data FROM user_state_history
    WHERE trader_id = :id ORDER BY timestamp DESC, id DESC LIMIT 1
""")
_INSERT_EVENT = text("""
    INSERT INTO trade_events (trader_id, timestamp, event_type, coin, details, idempotency_key, created_at)
    VALUES (:trader_id, :timestamp, :event_type, :coin, CAST(:details AS jsonb), :key, clock_timestamp())
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
""")
_INSERT_SNAPSHOT = text("""
    INSERT INTO user_state_history (trader_id, timestamp, state_data, account_value, total_notional, is_heartbeat)
    VALUES (:trader_id, :timestamp, CAST(:state AS jsonb), :account_value, :total_notional, :heartbeat)
    RETURNING id
""")
_TRACKED = text("""
    UPDATE traders SET last_tracked_at = greatest(coalesce(last_tracked_at, :at), :at) WHERE id = :id
""")
_PUBLISHED = text("UPDATE trade_events SET published_at = now() WHERE id = ANY(:ids) AND published_at IS NULL")


def load_traders(engine: Engine, addresses: Iterable[str]) -> dict[str, TraderRow]:
    with engine.connect() as conn:
        rows = conn.execute(_LOAD, {"addresses": list(addresses)}).all()
    return {row.address: TraderRow(row.id, row.address, row.is_active, row.last_tracked_at) for row in rows}


def latest_snapshot(conn: Connection, trader_id: int) -> Snapshot | None:
    row = conn.execute(_LATEST, {"id": trader_id}).first()
    if row is None:
        return None
    return Snapshot(id=row.id, timestamp=row.timestamp, positions=positions_from_state(row.state_data))


def record_observation(engine: Engine, observation: Observation, *, heartbeat: timedelta,
                       liquidated: Iterable[str] = (), liquidation_baseline: int | None = None) -> RecordResult:
    """Store what changed since the last snapshot, in one transaction (see the module docstring).

    `liquidated` coins apply only if the baseline is still `liquidation_baseline` (the snapshot the fills were
    checked against); a concurrent refresh that moved the baseline makes them moot.
    """
    trader = observation.trader
    with engine.begin() as conn:
        locked = conn.execute(_LOCK, {"id": trader.id}).first()
        if locked is None:
            return RecordResult(events=[], snapshot_id=None, baseline_id=None, stale=True)
        baseline = latest_snapshot(conn, trader.id)
        if baseline is not None and observation.observed_at <= baseline.timestamp:
            return RecordResult(events=[], snapshot_id=None, baseline_id=baseline.id, stale=True)
        since = locked.last_tracked_at
        if since is not None and since >= observation.observed_at:  # a later, unchanged observation landed first
            since = baseline.timestamp if baseline is not None else None
        baseline_id = baseline.id if baseline is not None else None
        previous = baseline.positions if baseline is not None else {}
        liquidated_coins = set(liquidated) if liquidation_baseline == baseline_id else set()
        changes = diff_positions(previous, observation.positions, liquidated_coins)
        key_base = str(baseline_id) if baseline_id is not None else FIRST_BASELINE
        events: list[StoredEvent] = []
        for change in changes:
            details = event_details(change, observation.observed_at)
            # the change happened after the previous observation (None: first one) and by this one
            details["previous_observed_at"] = since.isoformat() if since is not None else None
            if baseline is None:
                details["baseline"] = True  # first observation: open before we knew the trader
            row = conn.execute(_INSERT_EVENT, {
                "trader_id": trader.id, "timestamp": observation.observed_at, "event_type": change.event_type.value,
                "coin": change.coin, "details": orjson.dumps(details).decode(),
                "key": idempotency_key(trader.address, key_base, change)}).first()
            if row is not None:
                events.append(StoredEvent(id=row.id, trader_id=trader.id, address=trader.address,
                                          timestamp=observation.observed_at, event_type=change.event_type.value,
                                          coin=change.coin, details=details))
        snapshot_id = None
        is_heartbeat = (not changes and baseline is not None
                        and observation.observed_at - baseline.timestamp >= heartbeat)
        if changes or baseline is None or is_heartbeat:
            snapshot_id = conn.execute(_INSERT_SNAPSHOT, {
                "trader_id": trader.id, "timestamp": observation.observed_at,
                "state": orjson.dumps(observation.state).decode(), "account_value": observation.account_value,
                "total_notional": observation.total_notional, "heartbeat": is_heartbeat}).scalar_one()
        conn.execute(_TRACKED, {"id": trader.id, "at": observation.observed_at})
    return RecordResult(events=events, snapshot_id=snapshot_id, baseline_id=baseline_id, first=baseline is None)


def mark_published(engine: Engine, event_ids: list[int]) -> None:
    if event_ids:
        with engine.begin() as conn:
            conn.execute(_PUBLISHED, {"ids": event_ids})
