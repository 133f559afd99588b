"""`hyperfollow sim`: serve the Hyperliquid simulator (REST /info, WebSocket /ws, control under /_sim/).

Flags override `HYPERFOLLOW_SIM_*` variables, which override the defaults of `SimConfig`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import AliasChoices, Field

from hyperfollow.core.settings import Settings

__all__ = ["SimSettings", "register"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"HYPERFOLLOW_SIM_{name}")


class SimSettings(Settings):
    sim_host: str = Field("127.0.0.1", validation_alias=_env("HOST"), description="simulator bind address")
    sim_port: int = Field(8100, ge=0, le=65535, validation_alias=_env("PORT"), description="simulator port")
    sim_seed: int = Field(1, validation_alias=_env("SEED"), description="market seed")
    sim_traders: int = Field(5000, ge=2, validation_alias=_env("TRADERS"), description="population size")
    sim_coins: int = Field(20, ge=1, le=500, validation_alias=_env("COINS"), description="listed perps")
    sim_rate: float = Field(20.0, ge=0, validation_alias=_env("RATE"), description="base trades per second")
    sim_speed: float = Field(1.0, gt=0, validation_alias=_env("SPEED"), description="rate multiplier")
    sim_weight_limit: int = Field(1200, ge=0, validation_alias=_env("WEIGHT_LIMIT"),
                                  description="REST weight per IP per minute; 0 = off")
    sim_truth_file: Path | None = Field(None, validation_alias=_env("TRUTH_FILE"),
                                        description="append ground-truth records here (JSON lines)")


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim(
        host: str = typer.Option(None, help="bind address [HYPERFOLLOW_SIM_HOST, 127.0.0.1]"),
        port: int = typer.Option(None, help="port [HYPERFOLLOW_SIM_PORT, 8100]"),
        seed: int = typer.Option(None, help="market seed: same seed, same trades [HYPERFOLLOW_SIM_SEED, 1]"),
        traders: int = typer.Option(None, help="population size [HYPERFOLLOW_SIM_TRADERS, 5000]"),
        coins: int = typer.Option(None, help="listed perps: BTC, ETH, SOL, … then SIM… [HYPERFOLLOW_SIM_COINS, 20]"),
        rate: float = typer.Option(None, help="base trades per second [HYPERFOLLOW_SIM_RATE, 20]"),
        speed: float = typer.Option(None, help="rate multiplier [HYPERFOLLOW_SIM_SPEED, 1.0]"),
        zipf: float = typer.Option(1.0, help="activity skew: the k-th busiest trader trades ∝ 1/k^zipf"),
        weight_limit: int = typer.Option(None, help="REST weight per IP per minute, 0 = off [1200]"),
        idle_timeout: float = typer.Option(60.0, help="close WebSocket connections idle this long (s)"),
        max_connections: int = typer.Option(10, help="WebSocket connections per IP, 0 = any"),
        max_new_connections: int = typer.Option(30, help="new WebSocket connections per IP per minute, 0 = any"),
        truth_file: Path = typer.Option(None, help="append every position change here as JSON lines"),
        disconnect_interval: float = typer.Option(0.0, help="chaos: drop each WS connection after ~this many s"),
        disconnect_probability: float = typer.Option(0.0, help="chaos: chance per trades message to drop the link"),
        malformed_probability: float = typer.Option(0.0, help="chaos: chance per trades message of a bad frame"),
        error_probability: float = typer.Option(0.0, help="chaos: chance a REST request answers 5xx"),
        slow_probability: float = typer.Option(0.0, help="chaos: chance a REST request is answered late"),
        slow_delay: float = typer.Option(2.0, help="chaos: delay of a late answer (s)"),
        max_batch: int = typer.Option(2000, help="trades per WebSocket message at most"),
        pregenerate: int = typer.Option(0, help="firehose: make this many trades before serving, emit them first "
                                                "(far faster than live generation; state already includes them)"),
        deflate: bool = typer.Option(True, help="offer permessage-deflate on the WebSocket, as the exchange does"),
        paused: bool = typer.Option(False, help="start paused: no trades until POST /_sim/resume"),
        log_level: str = typer.Option("warning", help="uvicorn's log level"),
    ) -> None:
        """Serve a simulated Hyperliquid: trades on /ws, /info, a rate limit, ground truth under /_sim/."""
        import uvicorn

        from hyperfollow.core.runtime import bootstrap
        from hyperfollow.sim.config import SimConfig
        from hyperfollow.sim.server import create_app, uvicorn_config

        settings, _ = bootstrap("sim", SimSettings, need_servers=False)

        def pick(flag: object, setting: object) -> object:
            return setting if flag is None else flag

        try:
            config = SimConfig(
                seed=pick(seed, settings.sim_seed), traders=pick(traders, settings.sim_traders),
                coins=pick(coins, settings.sim_coins), trades_per_second=pick(rate, settings.sim_rate),
                speed=pick(speed, settings.sim_speed), zipf_exponent=zipf,
                weight_limit=pick(weight_limit, settings.sim_weight_limit), ws_idle_timeout_s=idle_timeout,
                ws_max_connections_per_ip=max_connections, ws_max_new_connections_per_minute=max_new_connections,
                truth_file=pick(truth_file, settings.sim_truth_file),
                disconnect_interval_s=disconnect_interval, disconnect_probability=disconnect_probability,
                malformed_probability=malformed_probability, error_probability=error_probability,
                slow_probability=slow_probability, slow_delay_s=slow_delay, max_batch=max_batch,
                ws_per_message_deflate=deflate, pregenerate_trades=pregenerate,
                start_paused=paused)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise typer.BadParameter(str(exc).replace("\n", " ")) from None
        bind_host = str(pick(host, settings.sim_host))
        bind_port = int(pick(port, settings.sim_port))  # type: ignore[arg-type]
        app = create_app(config)
        typer.echo(f"simulator: http://{bind_host}:{bind_port}/info  ws://{bind_host}:{bind_port}/ws  "
                   f"({config.traders} traders, {config.coins} coins, {config.rate:g} trades/s, seed {config.seed})",
                   err=True)
        uvicorn.Server(uvicorn_config(app, config, bind_host, bind_port, log_level=log_level)).run()
