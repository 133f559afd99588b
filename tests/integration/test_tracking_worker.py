"""The tracking job, feeder and producer against the simulator, real PostgreSQL, Redis and RQ, in-process.

RQ's SimpleWorker runs the jobs in this process (`work(burst=True)`), exactly as `hyperfollow worker` does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
import redis
import uvicorn
from rq import Queue, SimpleWorker
from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import free_port, wait_for

from hyperfollow.core.keys import RedisKeys, active_bucket, purge_namespace
from hyperfollow.core.settings import load_settings
from hyperfollow.core.slots import SlotRange, slot
from hyperfollow.discovery.marks import ActivityMarks
from hyperfollow.sim.server import SimConfig, SimServer
from hyperfollow.workers import context as tracking_context
from hyperfollow.workers.context import TrackingContext
from hyperfollow.workers.diff import positions_from_state
from hyperfollow.workers.election import FeederLease
from hyperfollow.workers.feeder import Feeder
from hyperfollow.workers.jobs import BatchRunner
from hyperfollow.workers.marks import MarkClearer
from hyperfollow.workers.publish import EventPublisher, event_message
from hyperfollow.workers.selection import batch_job_id
from hyperfollow.workers.settings import TrackingSettings
from hyperfollow.workers.store import Observation, load_traders, record_observation
from hyperfollow.workers.upkeep import republish_pending

SHARD = "s0"
HOUR = timedelta(hours=1)
ALL = SlotRange(0, 16384)


@pytest.fixture(autouse=True)
def no_rq_leftovers(redis_url: str, redis_namespace: str) -> None:
    """RQ names its keys `rq:…<queue>`: the namespace is inside, not in front, so clear them per test."""
    client = redis.Redis.from_url(redis_url)
    purge_namespace(client, redis_namespace)
    client.close()


@pytest.fixture()
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(seed=11, traders=60, coins=4, trades_per_second=0), port=0) as server:
        yield server


def make_context(info_url: str, database_url: str, redis_url: str, keys: RedisKeys, **overrides: object
                 ) -> TrackingContext:
    settings = load_settings(TrackingSettings, hyperliquid_api_url=info_url, database_url=database_url,
                             redis_url=redis_url, redis_namespace=keys.namespace, budget_group="trk-test",
                             exchange_attempts=2, **overrides)
    return tracking_context.configure(TrackingContext(settings=settings, database_url=database_url,
                                                      redis_url=redis_url, keys=keys))


@pytest.fixture()
def context(sim: SimServer, db: Engine, redis_client: redis.Redis, database_url: str, redis_url: str,
            keys: RedisKeys) -> Iterator[TrackingContext]:
    made = make_context(sim.info_url, database_url, redis_url, keys)
    yield made
    tracking_context.reset()


def add_traders(engine: Engine, addresses: list[str]) -> None:
    with engine.begin() as conn:
        for address in addresses:
            conn.execute(text("INSERT INTO traders (address, slot) VALUES (:a, :s) ON CONFLICT DO NOTHING"),
                         {"a": address, "s": slot(address)})


def mark_active(redis_url: str, keys: RedisKeys, addresses: list[str], ms: int) -> None:
    """Activity marks written by discovery's own code."""
    async def go() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await ActivityMarks(client, keys).mark({a: (ms, ms) for a in addresses})
        finally:
            await client.aclose()
    asyncio.run(go())


def feeder_for(context: TrackingContext, slots: SlotRange = ALL, owner: str = "test-feeder") -> Feeder:
    feeder = Feeder(context.settings, client=context.redis, engine=context.engine, keys=context.keys, shard=SHARD,
                    slots=slots, owner=owner)
    assert feeder.hold_lease()
    return feeder


def work(context: TrackingContext) -> None:
    queue = Queue(context.keys.track_queue(SHARD), connection=context.redis)
    SimpleWorker([queue], connection=context.redis).work(burst=True)


def sim_positions(sim: SimServer, address: str) -> dict[str, tuple[Decimal, str | None]]:
    state = sim.info({"type": "clearinghouseState", "user": address})
    return {p["position"]["coin"]: (Decimal(p["position"]["szi"]), p["position"]["entryPx"])
            for p in state["assetPositions"] if Decimal(p["position"]["szi"]) != 0}


def replayed_positions(engine: Engine) -> dict[str, dict[str, tuple[Decimal, str | None]]]:
    """Positions per trader rebuilt from the stored events alone (what a consumer of the stream sees)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT t.address, e.coin, e.details FROM trade_events e "
                                 "JOIN traders t ON t.id = e.trader_id ORDER BY e.timestamp, e.id")).all()
    positions: dict[str, dict[str, tuple[Decimal, str | None]]] = {}
    for address, coin, details in rows:
        held = positions.setdefault(address, {})
        current = details["current_position"]
        if current:
            held[coin] = (Decimal(current["szi"]), current.get("entryPx"))
        else:
            held.pop(coin, None)
    return positions


def stream_messages(client: redis.Redis, keys: RedisKeys) -> list[dict]:
    return [orjson.loads(fields[b"data"]) for _, fields in client.xrange(keys.events_stream)]


def test_a_feeder_round_and_a_burst_of_work_track_every_trader(sim: SimServer, context: TrackingContext, db: Engine,
                                                               redis_client: redis.Redis, redis_url: str,
                                                               keys: RedisKeys) -> None:
    sim.step(300)
    traders = sorted(sim.traders_seen())
    add_traders(db, traders)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.events_channel)
    pubsub.get_message(timeout=1)
    feeder = feeder_for(context)
    for _ in range(20):  # rotation batches of BATCH_SIZE until every trader has been refreshed once
        feeder.tick()
        work(context)
        with db.connect() as conn:
            if not conn.execute(text("SELECT count(*) FROM traders WHERE last_tracked_at IS NULL")).scalar():
                break
    # now trade more, mark the traders active as discovery would, and track again: active first
    before = {a: sim_positions(sim, a) for a in traders}
    sim.step(200)
    changed = [a for a in traders if sim_positions(sim, a) != before[a]]
    assert changed
    mark_active(redis_url, keys, changed, int(time.time() * 1000) - 5)
    result = feeder.tick()
    assert result.active_traders == min(len(changed), context.settings.worker_active_batch)
    for _ in range(40):
        work(context)
        if not MarkCount(redis_client, keys).total():
            break
        feeder.tick()
    assert MarkCount(redis_client, keys).total() == 0, "every active trader's mark is cleared by its refresh"

    replayed = replayed_positions(db)
    for address in traders:
        assert replayed.get(address, {}) == sim_positions(sim, address), address
    # every stored event was published once, in stream order, with its stream id on the channel
    with db.connect() as conn:
        stored = conn.execute(text("SELECT id FROM trade_events ORDER BY id")).scalars().all()
        assert conn.execute(text("SELECT count(*) FROM trade_events WHERE published_at IS NULL")).scalar() == 0
        snapshots = conn.execute(text("SELECT count(*) FILTER (WHERE account_value IS NULL OR total_notional IS NULL),"
                                      " count(*) FROM user_state_history")).one()
    assert snapshots[0] == 0 and snapshots[1] >= len(traders)
    messages = stream_messages(redis_client, keys)
    assert sorted(m["id"] for m in messages) == stored
    heard = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            heard.append(orjson.loads(message["data"]))
    pubsub.close()
    assert [m["id"] for m in heard] == [m["id"] for m in messages]
    assert all(m["stream_id"] for m in heard)
    baseline = [m for m in messages if m["details"].get("baseline")]
    assert baseline and all(m["event_type"] == "position_opened" for m in baseline)
    assert sim.stats()["rate_limited"] == 0


class MarkCount:
    def __init__(self, client: redis.Redis, keys: RedisKeys) -> None:
        self.client, self.keys = client, keys

    def total(self) -> int:
        return sum(self.client.zcard(self.keys.active(b)) + self.client.zcard(self.keys.active_latest(b))
                   for b in range(64))


def test_the_feeder_never_puts_a_trader_in_two_pending_batches(sim: SimServer, context: TrackingContext,
                                                              db: Engine, redis_client: redis.Redis, redis_url: str,
                                                              keys: RedisKeys) -> None:
    traders = [f"0x{i:040x}" for i in range(1, 200)]
    add_traders(db, traders)
    mark_active(redis_url, keys, traders[:30], 1_000)
    feeder = feeder_for(context)
    for _ in range(5):
        feeder.tick()
    queue = Queue(keys.track_queue(SHARD), connection=redis_client)
    jobs = queue.get_jobs()
    kinds = [job.id[0] for job in jobs]
    # no worker registered: one active batch (at the front) and one rotation batch; nothing piles up
    assert kinds == ["a", "i"]
    batches = [job.args[1] for job in jobs]
    every = [a for batch in batches for a in batch]
    assert len(every) == len(set(every))
    assert batches[0] == sorted(traders[:30], key=lambda a: (1_000, a))[:context.settings.worker_active_batch]
    assert len(batches[1]) == context.settings.batch_size
    pending = {m.decode() for m in redis_client.zrange(keys.feeder_pending(SHARD), 0, -1)}
    assert pending == set(every)
    # a standby feeder cannot claim anything while the lease is held
    standby = Feeder(context.settings, client=context.redis, engine=context.engine, keys=keys, shard=SHARD,
                     slots=ALL, owner="standby")
    assert not standby.hold_lease()
    assert standby._enqueue("i", traders[100:110], int(time.time() * 1000), at_front=False) == []


def test_a_rotation_batch_yields_to_an_active_batch_waiting_in_front(sim: SimServer, context: TrackingContext,
                                                                     db: Engine, redis_client: redis.Redis,
                                                                     keys: RedisKeys) -> None:
    sim.step(100)
    traders = sorted(sim.traders_seen())[:8]
    add_traders(db, traders)
    queue = Queue(keys.track_queue(SHARD), connection=redis_client)
    waiting = batch_job_id("a", int(time.time() * 1000) - 5_000)
    queue.enqueue_call("hyperfollow.workers.jobs.track_batch", args=(SHARD, [], 0, "a"), job_id=waiting)
    runner = BatchRunner(context, SHARD)
    now = int(time.time() * 1000)
    summary = runner.run(traders, now, "i", job_id=batch_job_id("i", now))
    assert summary.stopped == "preempted" and summary.refreshed == 1 and summary.released == len(traders) - 1
    # a second rotation batch does not yield for the same waiting batch (one yield per waiting batch)
    again = runner.run(traders[1:], now, "i", job_id=batch_job_id("i", now))
    assert again.stopped == "" and again.refreshed == len(traders) - 1
    assert redis_client.zcard(keys.feeder_pending(SHARD)) == 0


class FlakyExchange:
    """The simulator behind a proxy that breaks the answers for chosen traders (a 500, a malformed body, a 429)."""

    def __init__(self, sim: SimServer, broken: dict[str, str]) -> None:
        import httpx

        self.sim, self.broken = sim, broken
        self.client = httpx.AsyncClient(timeout=10)

        async def info(request: Request) -> Response:
            body = await request.body()
            user = orjson.loads(body).get("user")
            how = self.broken.get(user or "")
            if how == "500":
                return Response(status_code=500)
            if how == "429":
                return JSONResponse({"error": "rate limited"}, status_code=429, headers={"Retry-After": "0"})
            if how == "malformed":
                return JSONResponse({"error": "something"})
            answer = await self.client.post(sim.info_url, content=body)
            return Response(answer.content, status_code=answer.status_code, media_type="application/json")

        self.port = free_port()
        config = uvicorn.Config(Starlette(routes=[Route("/info", info, methods=["POST"])]), host="127.0.0.1",
                                port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def info_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/info"

    def __enter__(self) -> FlakyExchange:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_bad_answers_fail_one_trader_and_the_batch_goes_on(sim: SimServer, db: Engine, redis_client: redis.Redis,
                                                           database_url: str, redis_url: str,
                                                           keys: RedisKeys) -> None:
    sim.step(200)
    traders = sorted(sim.traders_seen())[:6]
    add_traders(db, traders)
    broken = {traders[1]: "500", traders[2]: "malformed", traders[3]: "429"}
    with FlakyExchange(sim, broken) as exchange:
        context = make_context(exchange.info_url, database_url, redis_url, keys, worker_failure_backoff_s=60,
                               budget_penalty_base=0.05, budget_penalty_cap=0.1)
        try:
            summary = BatchRunner(context, SHARD).run(traders, int(time.time() * 1000), "i")
            assert summary.refreshed == 3 and summary.failed == 3
            assert summary.failures == {"unavailable": 1, "malformed": 1, "rate_limited": 1}
            rows = load_traders(db, traders)
            assert [rows[a].last_tracked_at is None for a in traders] == [False, True, True, True, False, False]
            # the failed ones stay claimed for the back-off (not chosen again at once), then are due again
            held = {m.decode(): s for m, s in redis_client.zrange(keys.feeder_pending(SHARD), 0, -1, withscores=True)}
            assert set(held) == set(broken) and min(held.values()) > time.time() * 1000 + 50_000
            # once the exchange answers again, the same traders are tracked (and nothing else changes)
            broken.clear()
            second = BatchRunner(context, SHARD).run(traders, int(time.time() * 1000), "i")
            assert second.refreshed == 6 and second.failed == 0
            replayed = replayed_positions(db)
            assert all(replayed.get(a, {}) == sim_positions(sim, a) for a in traders)
        finally:
            tracking_context.reset()


def test_a_retry_after_a_crash_stores_no_event_twice_and_the_stream_gets_each_once(
        sim: SimServer, context: TrackingContext, db: Engine, redis_client: redis.Redis, keys: RedisKeys) -> None:
    sim.step(200)
    address = max(sim.traders_seen(), key=lambda a: len(sim_positions(sim, a)))
    add_traders(db, [address])
    [trader] = load_traders(db, [address]).values()
    state = sim.info({"type": "clearinghouseState", "user": address})
    def observe(at_ms: int) -> Observation:
        return Observation(trader=trader, state=state, positions=positions_from_state(state),
                           observed_at=datetime.fromtimestamp(at_ms / 1000, UTC), account_value=Decimal(1),
                           total_notional=Decimal(0))

    first = record_observation(db, observe(state["time"]), heartbeat=HOUR)
    assert first.first and first.events
    # the worker "died" after the commit, before publishing: the republisher sends the events, once
    assert republish_pending(context, older_than_s=0) == len(first.events)
    assert republish_pending(context, older_than_s=0) == 0
    # the same state again (a retried job): stale or unchanged, no new event
    again = record_observation(db, observe(state["time"]), heartbeat=HOUR)
    assert again.stale and not again.events
    later = record_observation(db, observe(state["time"] + 1000), heartbeat=HOUR)
    assert not later.stale and not later.events and later.snapshot_id is None
    # published, then crashed before `published_at` was written: publishing again adds nothing to the stream
    publisher = EventPublisher(redis_client, keys)
    message = event_message(first.events[0].id, trader.id, address, first.events[0].timestamp,
                            first.events[0].event_type, first.events[0].details)
    assert publisher.publish([message]) == [None]
    with db.begin() as conn:
        conn.execute(text("UPDATE trade_events SET published_at = NULL"))
    assert republish_pending(context, older_than_s=0) == len(first.events)
    ids = [m["id"] for m in stream_messages(redis_client, keys)]
    assert sorted(ids) == sorted(e.id for e in first.events) and len(ids) == len(set(ids))


def test_lease_and_mark_scripts(redis_client: redis.Redis, keys: RedisKeys) -> None:
    one = FeederLease(redis_client, keys, "lease-test", "one", ttl_s=1)
    two = FeederLease(redis_client, keys, "lease-test", "two", ttl_s=1)
    assert one.acquire() and not two.acquire() and one.holder() == "one"
    assert one.acquire()  # already ours (a restarted process with the same POD_NAME)
    assert not two.renew() and not two.release() and one.renew()
    time.sleep(1.1)  # expired: the other takes it, and the first cannot renew or release it any more
    assert two.acquire() and not one.renew() and not one.release() and two.holder() == "two"
    assert two.release() and one.acquire()

    address = "0x" + "ab" * 20
    bucket = active_bucket(slot(address))
    clearer = MarkClearer(redis_client, keys)
    redis_client.zadd(keys.active(bucket), {address: 1_000})
    redis_client.zadd(keys.active_latest(bucket), {address: 5_000})
    kept = clearer.clear(address, 5_000)  # a trade at T itself may not be in the state: keep, advance
    assert not kept.cleared and kept.earliest_ms == 1_000
    assert redis_client.zscore(keys.active(bucket), address) == 5_000
    cleared = clearer.clear(address, 5_001)
    assert cleared.cleared and cleared.earliest_ms == 5_000
    assert redis_client.zscore(keys.active(bucket), address) is None
    assert redis_client.zscore(keys.active_latest(bucket), address) is None
    assert clearer.clear(address, 6_000).earliest_ms is None


def test_publisher_keeps_channel_order_equal_to_stream_order(redis_client: redis.Redis, keys: RedisKeys) -> None:
    publisher = EventPublisher(redis_client, keys, maxlen=5, approximate=False)
    pubsub = redis_client.pubsub()
    pubsub.subscribe(keys.events_channel)
    pubsub.get_message(timeout=1)
    messages = [{"id": 900 + i, "trader_id": 1, "trader_address": "0x" + "1" * 40, "timestamp": "2026-01-01T00:00:00Z",
                 "event_type": "position_opened", "details": {"coin": "BTC", "size": 0.1 + i / 3}} for i in range(8)]
    ids = publisher.publish(messages)
    assert all(ids) and ids == sorted(ids)
    assert publisher.publish(messages[:2]) == [None, None]
    heard = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            heard.append(orjson.loads(message["data"]))
    pubsub.close()
    assert [(m["id"], m["stream_id"]) for m in heard] == [(m["id"], i) for m, i in zip(messages, ids, strict=True)]
    assert heard[3]["details"]["size"] == messages[3]["details"]["size"]  # numbers keep their exact text
    assert redis_client.xlen(keys.events_stream) == 5  # bounded


def test_untracked_traders_lose_their_marks(sim: SimServer, context: TrackingContext, db: Engine,
                                            redis_client: redis.Redis, redis_url: str, keys: RedisKeys) -> None:
    stranger = "0x" + "cd" * 20
    mark_active(redis_url, keys, [stranger], 1_000)
    summary = BatchRunner(context, SHARD).run([stranger], int(time.time() * 1000), "a")
    assert summary.unknown == 1
    assert redis_client.zscore(keys.active(active_bucket(slot(stranger))), stranger) is None

