"""Which reductions may be liquidations, and the marks that tell. Pure.

A liquidation shows in `clearinghouseState` only as a close or a reduction; the fills say so
(`liquidation` on the fill), but `userFillsByTime` costs 20 weight (ten state refreshes). So a reduction is
checked against the fills only when it is plausible: the previous position had a liquidation price and the
coin's current mark is at it or past it (within `margin`). Marks come free from the states the worker
fetches anyway (every open position carries `positionValue` at the mark), kept per coin for a short while.
A closed position carries no mark of its own, and a cached one may predate the crash that closed it (the
trader's own previous refresh, say): so a close is judged only by a mark at most `max_age_ms` older than the
state; without one, :func:`coins_needing_marks` names the coins and the worker asks `allMids` (weight 2) once
for all of them. A liquidation in the last `max_age_ms` before the refresh can still be missed (stored as a
close): the price of not asking `allMids` for every close.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from hyperfollow.core.events import EventType
from hyperfollow.core.hl_models import Fill
from hyperfollow.workers.diff import Position, PositionChange, decimal_or_none

__all__ = ["MarkCache", "coins_needing_marks", "liquidates", "liquidation_candidates", "near_liquidation"]

REDUCTIONS = (EventType.CLOSED, EventType.DECREASED)


class MarkCache:
    """coin -> (mark, time ms) from positions seen in fetched states."""

    def __init__(self, max_age_ms: int = 60_000) -> None:
        self.max_age_ms = max_age_ms
        self._marks: dict[str, tuple[Decimal, int]] = {}

    def update(self, positions: Iterable[Position], observed_ms: int) -> None:
        for position in positions:
            self._remember(position.coin, position.mark_price, observed_ms)

    def update_mids(self, mids: Mapping[str, Decimal], observed_ms: int) -> None:
        """Marks from `allMids` (mid prices: close enough to the mark to judge a liquidation price)."""
        for coin, mid in mids.items():
            self._remember(coin, mid, observed_ms)

    def _remember(self, coin: str, mark: Decimal | None, observed_ms: int) -> None:
        """Keep a positive mark unless the cache holds a later one."""
        if mark is None or mark <= 0:
            return
        known = self._marks.get(coin)
        if known is None or known[1] <= observed_ms:
            self._marks[coin] = (mark, observed_ms)

    def get(self, coin: str, now_ms: int, max_age_ms: int | None = None) -> Decimal | None:
        """The coin's mark, unless older than `max_age_ms` (default: the cache's own) at `now_ms`."""
        known = self._marks.get(coin)
        limit = self.max_age_ms if max_age_ms is None else max_age_ms
        if known is None or now_ms - known[1] > limit:
            return None
        return known[0]


def near_liquidation(previous: Position, mark: Decimal | None, margin: float) -> bool:
    """The mark is at or past the previous position's liquidation price, give or take `margin`."""
    liquidation = decimal_or_none(previous.raw.get("liquidationPx"))
    if mark is None or liquidation is None or liquidation <= 0:
        return False
    tolerance = Decimal(str(margin))
    if previous.size > 0:  # a long is liquidated when the mark falls to the price
        return mark <= liquidation * (1 + tolerance)
    return mark >= liquidation * (1 - tolerance)


def _could_be_liquidated(change: PositionChange) -> bool:
    if change.event_type not in REDUCTIONS or change.previous is None:
        return False
    liquidation = decimal_or_none(change.previous.raw.get("liquidationPx"))
    return liquidation is not None and liquidation > 0


def _mark_for(change: PositionChange, marks: MarkCache, now_ms: int, max_age_ms: int | None) -> Decimal | None:
    """The mark the reduction is judged by: the position's own, else a cached one at most `max_age_ms` old."""
    mark = change.current.mark_price if change.current is not None else None
    return mark if mark is not None else marks.get(change.coin, now_ms, max_age_ms)


def coins_needing_marks(changes: Iterable[PositionChange], marks: MarkCache, now_ms: int,
                        max_age_ms: int) -> list[str]:
    """Reduced coins that had a liquidation price and have no mark at most `max_age_ms` old: their reduction
    cannot be judged without a fresh mark."""
    return [change.coin for change in changes
            if _could_be_liquidated(change) and _mark_for(change, marks, now_ms, max_age_ms) is None]


def liquidation_candidates(changes: Iterable[PositionChange], marks: MarkCache, now_ms: int,
                           margin: float, max_age_ms: int | None = None) -> list[str]:
    """Coins whose reduction may be a liquidation (worth asking the fills); a cached mark counts up to
    `max_age_ms` old (default: the cache's own limit)."""
    return [change.coin for change in changes
            if _could_be_liquidated(change)
            and near_liquidation(change.previous, _mark_for(change, marks, now_ms, max_age_ms), margin)]


def liquidates(fill: Fill, address: str) -> bool:
    """The fill liquidated this trader: it carries `liquidation` naming the trader (or no one). The other side
    of a liquidation (a liquidator, the backstop) gets the same object naming someone else."""
    if fill.liquidation is None:
        return False
    victim = fill.liquidation.liquidated_user
    return victim is None or victim.lower() == address.lower()
