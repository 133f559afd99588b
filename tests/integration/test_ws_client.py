"""The WebSocket client against the simulator over a real WebSocket: acks, trades, reconnects, pings, limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from support import wait_for

from hyperfollow.core.errors_exchange import WsLimitExceeded
from hyperfollow.core.hl_ws import WsClient, WsSubscribeRejected
from hyperfollow.core.hl_ws_protocol import Reconnected, Trades
from hyperfollow.sim.server import SimConfig, SimServer


def sim_server(**config: object) -> SimServer:
    values: dict[str, object] = {"seed": 2, "traders": 200, "coins": 5, "trades_per_second": 40.0, "chaos_seed": 9}
    values.update(config)
    return SimServer(SimConfig(**values), port=0)  # type: ignore[arg-type]


@pytest.fixture()
def sim() -> Iterator[SimServer]:
    with sim_server() as server:
        yield server


async def collect(ws: WsClient, seconds: float) -> list[object]:
    events: list[object] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            events.append(await ws.next_event(timeout=left))
        except TimeoutError:
            break
    return events


async def test_trades_arrive_with_buyer_and_seller_from_the_truth(sim: SimServer) -> None:
    async with WsClient(sim.ws_url) as ws:
        await ws.subscribe_trades(["BTC", "ETH", "SOL"])
        assert sim.stats()["ws_subscriptions"] == 3  # acked means the server holds them
        events = await collect(ws, 1.5)
    trades = [t for e in events if isinstance(e, Trades) for t in e.trades]
    assert trades and {t.coin for t in trades} <= {"BTC", "ETH", "SOL"}
    truth = {(r["tid"], r["trader"]): r for r in sim.truth()}
    for trade in trades:
        buyer, seller = truth[(trade.tid, trade.buyer)], truth[(trade.tid, trade.seller)]
        bought = float(buyer["after"]["szi"]) - float(buyer["before"]["szi"])
        sold = float(seller["after"]["szi"]) - float(seller["before"]["szi"])
        assert bought > 0 > sold  # users = [buyer, seller]
        assert trade.taker in (trade.buyer, trade.seller)


async def test_reconnects_and_resubscribes_after_the_server_drops_it() -> None:
    with sim_server(disconnect_interval_s=1.0) as sim:
        async with WsClient(sim.ws_url, reconnect_base=0.05, reconnect_cap=0.5) as ws:
            await ws.subscribe_trades(["BTC", "ETH"])
            events = await collect(ws, 4.0)
            reconnects = [e for e in events if isinstance(e, Reconnected)]
            assert reconnects and ws.stats.reconnects >= len(reconnects)
            assert all(r.subscriptions == 2 for r in reconnects)
            first = min(i for i, e in enumerate(events) if isinstance(e, Reconnected))
            after = {e.coin for e in events[first:] if isinstance(e, Trades)}
            assert after  # trades flow again after a reconnect: the new link was resubscribed ...
            assert sorted(s["coin"] for s in ws.subscriptions) == ["BTC", "ETH"]
            assert sim.stats()["chaos"]["disconnects"] >= 1
            # ... on a link holding both subscriptions again (polled: the link keeps being dropped)
            await asyncio.to_thread(wait_for, lambda: sim.stats()["ws_subscriptions"] == 2, 5.0, 0.01,
                                    "both subscriptions back on the server")


async def test_a_links_downtime_counts_from_the_last_frame_it_received() -> None:
    """What the server still had queued for a dropping link is lost with it: the downtime must cover that."""
    with sim_server(trades_per_second=0) as sim:
        async with WsClient(sim.ws_url, reconnect_base=0.05, reconnect_cap=0.5) as ws:
            await ws.subscribe_trades(["BTC"])
            await asyncio.sleep(1.0)          # up but quiet: nothing is sent
            sim.set_chaos(disconnect_probability=1.0)
            sim.step(200)                     # the first BTC message drops the link before it is written
            sim.set_chaos(disconnect_probability=0.0)
            events = await collect(ws, 3.0)
    reconnects = [e for e in events if isinstance(e, Reconnected)]
    assert len(reconnects) == 1 and not any(isinstance(e, Trades) for e in events)
    assert reconnects[0].downtime >= 1.0


async def test_pings_keep_an_idle_link_open() -> None:
    with sim_server(trades_per_second=0, ws_idle_timeout_s=1.0) as sim:
        async with WsClient(sim.ws_url, ping_interval=0.3) as pinging:
            await pinging.subscribe({"type": "trades", "coin": "BTC"})
            await asyncio.sleep(2.5)
            assert pinging.stats.reconnects == 0 and pinging.stats.pongs >= 3
        assert sim.stats()["ws_idle_closed"] == 0
        async with WsClient(sim.ws_url, ping_interval=30, reconnect_base=0.05) as silent:
            await silent.subscribe({"type": "trades", "coin": "BTC"})
            await asyncio.sleep(2.5)
            assert silent.stats.reconnects >= 1  # without pings the server closes it
        assert sim.stats()["ws_idle_closed"] >= 1


async def test_malformed_frames_are_counted_and_skipped() -> None:
    with sim_server(malformed_probability=0.5) as sim:
        async with WsClient(sim.ws_url) as ws:
            await ws.subscribe_trades(["BTC", "ETH", "SOL", "XRP", "DOGE"])
            events = await collect(ws, 2.5)
            injected = sim.stats()["chaos"]["malformed_frames"]
            skipped = ws.stats.malformed_frames + ws.stats.invalid_trades
    good = [t for e in events if isinstance(e, Trades) for t in e.trades]
    assert injected > 0 and skipped > 0 and good
    assert all(t.tid != 1 for t in good)  # the injected bad trades never pass as trades


async def test_unsubscribe_stops_a_coin(sim: SimServer) -> None:
    async with WsClient(sim.ws_url) as ws:
        await ws.subscribe_trades(["BTC", "ETH"])
        await ws.unsubscribe({"type": "trades", "coin": "ETH"})
        assert sim.stats()["ws_subscriptions"] == 1
        await collect(ws, 0.2)  # frames already in flight before the ack
        events = await collect(ws, 1.5)
    coins = {e.coin for e in events if isinstance(e, Trades)}
    assert coins == {"BTC"}


async def test_subscriptions_are_split_over_links_within_the_limits(sim: SimServer) -> None:
    async with WsClient(sim.ws_url, subscriptions_per_connection=2, max_connections=2) as ws:
        await ws.subscribe_trades(["BTC", "ETH", "SOL", "XRP"])
        assert ws.connections == 2 and sim.stats()["ws_connections"] == 2
        with pytest.raises(WsLimitExceeded):
            await ws.subscribe({"type": "trades", "coin": "DOGE"})
        await ws.subscribe({"type": "trades", "coin": "BTC"})  # already there: no new link, no error
        events = await collect(ws, 1.0)
    assert {e.coin for e in events if isinstance(e, Trades)} <= {"BTC", "ETH", "SOL", "XRP"}


async def test_a_refused_subscription_is_an_error_not_a_hang(sim: SimServer) -> None:
    async with WsClient(sim.ws_url, ack_timeout=5) as ws:
        started = time.monotonic()
        with pytest.raises(WsSubscribeRejected):
            await ws.subscribe({"type": "l2Book", "coin": "BTC"})
        assert time.monotonic() - started < 4
        assert ws.subscriptions == []
        await ws.subscribe({"type": "trades", "coin": "BTC"})  # the link is still fine
