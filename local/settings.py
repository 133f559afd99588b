"""Settings of the local supervisor (`hyperfollow up`), `HYPERFOLLOW_UP_*`; command-line flags override them."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from hyperfollow.core.settings import Settings

__all__ = ["UpSettings"]


def _env(name: str) -> dict[str, object]:
    return {"validation_alias": AliasChoices(f"HYPERFOLLOW_UP_{name}")}


class UpSettings(Settings):
    up_log_dir: Path = Field(Path("logs"), description="service logs (NAME.log, NAME.error.log); relative to the "
                                                       "working directory of `hyperfollow up`", **_env("LOG_DIR"))
    up_shards: int = Field(1, ge=1, le=64, description="shards the slot space is split into", **_env("SHARDS"))
    up_workers: int = Field(2, ge=1, le=64, description="worker processes per shard", **_env("WORKERS"))
    up_health_interval_s: float = Field(10.0, gt=0, le=3600, description="seconds between health checks",
                                        **_env("HEALTH_INTERVAL_S"))
    up_status_interval_s: float = Field(30.0, ge=0, le=86_400,
                                        description="seconds between status tables on stdout; 0 = never",
                                        **_env("STATUS_INTERVAL_S"))
    up_max_restarts: int = Field(5, ge=0, le=1000,
                                 description="restarts in a row before a service is reported failed",
                                 **_env("MAX_RESTARTS"))
    up_start_timeout_s: float = Field(90.0, gt=0, le=3600,
                                      description="how long a starting service may take to become healthy",
                                      **_env("START_TIMEOUT_S"))
    up_log_max_bytes: int = Field(50 * 1024 * 1024, ge=0,
                                  description="a service log larger than this is rotated (NAME.log.1); 0 = never",
                                  **_env("LOG_MAX_BYTES"))
    up_sim_leaderboard_interval_s: int = Field(
        60, ge=10, le=86_400, description="with --exchange sim, seconds between leaderboard computations (the "
        "simulated market moves fast; the scheduler's own default is 10 minutes)",
        **_env("SIM_LEADERBOARD_INTERVAL_S"))
