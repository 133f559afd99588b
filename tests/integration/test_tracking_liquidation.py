"""Liquidations through the real tracking job: simulator, PostgreSQL, Redis, in-process.

A reduction is stored as `position_liquidated` only when workers/liquidation.py finds it plausible (the mark is at
the previous position's liquidation price) and the exchange's `userFillsByTime` shows a fill with `liquidation`;
otherwise it stays a `position_closed` / `position_decreased`. The simulator liquidates on demand:
`POST /_sim/mark` moves a coin's mark past a chosen position's liquidation price, and its ground truth says
which changes were liquidations.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import Engine, text

from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.settings import load_settings
from hyperfollow.core.slots import slot
from hyperfollow.sim.server import SimConfig, SimServer
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.jobs import BatchRunner
from hyperfollow.workers.settings import TrackingSettings

SHARD = "s0"
WEIGHT_PER_MINUTE = 60_000  # a generous exchange limit, so the budget does not pace the test
REDUCTIONS = {"position_closed", "position_decreased", "position_liquidated"}


@pytest.fixture()
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=11, traders=60, coins=4, trades_per_second=0,
                                     weight_limit=WEIGHT_PER_MINUTE), port=0) as server:
        server.step(300)
        yield server


def tracking(sim: SimServer, database_url: str, redis_url: str, keys: RedisKeys, **overrides: object
             ) -> TrackingContext:
    settings = load_settings(TrackingSettings, hyperliquid_api_url=sim.info_url, database_url=database_url,
                             redis_url=redis_url, redis_namespace=keys.namespace, budget_group="trk-liq-test",
                             weight_per_minute=WEIGHT_PER_MINUTE, exchange_attempts=2, **overrides)
    return tracking_context.configure(TrackingContext(settings=settings, database_url=database_url,
                                                      redis_url=redis_url, keys=keys))


@pytest.fixture()
def context(sim: SimServer, db: Engine, redis_client: redis.Redis, database_url: str, redis_url: str,
            keys: RedisKeys) -> Iterator[TrackingContext]:
    yield tracking(sim, database_url, redis_url, keys)
    tracking_context.reset()


@dataclass(frozen=True)
class Held:
    trader: str
    coin: str
    size: Decimal
    liquidation_px: Decimal | None
    mark: Decimal = field(compare=False)  # the same position is equal at any mark

    @property
    def distance(self) -> Decimal:
        """How far the mark may move before this position is liquidated (relative)."""
        if self.liquidation_px is None:
            return Decimal("Infinity")
        return abs(self.mark - self.liquidation_px) / self.mark


def holdings(sim: SimServer, traders: list[str]) -> list[Held]:
    out = []
    for address in traders:
        for entry in sim.info({"type": "clearinghouseState", "user": address})["assetPositions"]:
            position = entry["position"]
            size = Decimal(position["szi"])
            liquidation = position["liquidationPx"]
            out.append(Held(address, position["coin"], size, Decimal(liquidation) if liquidation is not None else None,
                            Decimal(position["positionValue"]) / abs(size)))
    return out


def track(db: Engine, traders: list[str]) -> None:
    with db.begin() as conn:
        for address in traders:
            conn.execute(text("INSERT INTO traders (address, slot) VALUES (:a, :s)"),
                         {"a": address, "s": slot(address)})


def refresh(context: TrackingContext, traders: list[str]) -> None:
    """One run of the tracking job over `traders`, in this order; every one must be refreshed."""
    summary = BatchRunner(context, SHARD).run(traders, int(time.time() * 1000), "i")
    assert summary.refreshed == len(traders) and summary.failed == 0, summary


def events_after(db: Engine, after_id: int) -> list[tuple[int, str, str, str, dict]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT e.id, t.address, e.coin, e.event_type, e.details FROM trade_events e "
                                 "JOIN traders t ON t.id = e.trader_id WHERE e.id > :after ORDER BY e.id"),
                            {"after": after_id}).all()
    return [(r.id, r.address, r.coin, r.event_type, r.details) for r in rows]


def last_event_id(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM trade_events")).scalar_one())


def last_seq(sim: SimServer) -> int:
    records = sim.truth()
    return records[-1]["seq"] if records else -1


def requests(sim: SimServer, request_type: str) -> int:
    return int(sim.stats()["info_requests"].get(request_type, 0))


def fills_asked(sim: SimServer) -> int:
    return requests(sim, "userFillsByTime")


def checks(result: str) -> float:
    return REGISTRY.get_sample_value("hyperfollow_tracking_liquidation_checks_total",
                                     {"shard": SHARD, "result": result}) or 0.0


def liquidate(sim: SimServer, victim: Held) -> int:
    """Move the victim's coin's mark a tenth of a percent past its liquidation price; return the liquidations."""
    assert victim.liquidation_px is not None
    beyond = Decimal("0.999") if victim.size > 0 else Decimal("1.001")
    px = victim.liquidation_px * beyond
    answer = httpx.post(f"{sim.base_url}/_sim/mark", json={"coin": victim.coin, "px": str(px)})
    answer.raise_for_status()
    return int(answer.json()["liquidations"])


def test_a_liquidation_between_two_refreshes_is_stored_as_position_liquidated(
        sim: SimServer, context: TrackingContext, db: Engine, redis_client: redis.Redis, keys: RedisKeys) -> None:
    liquidator = sim.addresses()[-1]
    traders = sorted(a for a in sim.traders_seen() if a != liquidator)
    held = holdings(sim, traders)
    # a long and a short (in two coins), each the one nearest its liquidation price on its side
    short = min((h for h in held if h.size < 0), key=lambda h: h.distance)
    long = min((h for h in held if h.size > 0 and h.coin != short.coin), key=lambda h: h.distance)
    victims = [short, long]
    track(db, traders)
    refresh(context, traders)
    assert fills_asked(sim) == 0  # first observations: nothing to confirm
    baseline_events, cursor = last_event_id(db), last_seq(sim)

    made = sum(liquidate(sim, victim) for victim in victims)
    truth = sim.truth(after=cursor)
    assert len(truth) == 2 * made  # the user's fill and the backstop's, per liquidation
    liquidated = {(r["trader"], r["coin"]) for r in truth if r["liquidated"]}
    assert {(v.trader, v.coin) for v in victims} <= liquidated
    assert all(r["trader"] == liquidator for r in truth if not r["liquidated"])
    # the victims come first, and every mark the worker holds is from before the crash and older than it may
    # use for a close: it must ask for fresh ones (allMids) rather than judge by those
    time.sleep(context.settings.worker_liquidation_mark_max_age_ms / 1000 + 0.1)
    first = sorted({address for address, _ in liquidated})
    order = first + [a for a in traders if a not in first]
    checked_before, mids_before = checks("liquidated"), requests(sim, "allMids")
    refresh(context, order)

    events = events_after(db, baseline_events)
    assert {(address, coin, kind) for _, address, coin, kind, _ in events} == \
        {(address, coin, "position_liquidated") for address, coin in liquidated}
    assert len(events) == len(liquidated)
    assert requests(sim, "allMids") - mids_before >= 1  # the fresh marks that made the closes candidates
    # one fills lookup per liquidated trader (nothing else was reduced), each of them confirming it
    assert fills_asked(sim) == len({address for address, _ in liquidated})
    assert checks("liquidated") - checked_before == len({address for address, _ in liquidated})
    published = {orjson.loads(fields[b"data"])["id"]: orjson.loads(fields[b"data"])
                 for _, fields in redis_client.xrange(keys.events_stream)}
    for victim in victims:
        event_id, _, _, _, details = next(e for e in events if e[1:3] == (victim.trader, victim.coin))
        assert Decimal(str(details["previous_size"])) == victim.size and details["current_size"] == 0
        assert details["current_position"] == {} and details["side"] == "FLAT"
        assert Decimal(details["previous_position"]["liquidationPx"]) == victim.liquidation_px
        # and it went out on the stream as a liquidation
        assert published[event_id]["event_type"] == "position_liquidated"
        assert published[event_id]["trader_address"] == victim.trader
    assert sim.stats()["rate_limited"] == 0


def test_reductions_that_were_not_liquidations_stay_closes_even_when_the_fills_are_asked(
        sim: SimServer, db: Engine, redis_client: redis.Redis, database_url: str, redis_url: str,
        keys: RedisKeys) -> None:
    # a margin of 100 %: (nearly) every reduction of a position with a liquidation price is checked against the
    # fills, so the fills, not the mark, decide
    context = tracking(sim, database_url, redis_url, keys, worker_liquidation_margin=1.0)
    try:
        liquidator = sim.addresses()[-1]
        traders = sorted(a for a in sim.traders_seen() if a != liquidator)
        track(db, traders)
        observed = set(holdings(sim, traders))
        refresh(context, traders)
        baseline_events, cursor = last_event_id(db), last_seq(sim)
        not_liquidated_before = checks("not_liquidated")

        sim.step(200)
        # and one forced liquidation in the same window, so both answers of the fills occur: of a position that
        # is still as it was observed (so the refresh sees it go from that size to nothing)
        victim = min((h for h in holdings(sim, traders) if h in observed), key=lambda h: h.distance)
        assert liquidate(sim, victim) >= 1
        refresh(context, traders)

        truth = [r for r in sim.truth(after=cursor) if r["trader"] != liquidator]
        liquidated = {(r["trader"], r["coin"]) for r in truth if r["liquidated"]}
        assert (victim.trader, victim.coin) in liquidated
        reductions = [(address, coin, kind) for _, address, coin, kind, _ in events_after(db, baseline_events)
                      if kind in REDUCTIONS]
        plain = [(address, coin) for address, coin, kind in reductions if kind != "position_liquidated"]
        assert plain, "ordinary closes and reductions happened in the window"
        for address, coin, kind in reductions:
            assert (kind == "position_liquidated") == ((address, coin) in liquidated), (address, coin, kind)
        assert (victim.trader, victim.coin, "position_liquidated") in reductions
        # the fills were asked about reductions that were not liquidations, and said so
        assert checks("not_liquidated") > not_liquidated_before
        assert fills_asked(sim) > len(liquidated)
        assert sim.stats()["rate_limited"] == 0
    finally:
        tracking_context.reset()
