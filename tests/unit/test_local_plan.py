"""The plan of `hyperfollow up`: which exchange, which services in which order, with which env and checks."""

from __future__ import annotations

import itertools

import pytest

from hyperfollow.core.settings import MAINNET_INFO_URL, MAINNET_WS_URL
from hyperfollow.core.slots import SLOT_COUNT, SlotRange
from hyperfollow.local.plan import SimOptions, build_plan, local_host, resolve_exchange

CUSTOM_INFO, CUSTOM_WS = "http://10.1.2.3:9000/info", "ws://10.1.2.3:9000/ws"


def plan(exchange_choice: str | None = "sim", shards: int = 1, workers: int = 2, api_host: str = "127.0.0.1"):
    ports = itertools.count(40000)
    sim = SimOptions("127.0.0.1", 8100, ("--traders", "300")) if exchange_choice == "sim" else None
    exchange = resolve_exchange(exchange_choice, configured_info_url=MAINNET_INFO_URL,
                                configured_ws_url=MAINNET_WS_URL, urls_from_environment=False, sim=sim)
    return build_plan(exchange=exchange, database_url="postgresql://db/x", redis_url="redis://r:6379/0",
                      shards=shards, workers=workers, api_host=api_host, api_port=8000,
                      pick_port=lambda: next(ports), python="/py", sim=sim)


def test_without_a_choice_the_configured_urls_are_used_and_mainnet_is_the_default() -> None:
    default = resolve_exchange(None, configured_info_url=MAINNET_INFO_URL, configured_ws_url=MAINNET_WS_URL,
                               urls_from_environment=False)
    assert (default.kind, default.info_url, default.ws_url) == ("mainnet", MAINNET_INFO_URL, MAINNET_WS_URL)
    assert "mainnet" in default.describe() and MAINNET_WS_URL in default.describe()
    custom = resolve_exchange(None, configured_info_url=CUSTOM_INFO, configured_ws_url=CUSTOM_WS,
                              urls_from_environment=True)
    assert (custom.kind, custom.info_url, custom.ws_url) == ("configured", CUSTOM_INFO, CUSTOM_WS)
    assert "HYPERLIQUID_API_URL" in custom.describe()


def test_a_choice_overrides_the_configured_urls_and_says_so() -> None:
    sim = resolve_exchange("sim", configured_info_url=CUSTOM_INFO, configured_ws_url=CUSTOM_WS,
                           urls_from_environment=True, sim=SimOptions("0.0.0.0", 8123))
    assert (sim.info_url, sim.ws_url) == ("http://127.0.0.1:8123/info", "ws://127.0.0.1:8123/ws")
    assert "overrides HYPERLIQUID_API_URL" in sim.describe()
    mainnet = resolve_exchange("mainnet", configured_info_url=CUSTOM_INFO, configured_ws_url=CUSTOM_WS,
                               urls_from_environment=True)
    assert (mainnet.info_url, mainnet.ws_url) == (MAINNET_INFO_URL, MAINNET_WS_URL)
    assert "overrides" in mainnet.describe()
    testnet = resolve_exchange("testnet", configured_info_url=MAINNET_INFO_URL, configured_ws_url=MAINNET_WS_URL,
                               urls_from_environment=False)
    assert "testnet" in testnet.info_url and "overrides" not in testnet.describe()
    with pytest.raises(ValueError, match="unknown exchange"):
        resolve_exchange("binance", configured_info_url=MAINNET_INFO_URL, configured_ws_url=MAINNET_WS_URL,
                         urls_from_environment=False)


def test_services_start_in_dependency_order() -> None:
    made = plan("sim", shards=2, workers=2)
    assert [[s.name for s in stage] for stage in made.stages()] == [
        ["sim"], ["discovery"], ["worker-00-1", "worker-00-2", "worker-01-1", "worker-01-2"], ["scheduler"], ["api"]]
    assert [s.name for s in plan("mainnet").services] == ["discovery", "worker-1", "worker-2", "scheduler", "api"]


def test_workers_tile_the_slot_space_and_each_shard_gets_its_workers() -> None:
    made = plan("sim", shards=3, workers=2)
    workers = [s for s in made.services if s.argv[3] == "worker"]
    assert len(workers) == 6
    shards: dict[str, str] = {}
    for spec in workers:
        args = dict(zip(spec.argv[4::2], spec.argv[5::2], strict=True))
        assert shards.setdefault(args["--shard"], args["--slots"]) == args["--slots"]
    ranges = sorted(SlotRange.parse(slots) for slots in shards.values())
    assert ranges[0].start == 0 and ranges[-1].end == SLOT_COUNT
    assert all(a.end == b.start for a, b in itertools.pairwise(ranges))


def test_every_service_gets_the_servers_and_exchange_explicitly_and_its_own_health_port() -> None:
    made = plan("sim")
    sim = made.service("sim")
    assert sim.argv[:4] == ("/py", "-m", "hyperfollow.core", "sim")
    assert sim.argv[6:8] == ("--port", "8100") and "--traders" in sim.argv
    assert sim.health_url == "http://127.0.0.1:8100/healthz"
    ports = set()
    for spec in made.services:
        if spec.name == "sim":
            continue
        assert spec.env["DATABASE_URL"] == "postgresql://db/x" and spec.env["REDIS_URL"] == "redis://r:6379/0"
        assert spec.env["HYPERLIQUID_API_URL"] == "http://127.0.0.1:8100/info"
        assert spec.env["WEBSOCKET_URL"] == "ws://127.0.0.1:8100/ws"
        assert spec.env["HYPERFOLLOW_LOG_FORMAT"] == "json"
        if spec.name != "api":
            port = int(spec.env["HYPERFOLLOW_METRICS_PORT"])
            assert spec.health_url == f"http://127.0.0.1:{port}/healthz"
            ports.add(port)
    assert len(ports) == len(made.services) - 2
    api = made.service("api")
    assert api.health_url == "http://127.0.0.1:8000/health" and made.web_url == "http://127.0.0.1:8000/"
    assert api.env["HYPERFOLLOW_API_PORT"] == "8000"


def test_restart_on_unhealthy_only_where_health_describes_the_service_itself() -> None:
    made = plan("sim")
    assert {s.name: s.restart_when_unhealthy for s in made.services} == {
        "sim": True, "discovery": False, "worker-1": True, "worker-2": True, "scheduler": True, "api": False}
    assert made.service("worker-1").stop_grace_s > made.service("sim").stop_grace_s


def test_a_wildcard_bind_is_checked_and_shown_on_loopback() -> None:
    made = plan("mainnet", api_host="0.0.0.0")
    assert made.web_url == "http://127.0.0.1:8000/"
    assert made.service("api").argv[-4:] == ("--host", "0.0.0.0", "--port", "8000")
    assert local_host("::") == "127.0.0.1" and local_host("10.0.0.5") == "10.0.0.5"


def test_bad_plans_are_refused() -> None:
    exchange = resolve_exchange("mainnet", configured_info_url=MAINNET_INFO_URL, configured_ws_url=MAINNET_WS_URL,
                                urls_from_environment=False)
    with pytest.raises(ValueError, match="worker"):
        build_plan(exchange=exchange, database_url="d", redis_url="r", shards=1, workers=0, api_host="h",
                   api_port=1, pick_port=lambda: 1, python="p")
    sim = resolve_exchange("sim", configured_info_url=MAINNET_INFO_URL, configured_ws_url=MAINNET_WS_URL,
                           urls_from_environment=False)
    with pytest.raises(ValueError, match="simulator"):
        build_plan(exchange=sim, database_url="d", redis_url="r", shards=1, workers=1, api_host="h",
                   api_port=1, pick_port=lambda: 1, python="p")
