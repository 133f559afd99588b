"""Which reductions may be liquidations, and the marks that tell. Pure.

A liquidation shows in `clearinghouseState` only as a close or a reduction; the fills say so
(`liquidation` on the fill), but `userFillsByTime` costs 20 weight (ten state refreshes). So a reduction is
checked against the fills only when it is plausible: the previous position had a liquidation price and the
coin's current mark is at it or past it (within `margin`). Marks come free from the states the worker
fetches anyway (every open position carries `positionValue` at the mark), kept per coin for a short while.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from hyperfollow.core.events import EventType
from hyperfollow.workers.diff import Position, PositionChange, decimal_or_none

__all__ = ["MarkCache", "liquidation_candidates", "near_liquidation"]

REDUCTIONS = (EventType.CLOSED, EventType.DECREASED)


class MarkCache:
    """coin -> (mark, time ms) from positions seen in fetched states."""

    def __init__(self, max_age_ms: int = 60_000) -> None:
        self.max_age_ms = max_age_ms
        self._marks: dict[str, tuple[Decimal, int]] = {}

    def update(self, positions: Iterable[Position], observed_ms: int) -> None:
        for position in positions:
            mark = position.mark_price
            if mark is not None and mark > 0:
                known = self._marks.get(position.coin)
                if known is None or known[1] <= observed_ms:
                    self._marks[position.coin] = (mark, observed_ms)

    def get(self, coin: str, now_ms: int) -> Decimal | None:
        known = self._marks.get(coin)
        if known is None or now_ms - known[1] > self.max_age_ms:
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


def liquidation_candidates(changes: Iterable[PositionChange], marks: MarkCache, now_ms: int,
                           margin: float) -> list[str]:
    """Coins whose reduction may be a liquidation (worth asking the fills)."""
    coins = []
    for change in changes:
        if change.event_type not in REDUCTIONS or change.previous is None:
            continue
        mark = change.current.mark_price if change.current is not None else None
        if mark is None:
            mark = marks.get(change.coin, now_ms)
        if near_liquidation(change.previous, mark, margin):
            coins.append(change.coin)
    return coins
