"""What `hyperfollow up` runs: which exchange, which services in which order, with which command, environment,
ports and health check. Pure: no process is started and no port is probed here (ports come in as arguments).

Start order (stages; a stage starts once the one before it is healthy or timed out): the simulator (only with
`--exchange sim`), discovery, the shard workers, the scheduler, the API. Each `hyperfollow worker` is an RQ
worker on its shard's queue *and* a feeder candidate (one per shard wins the lease), so M identical workers
per shard are a complete shard: there is no separate feeder process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from hyperfollow.core.settings import MAINNET_INFO_URL, MAINNET_WS_URL
from hyperfollow.core.slots import tile

__all__ = [
    "EXCHANGE_CHOICES",
    "Exchange",
    "ServiceSpec",
    "SimOptions",
    "UpPlan",
    "build_plan",
    "local_host",
    "resolve_exchange",
]

TESTNET_INFO_URL = "https://api.hyperliquid-testnet.xyz/info"
TESTNET_WS_URL = "wss://api.hyperliquid-testnet.xyz/ws"

#: `--exchange` values besides none (= the configured URLs).
EXCHANGE_CHOICES = ("sim", "mainnet", "testnet")

_KNOWN = {"mainnet": (MAINNET_INFO_URL, MAINNET_WS_URL), "testnet": (TESTNET_INFO_URL, TESTNET_WS_URL)}

# Seconds a service gets between SIGTERM and SIGKILL. Workers finish the trader they are refreshing and hand
# the rest of the batch back; the scheduler lets a running leaderboard computation finish (it writes in one
# transaction, so a SIGKILL after the grace period rolls back rather than leaving half the rows); discovery
# flushes its buffer (it drains for up to 20 s); uvicorn closes connections within 10 s.
STOP_GRACE_S = {"sim": 5.0, "discovery": 25.0, "worker": 30.0, "scheduler": 60.0, "api": 15.0}


def local_host(host: str) -> str:
    """The address to reach a server bound to `host` from this machine (a wildcard bind is reached on loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::", "[::]") else host


def _url_host(host: str) -> str:
    host = local_host(host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class Exchange:
    """The exchange every service talks to, and how it was chosen (said on the first status line)."""

    kind: str  # "sim", "mainnet", "testnet" or "configured"
    info_url: str
    ws_url: str
    note: str = ""

    def describe(self) -> str:
        what = {"sim": "the simulator (--exchange sim)", "mainnet": "Hyperliquid mainnet",
                "testnet": "Hyperliquid testnet", "configured": "the configured exchange"}[self.kind]
        line = f"exchange: {what} at {self.info_url} and {self.ws_url}"
        return f"{line} ({self.note})" if self.note else line


@dataclass(frozen=True)
class SimOptions:
    host: str = "127.0.0.1"
    port: int = 8100
    #: extra `hyperfollow sim` flags, e.g. ("--traders", "300", "--rate", "50")
    args: tuple[str, ...] = ()


def resolve_exchange(choice: str | None, *, configured_info_url: str, configured_ws_url: str,
                     urls_from_environment: bool, sim: SimOptions | None = None) -> Exchange:
    """The exchange for `--exchange CHOICE`. Without a choice the configured URLs are used (mainnet unless
    `HYPERLIQUID_API_URL`/`WEBSOCKET_URL` say otherwise); a choice overrides them, and the note says so. There is
    never a fallback from one exchange to another."""
    if choice is None:
        for kind, (info_url, ws_url) in _KNOWN.items():
            if (configured_info_url, configured_ws_url) == (info_url, ws_url):
                note = "HYPERLIQUID_API_URL / WEBSOCKET_URL" if urls_from_environment else "the default"
                return Exchange(kind, info_url, ws_url, note)
        return Exchange("configured", configured_info_url, configured_ws_url, "HYPERLIQUID_API_URL / WEBSOCKET_URL")
    override = " overrides HYPERLIQUID_API_URL / WEBSOCKET_URL" if urls_from_environment else ""
    if choice == "sim":
        sim = sim or SimOptions()
        base = f"{_url_host(sim.host)}:{sim.port}"
        note = f"--exchange sim{override}" if override else ""
        return Exchange("sim", f"http://{base}/info", f"ws://{base}/ws", note)
    if choice in _KNOWN:
        info_url, ws_url = _KNOWN[choice]
        return Exchange(choice, info_url, ws_url, f"--exchange {choice}{override}" if override else "")
    raise ValueError(f"unknown exchange {choice!r}: choose one of {', '.join(EXCHANGE_CHOICES)}")


@dataclass(frozen=True)
class ServiceSpec:
    """One supervised service."""

    name: str
    argv: tuple[str, ...]
    #: variables set on top of the supervisor's own environment
    env: Mapping[str, str] = field(default_factory=dict)
    #: GET this; 200 = healthy, any other answer = unhealthy, no answer = not responding
    health_url: str | None = None
    stage: int = 0
    stop_grace_s: float = 10.0
    #: restart when the service itself answers "unhealthy" for long enough. False for services whose health
    #: reflects something outside them (the exchange, the database): they retry on their own, and restarting
    #: them would not help.
    restart_when_unhealthy: bool = True
    port: int | None = None


@dataclass(frozen=True)
class UpPlan:
    exchange: Exchange
    services: tuple[ServiceSpec, ...]
    web_url: str

    def stages(self) -> list[list[ServiceSpec]]:
        """Services grouped by stage, in start order."""
        grouped: dict[int, list[ServiceSpec]] = {}
        for spec in self.services:
            grouped.setdefault(spec.stage, []).append(spec)
        return [grouped[stage] for stage in sorted(grouped)]

    def service(self, name: str) -> ServiceSpec:
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)


def build_plan(*, exchange: Exchange, database_url: str, redis_url: str, shards: int, workers: int,
               api_host: str, api_port: int, pick_port: Callable[[], int], python: str,
               sim: SimOptions | None = None, leaderboard_interval_s: int | None = None) -> UpPlan:
    """Every service of a local installation. `pick_port()` gives a free port for each metrics endpoint;
    `python` is the interpreter that runs `-m hyperfollow.core`; `leaderboard_interval_s` overrides the
    scheduler's (the simulator's market moves fast enough for a leaderboard every minute)."""
    if exchange.kind == "sim" and sim is None:
        raise ValueError("the simulator's options are needed with --exchange sim")
    if shards < 1 or workers < 1:
        raise ValueError("at least one shard and one worker per shard are needed")
    command = (python, "-m", "hyperfollow.core")
    common = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "HYPERLIQUID_API_URL": exchange.info_url,
              "WEBSOCKET_URL": exchange.ws_url, "HYPERFOLLOW_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    services: list[ServiceSpec] = []

    def metrics_service(name: str, args: tuple[str, ...], stage: int, kind: str, restart: bool) -> ServiceSpec:
        port = pick_port()
        return ServiceSpec(name=name, argv=(*command, *args), env={**common, "HYPERFOLLOW_METRICS_PORT": str(port)},
                           health_url=f"http://127.0.0.1:{port}/healthz", stage=stage,
                           stop_grace_s=STOP_GRACE_S[kind], restart_when_unhealthy=restart, port=port)

    if exchange.kind == "sim":
        assert sim is not None
        base = f"http://{_url_host(sim.host)}:{sim.port}"
        services.append(ServiceSpec(
            name="sim", argv=(*command, "sim", "--host", sim.host, "--port", str(sim.port), *sim.args),
            env={"HYPERFOLLOW_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}, health_url=f"{base}/healthz",
            stage=0, stop_grace_s=STOP_GRACE_S["sim"], port=sim.port))
    services.append(metrics_service("discovery", ("discovery",), 1, "discovery", restart=False))
    width = max(2, len(str(shards - 1)))
    for index, slots in enumerate(tile(shards)):
        shard = f"shard-{index:0{width}d}"
        for number in range(1, workers + 1):
            name = f"worker-{index:0{width}d}-{number}" if shards > 1 else f"worker-{number}"
            services.append(metrics_service(name, ("worker", "--shard", shard, "--slots", str(slots)), 2,
                                            "worker", restart=True))
    scheduler = metrics_service("scheduler", ("scheduler",), 3, "scheduler", restart=True)
    if leaderboard_interval_s is not None:
        scheduler = replace(scheduler, env={**scheduler.env,
                                            "HYPERFOLLOW_LEADERBOARD_INTERVAL_S": str(leaderboard_interval_s)})
    services.append(scheduler)
    web = f"http://{_url_host(api_host)}:{api_port}"
    services.append(ServiceSpec(
        name="api", argv=(*command, "api", "--host", api_host, "--port", str(api_port)),
        env={**common, "HYPERFOLLOW_API_HOST": api_host, "HYPERFOLLOW_API_PORT": str(api_port)},
        health_url=f"{web}/health", stage=4, stop_grace_s=STOP_GRACE_S["api"], restart_when_unhealthy=False,
        port=api_port))
    return UpPlan(exchange=exchange, services=tuple(services), web_url=f"{web}/")
