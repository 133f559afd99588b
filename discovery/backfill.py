"""Backfill after a stream gap: re-read each coin's latest trades (`recentTrades`) into the pipeline.

The trades stream has no replay. When every redundant link was down at once (discovery/gaps.py), the trades
of that time never arrive; the exchange's `recentTrades` still holds each coin's latest ones for a while.
One round asks for them, coin by coin, busiest coin first (its recent trades are the first to be pushed
out), within the shared weight budget (20 + 1 per 20 trades each), and feeds them to the pipeline, whose
deduplication by trade identity drops those the links did deliver. A coin whose answer does not reach back
to the gap's start may have lost trades: counted and logged, never hidden.

Cost: about 21 weight per coin and gap; `max_coins` bounds a round (the coins left out are counted as not
recovered). Gaps are rare (every link down at once), so the default asks for the 50 busiest coins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import Counter
from redis import RedisError

from hyperfollow.core.aio import wait_any
from hyperfollow.core.errors_exchange import ExchangeError
from hyperfollow.core.hl_models import Trade
from hyperfollow.core.logging import get_logger

__all__ = ["Backfill", "answer_covers"]

log = get_logger(__name__)

ROUNDS = Counter("hyperfollow_discovery_backfill_rounds_total", "backfills run after stream gaps")
RECOVERED = Counter("hyperfollow_discovery_backfill_trades_total",
                    "trades a backfill recovered (no link had delivered them)")
NOT_RECOVERED = Counter("hyperfollow_discovery_backfill_incomplete_coins_total",
                        "coins a backfill could not cover back to the gap's start (trades may be lost)")

#: how far before the gap's start (by our clock) the answer must reach, for the exchange's clock being off
CLOCK_MARGIN_MS = 500


def answer_covers(times_newest_first: Sequence[int], since_ms: int, largest_answer: int) -> bool:
    """Whether a `recentTrades` answer holds every trade of its coin since `since_ms`. Pure.

    Yes when it reaches back to `since_ms`, when it is empty (no trades at all), or when it is shorter than the
    largest answer seen (then it is everything the exchange keeps for the coin, not a window of it).
    """
    if not times_newest_first or len(times_newest_first) < largest_answer:
        return True
    return times_newest_first[-1] <= since_ms


class RecentTradesSource(Protocol):
    async def recent_trades(self, coin: str) -> list[Trade]: ...


class TradeSink(Protocol):
    def add(self, trades: list[Trade]) -> int: ...


class Backfill:
    def __init__(self, info: RecentTradesSource, pipeline: TradeSink, *, max_coins: int = 50,
                 concurrency: int = 4) -> None:
        self.info = info
        self.pipeline = pipeline
        self.max_coins = max_coins
        self.concurrency = concurrency
        self.rounds = 0
        self.recovered = 0
        self.incomplete_coins = 0
        self._since_ms: int | None = None
        self._wake = asyncio.Event()
        self._largest_answer = 0

    def request(self, since_ms: int) -> None:
        """Ask for a round covering trades since `since_ms` (wall clock); requests before it starts merge."""
        self._since_ms = since_ms if self._since_ms is None else min(self._since_ms, since_ms)
        self._wake.set()

    async def run(self, stop: asyncio.Event, coins_busiest_first: Callable[[], list[str]]) -> None:
        """Run the rounds asked for; on `stop`, still the one asked for last (its trades exist nowhere else)."""
        while True:
            since_ms = self._since_ms
            if since_ms is None:
                if stop.is_set():
                    return
                await wait_any(stop, self._wake)
                continue
            self._wake.clear()
            self._since_ms = None
            await self.round(coins_busiest_first(), since_ms)


    async def round(self, coins: list[str], since_ms: int) -> None:
        """Fetch the coins' recent trades (at most `max_coins`, in the given order) into the pipeline."""
        selected = coins[:self.max_coins] if self.max_coins else coins
        left_out = len(coins) - len(selected)
        self.rounds += 1
        ROUNDS.inc()
        gate = asyncio.Semaphore(self.concurrency)
        answers: dict[str, list[Trade] | None] = {}

        async def fetch(coin: str) -> None:
            async with gate:
                try:
                    answers[coin] = await self.info.recent_trades(coin)
                except (ExchangeError, OSError, RedisError) as exc:  # RedisError: the budget's store is down
                    log.warning("backfill request failed", coin=coin, error=f"{type(exc).__name__}: {exc}")
                    answers[coin] = None
                    return
            trades = answers[coin] or []
            added = self.pipeline.add(trades)
            self.recovered += added
            RECOVERED.inc(added)

        await asyncio.gather(*(fetch(coin) for coin in selected))
        self._largest_answer = max([self._largest_answer, *(len(a) for a in answers.values() if a is not None)])
        threshold = since_ms - CLOCK_MARGIN_MS
        short = [coin for coin, answer in answers.items()
                 if answer is None or not answer_covers([t.time for t in answer], threshold, self._largest_answer)]
        incomplete = len(short) + left_out
        self.incomplete_coins += incomplete
        NOT_RECOVERED.inc(incomplete)
        if incomplete:
            log.error("backfill could not reach back to the gap's start: trades of these coins may be lost",
                      coins=short[:20], not_asked=left_out, since_ms=since_ms)
        else:
            log.info("backfill covered the gap", coins=len(selected), since_ms=since_ms)
