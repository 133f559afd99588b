"""`hyperfollow up`: the whole system on one machine, supervised.

In order: check that nothing else runs `up` on this HYPERFOLLOW_HOME and that the API's (and the simulator's)
port is free, say which exchange is used, start the embedded PostgreSQL/Redis unless configured, migrate the
database, then hand the services of the plan (local/plan.py) to the supervisor (local/supervisor.py) and
supervise until SIGINT/SIGTERM/SIGHUP. Stopping is graceful (SIGTERM, grace, SIGKILL per process group, last
stage first); a second Ctrl-C kills at once. The embedded servers this run started are stopped last; servers
that were already running are left running.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import fasteners

from hyperfollow.core.embedded import Servers, stop_servers
from hyperfollow.core.logging import redact_text
from hyperfollow.core.settings import load_settings
from hyperfollow.local.plan import Exchange, SimOptions, UpPlan, build_plan, local_host, resolve_exchange
from hyperfollow.local.settings import UpSettings
from hyperfollow.local.status import read_state, same_process, state_path
from hyperfollow.local.supervisor import Supervisor, SupervisorConfig, group_alive, kill_group

__all__ = ["UpError", "UpOptions", "port_taken", "run_up"]


#: A second stop signal at least this long after the first kills every service at once.
FORCE_AFTER_S = 1.0


class UpError(RuntimeError):
    """`up` cannot start; the message is one line for the user."""


@dataclass(frozen=True)
class UpOptions:
    exchange: str | None = None
    shards: int | None = None
    workers: int | None = None
    api_host: str | None = None
    api_port: int | None = None
    sim_host: str | None = None
    sim_port: int | None = None
    sim_args: tuple[str, ...] = ()
    log_dir: Path | None = None


def port_taken(host: str, port: int) -> bool:
    """Whether a server could not bind `host:port` now (something listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((local_host(host), port)) == 0


class _PortPicker:
    """Free loopback ports for the metrics endpoints, never one already handed out or reserved."""

    def __init__(self, reserved: set[int]) -> None:
        self.used = set(reserved)

    def __call__(self) -> int:
        while True:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in self.used:
                self.used.add(port)
                return port


class _Output:
    """The supervisor's own lines: on stdout and in `logs/up.log`."""

    def __init__(self, log_file: Path, stream: IO[str] | None = None) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        self.file = log_file.open("a", encoding="utf-8")
        self.stream = stream or sys.stdout

    def __call__(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.write(text + "\n")
            self.stream.flush()
        self.file.write(text + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _stop_leftovers(home: Path, say: _Output) -> None:
    """Stop the process groups an earlier `up` on this home left behind (it was killed without stopping)."""
    previous = read_state(state_path(home))
    if previous is None:
        return
    left = [s for s in previous.services if same_process(s.pid, s.process_started)]
    if not left:
        return
    say(f"an earlier `hyperfollow up` (pid {previous.supervisor_pid}) did not stop its services: stopping "
        f"{', '.join(s.name for s in left)}")
    for service in left:
        assert service.pid is not None
        kill_group(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(group_alive(s.pid) for s in left if s.pid):
        time.sleep(0.1)
    for service in left:
        assert service.pid is not None
        kill_group(service.pid, signal.SIGKILL)


def _describe_server(kind: str, url: str, configured: bool, started: bool) -> str:
    if configured:
        return f"{kind}: {redact_text(url)} (configured)"
    return f"{kind}: embedded at {url} ({'started' if started else 'already running'})"


def choose_exchange(settings: UpSettings, options: UpOptions, sim: SimOptions | None) -> Exchange:
    urls_from_environment = bool({"hyperliquid_api_url", "websocket_url"} & settings.model_fields_set)
    return resolve_exchange(options.exchange, configured_info_url=settings.hyperliquid_api_url,
                            configured_ws_url=settings.websocket_url, urls_from_environment=urls_from_environment,
                            sim=sim)


def make_plan(settings: UpSettings, options: UpOptions, exchange: Exchange, sim: SimOptions | None, *,
              database_url: str, redis_url: str) -> UpPlan:
    api_port = options.api_port or settings.api_port
    reserved = {api_port, settings.embedded_pg_port, settings.embedded_redis_port, *([sim.port] if sim else [])}
    return build_plan(exchange=exchange, database_url=database_url, redis_url=redis_url,
                      shards=options.shards or settings.up_shards, workers=options.workers or settings.up_workers,
                      api_host=options.api_host or settings.api_host, api_port=api_port,
                      pick_port=_PortPicker(reserved), python=sys.executable, sim=sim,
                      leaderboard_interval_s=settings.up_sim_leaderboard_interval_s if sim else None)


def _check_ports(settings: UpSettings, options: UpOptions, sim: SimOptions | None) -> None:
    """Fail before anything starts when a port a service needs is taken (no surprise port)."""
    api_port = options.api_port or settings.api_port
    api_host = options.api_host or settings.api_host
    if port_taken(api_host, api_port):
        raise UpError(f"port {api_port} on {api_host} is taken by another process: stop it, or choose another "
                      f"with --api-port (or HYPERFOLLOW_API_PORT)")
    if sim is not None and port_taken(sim.host, sim.port):
        raise UpError(f"port {sim.port} on {sim.host} (the simulator's) is taken by another process: stop it, or "
                      f"choose another with --sim-port (or HYPERFOLLOW_SIM_PORT)")


def _prepare_database(settings: UpSettings) -> Servers:
    """The servers (embedded ones started when not configured), the schema migrated to the newest revision."""
    from sqlalchemy.exc import SQLAlchemyError

    from hyperfollow.core.db.migrate import upgrade
    from hyperfollow.core.runtime import resolve_servers

    servers = resolve_servers(settings)
    try:
        upgrade(servers.database_url)
    except (SQLAlchemyError, OSError) as exc:
        if servers.started:
            stop_servers(settings.home, pg_port=settings.embedded_pg_port, redis_port=settings.embedded_redis_port,
                         which=tuple(servers.started))
        reason = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise UpError(f"cannot migrate the database at {redact_text(servers.database_url)}: {reason}") from None
    return servers


def run_up(options: UpOptions) -> int:
    from hyperfollow.core.db.migrate import current_revision
    from hyperfollow.core.runtime import bootstrap
    from hyperfollow.sim.cli import SimSettings

    settings, _ = bootstrap("up", UpSettings, need_servers=False)
    for chatty in ("alembic", "hyperfollow.core.embedded"):  # `up` says what they did in its own words
        logging.getLogger(chatty).setLevel(logging.WARNING)
    home = settings.home.absolute()
    log_dir = (options.log_dir or settings.up_log_dir).absolute()
    sim: SimOptions | None = None
    if options.exchange == "sim":
        sim_settings = load_settings(SimSettings)
        sim = SimOptions(options.sim_host or sim_settings.sim_host, options.sim_port or sim_settings.sim_port,
                         options.sim_args)
    exchange = choose_exchange(settings, options, sim)
    (home / "up").mkdir(parents=True, exist_ok=True)
    lock = fasteners.InterProcessLock(str(home / "up" / "up.lock"))
    if not lock.acquire(blocking=False):
        running = read_state(state_path(home))
        pid = f" (pid {running.supervisor_pid})" if running else ""
        raise UpError(f"hyperfollow up is already running{pid} with HYPERFOLLOW_HOME={home}; "
                      f"see `hyperfollow status`, or stop it first")
    try:
        _check_ports(settings, options, sim)
    except UpError:
        lock.release()
        raise
    say = _Output(log_dir / "up.log")
    stop, force = threading.Event(), threading.Event()
    first_signal: list[float] = []

    def on_signal(signum: int, _frame: object) -> None:
        # A second signal kills at once, unless it comes with the first (`timeout`, process managers and
        # shells may deliver one stop request both to the process and to its group).
        now = time.monotonic()
        if stop.is_set() and now - first_signal[0] >= FORCE_AFTER_S:
            force.set()
        if not stop.is_set():
            first_signal.append(now)
        stop.set()

    previous_handlers = {signum: signal.signal(signum, on_signal)
                         for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    started_servers: list[str] = []
    supervisor: Supervisor | None = None
    try:
        say(exchange.describe())
        _stop_leftovers(home, say)
        servers = _prepare_database(settings)
        started_servers = list(servers.started)
        say(_describe_server("database", servers.database_url, not settings.uses_embedded_database,
                             "postgres" in servers.started))
        say(_describe_server("redis", servers.redis_url, not settings.uses_embedded_redis, "redis" in servers.started))
        say(f"database schema: at revision {current_revision(servers.database_url)}")
        if stop.is_set():
            return 0
        plan = make_plan(settings, options, exchange, sim, database_url=servers.database_url,
                         redis_url=servers.redis_url)
        say(f"logs: {log_dir}/NAME.log and NAME.error.log  (hyperfollow logs NAME -f)")

        def announce(name: str) -> None:
            if name == "api":
                say(f"hyperfollow is up: open {plan.web_url} in a browser  "
                    f"(`hyperfollow status` shows the services; Ctrl-C stops everything)")

        config = SupervisorConfig(
            log_dir=log_dir, state_file=state_path(home), health_interval_s=settings.up_health_interval_s,
            status_interval_s=settings.up_status_interval_s, max_restarts=settings.up_max_restarts,
            start_timeout_s=settings.up_start_timeout_s, log_max_bytes=settings.up_log_max_bytes,
            exchange=plan.exchange.describe(), web_url=plan.web_url)
        supervisor = Supervisor(plan.services, config, out=say, on_first_healthy=announce)
        if supervisor.start_all(stop):
            say(supervisor.table())
            discovery = supervisor.state_of("discovery")
            if plan.exchange.kind != "sim" and discovery.state != "healthy":
                say(f"discovery cannot reach the exchange at {plan.exchange.ws_url} yet: it keeps retrying, and "
                    f"`hyperfollow status` shows it as not healthy until it can (`hyperfollow logs discovery`)")
            supervisor.run(stop)
        return 0
    finally:
        if supervisor is not None:
            say("stopping (Ctrl-C again to kill at once)")
            supervisor.stop_all(force)
        if started_servers:
            stop_servers(home, pg_port=settings.embedded_pg_port, redis_port=settings.embedded_redis_port,
                         which=tuple(started_servers))
            say(f"stopped the embedded {' and '.join(started_servers)} this run had started")
        if supervisor is not None:
            say("stopped")
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)
        say.close()
        lock.release()
