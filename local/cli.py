"""`hyperfollow up|status|logs`: the whole system on one machine, supervised (docs/local.md)."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import typer

__all__ = ["register"]


def _log_dir(explicit: Path | None) -> Path:
    from hyperfollow.core.settings import load_settings
    from hyperfollow.local.settings import UpSettings
    from hyperfollow.local.status import read_state, state_path

    if explicit is not None:
        return explicit
    settings = load_settings(UpSettings)
    state = read_state(state_path(settings.home.absolute()))
    return Path(state.log_dir) if state is not None else settings.up_log_dir


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        exchange: str = typer.Option(None, "--exchange", metavar="sim|mainnet|testnet",
                                     help="sim: start the simulator and use it; mainnet/testnet: Hyperliquid's. "
                                          "Default: HYPERLIQUID_API_URL / WEBSOCKET_URL (mainnet unless set)"),
        shards: int = typer.Option(None, "--shards", min=1, max=64,
                                   help="shards splitting the slot space [HYPERFOLLOW_UP_SHARDS, 1]"),
        workers: int = typer.Option(None, "--workers", min=1, max=64,
                                    help="worker processes per shard [HYPERFOLLOW_UP_WORKERS, 2]"),
        api_host: str = typer.Option(None, "--api-host", help="API bind address [HYPERFOLLOW_API_HOST, 127.0.0.1]"),
        api_port: int = typer.Option(None, "--api-port", min=1, max=65535,
                                     help="API port [HYPERFOLLOW_API_PORT, 8000]"),
        sim_port: int = typer.Option(None, "--sim-port", min=1, max=65535,
                                     help="simulator port with --exchange sim [HYPERFOLLOW_SIM_PORT, 8100]"),
        sim_traders: int = typer.Option(None, "--sim-traders", min=2, help="simulated traders [5000]"),
        sim_coins: int = typer.Option(None, "--sim-coins", min=1, help="simulated perps [20]"),
        sim_rate: float = typer.Option(None, "--sim-rate", min=0, help="simulated trades per second [20]"),
        sim_seed: int = typer.Option(None, "--sim-seed", help="simulated market's seed [1]"),
        log_dir: Path = typer.Option(None, "--log-dir", help="service logs [HYPERFOLLOW_UP_LOG_DIR, ./logs]"),
    ) -> None:
        """Start everything (embedded servers, migrations, simulator, discovery, workers, scheduler, API) and
        supervise it until Ctrl-C."""
        from hyperfollow.local.plan import EXCHANGE_CHOICES
        from hyperfollow.local.up import UpError, UpOptions, run_up

        if exchange is not None and exchange not in EXCHANGE_CHOICES:
            raise typer.BadParameter(f"choose one of {', '.join(EXCHANGE_CHOICES)}", param_hint="--exchange")
        sim_flags = {"--traders": sim_traders, "--coins": sim_coins, "--rate": sim_rate, "--seed": sim_seed}
        given = {flag: value for flag, value in sim_flags.items() if value is not None}
        if (given or sim_port is not None) and exchange != "sim":
            raise typer.BadParameter("the --sim-* options need --exchange sim", param_hint="--sim-*")
        sim_args = tuple(part for flag, value in given.items() for part in (flag, str(value)))
        options = UpOptions(exchange=exchange, shards=shards, workers=workers, api_host=api_host, api_port=api_port,
                            sim_port=sim_port, sim_args=sim_args, log_dir=log_dir)
        try:
            code = run_up(options)
        except UpError as exc:
            typer.echo(f"hyperfollow up: {exc}", err=True)
            raise typer.Exit(1) from None
        raise typer.Exit(code)

    @app.command("status")
    def status(as_json: bool = typer.Option(False, "--json", help="print the state as JSON")) -> None:
        """Show the services of the running `hyperfollow up` (PID, uptime, restarts, state). Exit status 0 when
        it runs and every service is healthy, 1 otherwise."""
        from hyperfollow.core.settings import load_settings
        from hyperfollow.local.settings import UpSettings
        from hyperfollow.local.status import format_table, format_uptime, read_state, state_path, supervisor_alive

        settings = load_settings(UpSettings)
        state = read_state(state_path(settings.home.absolute()))
        if state is None:
            typer.echo(f"hyperfollow up is not running (nothing under HYPERFOLLOW_HOME={settings.home.absolute()})")
            raise typer.Exit(1)
        alive = supervisor_alive(state)
        if as_json:
            typer.echo(json.dumps({**asdict(state), "running": alive}, indent=1))
            raise typer.Exit(0 if alive and state.healthy() else 1)
        now = time.time()
        if not alive:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.updated_at))
            typer.echo(f"hyperfollow up is not running (last seen {when}; pid {state.supervisor_pid}, {state.phase})")
            raise typer.Exit(1)
        typer.echo(f"hyperfollow up: pid {state.supervisor_pid}, {state.phase}, up "
                   f"{format_uptime(now - state.started_at)}")
        typer.echo(state.exchange)
        typer.echo(f"web: {state.web_url}   logs: {state.log_dir}")
        typer.echo("")
        typer.echo(format_table(state, now))
        raise typer.Exit(0 if state.healthy() else 1)

    @app.command("logs")
    def logs(
        name: str = typer.Argument(..., help="service: sim, discovery, worker-1, scheduler, api, up, …"),
        follow_: bool = typer.Option(False, "--follow", "-f", help="keep printing new lines (Ctrl-C to stop)"),
        lines: int = typer.Option(50, "--lines", "-n", min=0, help="how many of the last lines to print first"),
        errors: bool = typer.Option(False, "--errors", "-e", help="NAME.error.log: warnings, errors, crashes"),
        raw: bool = typer.Option(False, "--raw", help="print JSON lines as they are (default on a pipe)"),
        log_dir: Path = typer.Option(None, "--log-dir", help="where the logs are (default: where `up` writes)"),
    ) -> None:
        """Print a service's log (logs/NAME.log), or follow it with -f."""
        from hyperfollow.local.logs import follow, render_line, tail_lines

        directory = _log_dir(log_dir)
        path = directory / (f"{name}.error.log" if errors else f"{name}.log")
        if not path.exists() and not follow_:
            known = sorted(p.name.removesuffix(".log") for p in directory.glob("*.log")
                           if not p.name.endswith(".error.log")) if directory.is_dir() else []
            hint = f"; services with logs: {', '.join(known)}" if known else ""
            typer.echo(f"hyperfollow logs: no log {path}{hint}", err=True)
            raise typer.Exit(1)
        pretty = not raw and sys.stdout.isatty()

        def show(line: str) -> None:
            typer.echo(render_line(line) if pretty else line)

        if path.exists():
            for line in tail_lines(path, lines):
                show(line)
        if follow_:
            try:
                for line in follow(path, from_start=not path.exists()):
                    show(line)
            except KeyboardInterrupt:
                raise typer.Exit(0) from None
