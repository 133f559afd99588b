"""Position diffing: two observations of a trader's positions -> the events between them. Pure functions.

A position changes only through fills, but we observe it by polling `clearinghouseState`, so one event
describes the net change between two observations of one coin:

=====================  =================================================================
previous -> current    event
=====================  =================================================================
flat -> size           position_opened
size -> flat           position_closed (position_liquidated when the fills say so)
long <-> short         position_flipped
|size| grows           position_increased
|size| shrinks         position_decreased (position_liquidated when the fills say so)
same size, new entry   position_closed + position_opened (a round trip between polls)
=====================  =================================================================

`apply_changes(previous, diff_positions(previous, current)) == current` for any two observations: the
events are a complete account of what changed (a property test checks it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hyperfollow.core.events import EventType

__all__ = [
    "Position",
    "PositionChange",
    "apply_changes",
    "decimal_or_none",
    "diff_positions",
    "event_details",
    "idempotency_key",
    "positions_from_state",
]

ZERO = Decimal(0)


def decimal_or_none(value: object) -> Decimal | None:
    """A finite Decimal from an exchange number (string or number); None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


@dataclass(frozen=True)
class Position:
    """One open position: signed size (long > 0), entry price, and the exchange's raw object."""

    coin: str
    size: Decimal
    entry_price: Decimal | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def mark_price(self) -> Decimal | None:
        """positionValue / |size| (the exchange computes positionValue at the mark)."""
        value = decimal_or_none(self.raw.get("positionValue"))
        if value is None or self.size == ZERO:
            return None
        return abs(value / self.size)


def positions_from_state(state: Mapping[str, Any]) -> dict[str, Position]:
    """Open positions of a raw `clearinghouseState` body, keyed by coin (zero sizes dropped).

    Raises ValueError on a position without a coin or a numeric size: a malformed body must fail the
    trader's refresh, not produce a false "closed" event.
    """
    positions: dict[str, Position] = {}
    for entry in state.get("assetPositions") or []:
        raw = entry.get("position") if isinstance(entry, Mapping) else None
        if not isinstance(raw, Mapping):
            raise ValueError(f"assetPositions entry without a position object: {entry!r:.200}")
        coin = raw.get("coin")
        size = decimal_or_none(raw.get("szi"))
        if not isinstance(coin, str) or not coin or size is None:
            raise ValueError(f"position without a coin or a numeric szi: {raw!r:.200}")
        if size != ZERO:
            positions[coin] = Position(coin, size, decimal_or_none(raw.get("entryPx")), dict(raw))
    return positions


@dataclass(frozen=True)
class PositionChange:
    coin: str
    event_type: EventType
    previous: Position | None
    current: Position | None

    @property
    def previous_size(self) -> Decimal:
        return self.previous.size if self.previous else ZERO

    @property
    def current_size(self) -> Decimal:
        return self.current.size if self.current else ZERO

    @property
    def size_change(self) -> Decimal:
        return self.current_size - self.previous_size


def _classify(previous: Decimal, current: Decimal, liquidated: bool) -> EventType:
    if previous == ZERO:
        return EventType.OPENED
    if current == ZERO:
        return EventType.LIQUIDATED if liquidated else EventType.CLOSED
    if (previous > ZERO) != (current > ZERO):
        return EventType.FLIPPED
    if abs(current) > abs(previous):
        return EventType.INCREASED
    return EventType.LIQUIDATED if liquidated else EventType.DECREASED


def diff_positions(previous: Mapping[str, Position], current: Mapping[str, Position],
                   liquidated_coins: Iterable[str] = ()) -> list[PositionChange]:
    """Events that turn `previous` into `current`, in coin order (deterministic).

    `liquidated_coins`: coins whose reduction came from a liquidation fill (known from `userFills`).
    """
    liquidated = set(liquidated_coins)
    changes: list[PositionChange] = []
    for coin in sorted(set(previous) | set(current)):
        before, after = previous.get(coin), current.get(coin)
        before_size = before.size if before else ZERO
        after_size = after.size if after else ZERO
        if before_size == after_size:
            if before is not None and after is not None and before.entry_price != after.entry_price:
                # same size but a new entry price: the position was closed and reopened between polls
                changes.append(PositionChange(coin, EventType.CLOSED, before, None))
                changes.append(PositionChange(coin, EventType.OPENED, None, after))
            continue
        changes.append(PositionChange(coin, _classify(before_size, after_size, coin in liquidated), before, after))
    return changes


def apply_changes(previous: Mapping[str, Position], changes: Iterable[PositionChange]) -> dict[str, Position]:
    """Replay events on positions (what a consumer of the event stream does)."""
    positions = dict(previous)
    for change in changes:
        if change.current is None:
            positions.pop(change.coin, None)
        else:
            positions[change.coin] = change.current
    return positions


def _side(size: Decimal) -> str:
    return "LONG" if size > ZERO else "SHORT" if size < ZERO else "FLAT"


def event_details(change: PositionChange, observed_at: datetime) -> dict[str, Any]:
    """The `details` JSON of an event (core/events.EventDetails; the seed's keys plus ours).

    `notional` is the USD value of the position after the change, at the mark; `change_notional` the USD
    value of the size that changed.
    """
    reference = change.current or change.previous
    mark = reference.mark_price if reference else None
    price = mark if mark is not None else (reference.entry_price if reference else None)
    return {
        "coin": change.coin,
        "previous_size": float(change.previous_size),
        "current_size": float(change.current_size),
        "size_change": float(change.size_change),
        "previous_position": dict(change.previous.raw) if change.previous else {},
        "current_position": dict(change.current.raw) if change.current else {},
        "entry_price": float(change.current.entry_price) if change.current and change.current.entry_price
        else (float(change.previous.entry_price) if change.previous and change.previous.entry_price else None),
        "side": _side(change.current_size),
        "notional": float(abs(change.current_size) * price) if price is not None else None,
        "change_notional": float(abs(change.size_change) * price) if price is not None else None,
        "observed_at": observed_at.isoformat(),
    }


def idempotency_key(address: str, baseline: str, change: PositionChange) -> str:
    """A key that is the same when a retried job recomputes the same event, and differs otherwise.

    `baseline` identifies the observation the diff started from (e.g. the id of the stored snapshot): a
    retry diffs against the same baseline (the first attempt's transaction did not commit) and so derives
    the same key, while the same transition happening again later starts from a different baseline.
    """
    parts = [address, baseline, change.coin, change.event_type.value, str(change.previous_size),
             str(change.current_size), str(change.current.entry_price if change.current else "")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()
