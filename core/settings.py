"""Configuration from the environment (and an optional `.env` file), validated once at start.

The seed's variable names are kept (`DATABASE_URL`, `REDIS_URL`, `HYPERLIQUID_API_URL`, `WEBSOCKET_URL`,
`POPULAR_COINS`, `BATCH_SIZE`, `DEBUG`, `SECRET_KEY`, `LOG_LEVEL`); everything of ours is `HYPERFOLLOW_*`.
Components that need more settings subclass :class:`Settings` and add `HYPERFOLLOW_<COMPONENT>_*` fields.

A bad value never surfaces as a traceback: :func:`load_settings` turns pydantic's errors into one
:class:`ConfigError` line per variable, which the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "COIN_PATTERN",
    "ConfigError",
    "Settings",
    "load_settings",
]

#: A perp coin name as the exchange lists it: "BTC", "kPEPE", or a builder-deployed (HIP-3) "dex:COIN".
COIN_PATTERN = re.compile(r"^(?:[a-z0-9]{1,16}:)?[A-Za-z0-9]{1,24}$")

MAINNET_INFO_URL = "https://api.hyperliquid.xyz/info"
MAINNET_WS_URL = "wss://api.hyperliquid.xyz/ws"


def _env(name: str) -> dict[str, object]:
    """Field arguments binding a field to exactly one environment variable name."""
    return {"validation_alias": AliasChoices(name)}


def _check_url(value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(schemes)} (got {parts.scheme or 'none'!r})")
    if parts.scheme.startswith(("redis", "http", "ws", "postgres")) and not (parts.hostname or parts.query):
        raise ValueError("has no host")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError(f"has an invalid port: {exc}") from None
    return value


class Settings(BaseSettings):
    """Settings shared by every hyperfollow process."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      populate_by_name=False)

    # --- the seed's names -------------------------------------------------------------------------------------
    database_url: str | None = Field(None, description="PostgreSQL URL; unset = embedded server",
                                     **_env("DATABASE_URL"))
    redis_url: str | None = Field(None, description="Redis URL; unset = embedded server", **_env("REDIS_URL"))
    hyperliquid_api_url: str = Field(MAINNET_INFO_URL, description="the exchange's /info URL",
                                     **_env("HYPERLIQUID_API_URL"))
    websocket_url: str = Field(MAINNET_WS_URL, description="the exchange's WebSocket URL", **_env("WEBSOCKET_URL"))
    popular_coins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated perp coins to watch; empty = every listed perp", **_env("POPULAR_COINS"))
    batch_size: int = Field(50, gt=0, le=10_000, description="traders per tracking job", **_env("BATCH_SIZE"))
    debug: bool = Field(False, description="verbose errors and debug logs", **_env("DEBUG"))
    secret_key: SecretStr | None = Field(None, description="application secret (never logged)", **_env("SECRET_KEY"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="log level", **_env("LOG_LEVEL"))

    # --- ours -------------------------------------------------------------------------------------------------
    home: Path = Field(Path(".hyperfollow"), description="local state: embedded servers' data, pid files",
                       **_env("HYPERFOLLOW_HOME"))
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json when stderr is not a terminal (auto)", **_env("HYPERFOLLOW_LOG_FORMAT"))
    redis_namespace: str = Field("", pattern=r"^[A-Za-z0-9_.:-]*$", max_length=64,
                                 description="prefix of every Redis key and channel (several installs, one Redis)",
                                 **_env("HYPERFOLLOW_REDIS_NAMESPACE"))
    admin_token: SecretStr | None = Field(None, description="bearer token for admin endpoints (never logged)",
                                          **_env("HYPERFOLLOW_ADMIN_TOKEN"))
    weight_per_minute: int = Field(1200, gt=0, description="the exchange's REST weight limit per IP and minute",
                                   **_env("HYPERFOLLOW_WEIGHT_PER_MINUTE"))
    budget_target: float = Field(0.9, gt=0, le=1, description="fraction of the weight limit we allow ourselves",
                                 **_env("HYPERFOLLOW_BUDGET_TARGET"))
    budget_group: str = Field("default", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                              description="weight budget shared by every process behind one egress IP",
                              **_env("HYPERFOLLOW_BUDGET_GROUP"))
    embedded_pg_port: int = Field(55432, ge=1024, le=65535, description="TCP port of the embedded PostgreSQL",
                                  **_env("HYPERFOLLOW_EMBEDDED_PG_PORT"))
    embedded_redis_port: int = Field(56379, ge=1024, le=65535, description="TCP port of the embedded Redis",
                                     **_env("HYPERFOLLOW_EMBEDDED_REDIS_PORT"))
    api_host: str = Field("127.0.0.1", description="API bind address", **_env("HYPERFOLLOW_API_HOST"))
    api_port: int = Field(8000, ge=1, le=65535, description="API port (the seed's 8000)",
                          **_env("HYPERFOLLOW_API_PORT"))
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port of non-HTTP services; 0 = off",
                              **_env("HYPERFOLLOW_METRICS_PORT"))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("postgresql", "postgres", "postgresql+psycopg"))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return _check_url(value, ("redis", "rediss", "unix"))

    @field_validator("hyperliquid_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _check_url(value, ("http", "https")) or MAINNET_INFO_URL

    @field_validator("websocket_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        return _check_url(value, ("ws", "wss")) or MAINNET_WS_URL

    @field_validator("popular_coins", mode="before")
    @classmethod
    def _coins(cls, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        coins = tuple(str(item).strip() for item in items if str(item).strip())
        bad = [coin for coin in coins if not COIN_PATTERN.match(coin)]
        if bad:
            raise ValueError(f"not a perp coin name: {', '.join(map(repr, bad))} (expected e.g. BTC,ETH,kPEPE)")
        if len(set(coins)) != len(coins):
            raise ValueError("lists a coin twice")
        return coins

    @property
    def weight_budget_per_minute(self) -> int:
        """Weight per minute all our processes together may spend (the target fraction of the limit)."""
        return max(1, int(self.weight_per_minute * self.budget_target))

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def uses_embedded_redis(self) -> bool:
        return self.redis_url is None


class ConfigError(Exception):
    """A configuration value is invalid; the message names the variable and fits on one line."""


S = TypeVar("S", bound=Settings)


def _describe(error: dict[str, object]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())) or "configuration"  # type: ignore[union-attr]
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{loc}: {message}"


def load_settings(cls: type[S] = Settings, **overrides: object) -> S:  # type: ignore[assignment]
    """Build settings from the environment; raise :class:`ConfigError` naming every bad variable.

    `overrides` use field names (`batch_size=3`). Fields are bound to their variable names only: matching by
    field name as well would read `HOME` into `home`.
    """
    by_alias: dict[str, object] = {}
    for name, value in overrides.items():
        field = cls.model_fields.get(name)
        if field is None:
            by_alias[name] = value
        else:
            by_alias[field.validation_alias.choices[0] if field.validation_alias else name] = value  # type: ignore[union-attr]
    try:
        return cls(**by_alias)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())  # type: ignore[arg-type]
        raise ConfigError(f"invalid configuration: {problems}") from None
