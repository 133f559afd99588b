"""The exchange's REST weight limit per client IP: a sliding window over the weight actually spent.

Every accepted request's weight is remembered with its time; a request is refused (HTTP 429) when the
weight spent in the last `window` seconds plus its own would exceed the limit, so no window of that length
ever holds more than the limit (plus item-priced extra weight, which is only known after answering, as on
the exchange). Refused requests cost nothing. Memory per IP is bounded by limit / smallest weight entries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["SlidingWindowLimiter"]


@dataclass
class _Window:
    spent: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0
    refused: int = 0


class SlidingWindowLimiter:
    """Weight budget per key (client IP). `limit` 0 switches limiting off but still counts usage."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[str, _Window] = {}
        self.refused = 0

    def _expire(self, w: _Window, now: float) -> None:
        horizon = now - self.window
        spent = w.spent
        while spent and spent[0][0] <= horizon:
            w.total -= spent.popleft()[1]

    def try_take(self, key: str, weight: int, now: float) -> bool:
        """Spend `weight` for `key` at time `now` (seconds) if the window allows it; else count a refusal."""
        w = self._windows.get(key)
        if w is None:
            w = self._windows[key] = _Window()
        self._expire(w, now)
        if self.limit and w.total + weight > self.limit:
            w.refused += 1
            self.refused += 1
            return False
        if weight:
            w.spent.append((now, weight))
            w.total += weight
        return True

    def charge(self, key: str, weight: int, now: float) -> None:
        """Spend weight unconditionally (item-priced extra weight known only after answering)."""
        if weight <= 0:
            return
        w = self._windows.setdefault(key, _Window())
        self._expire(w, now)
        w.spent.append((now, weight))
        w.total += weight

    def used(self, key: str, now: float) -> int:
        w = self._windows.get(key)
        if w is None:
            return 0
        self._expire(w, now)
        return w.total

    def retry_after(self, key: str, weight: int, now: float) -> float:
        """Seconds until `weight` more would fit (0 when it fits now)."""
        w = self._windows.get(key)
        if w is None or not self.limit:
            return 0.0
        self._expire(w, now)
        excess = w.total + weight - self.limit
        for t, spent in w.spent:
            if excess <= 0:
                break
            excess -= spent
            if excess <= 0:
                return max(0.0, t + self.window - now)
        return 0.0 if excess <= 0 else self.window

    def usage(self, now: float) -> dict[str, dict[str, int]]:
        """Per key: weight used in the current window and requests refused so far."""
        out = {}
        for key, w in self._windows.items():
            self._expire(w, now)
            out[key] = {"weight": w.total, "refused": w.refused}
        return out
