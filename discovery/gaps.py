"""Stream gaps: when every redundant link was down at once, trades in between were missed. Pure."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

__all__ = ["Gap", "GapTracker"]

Interval = tuple[float, float]


class Gap(NamedTuple):
    """Time during which every link was down: from `start` on (the earliest such moment), `seconds` in all."""

    start: float
    seconds: float


def _intersect(a: list[Interval], b: list[Interval]) -> list[Interval]:
    out = []
    for start_a, end_a in a:
        for start_b, end_b in b:
            start, end = max(start_a, start_b), min(end_a, end_b)
            if start < end:
                out.append((start, end))
    return out


class GapTracker:
    """Remembers each link's recent down intervals (reported when it comes back) and finds common ones."""

    def __init__(self, links: int, horizon: float = 300.0) -> None:
        self.links = links
        self.horizon = horizon
        self._down: list[deque[Interval]] = [deque() for _ in range(links)]

    def link_recovered(self, link: int, down_from: float, up_at: float) -> Gap | None:
        """Record a link's downtime; return the part of it during which every other link was down too."""
        self._down[link].append((down_from, up_at))
        for intervals in self._down:
            while intervals and intervals[0][1] < up_at - self.horizon:
                intervals.popleft()
        common = [(down_from, up_at)]
        for other, intervals in enumerate(self._down):
            if other != link:
                common = _intersect(common, list(intervals))
        if not common:
            return None
        return Gap(start=min(start for start, _ in common), seconds=sum(end - start for start, end in common))
