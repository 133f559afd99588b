"""Start-up shared by every service command: settings, logging, and the database/Redis to use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from hyperfollow.core.embedded import Servers, ensure_servers
from hyperfollow.core.keys import RedisKeys
from hyperfollow.core.logging import configure_logging
from hyperfollow.core.settings import Settings, load_settings

__all__ = ["Runtime", "bootstrap", "resolve_servers"]

S = TypeVar("S", bound=Settings)


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    redis_url: str
    keys: RedisKeys
    started_embedded: list[str]


def resolve_servers(settings: Settings) -> Servers:
    """The configured URLs, or those of the embedded servers (started when needed)."""
    return ensure_servers(settings.home, database_url=settings.database_url, redis_url=settings.redis_url,
                          pg_port=settings.embedded_pg_port, redis_port=settings.embedded_redis_port)


def bootstrap(service: str, settings_cls: type[S] = Settings, *, need_servers: bool = True) -> tuple[S, Runtime]:
    """Load settings (raising ConfigError on bad values), configure logging, resolve the servers."""
    settings = load_settings(settings_cls)
    secrets = [s.get_secret_value() if s else None for s in (settings.secret_key, settings.admin_token)]
    configure_logging(settings.log_level if not settings.debug else "DEBUG", settings.log_format,
                      secrets=secrets, service=service)
    if need_servers:
        servers = resolve_servers(settings)
        database_url, redis_url, started = servers.database_url, servers.redis_url, servers.started
    else:
        database_url, redis_url, started = settings.database_url or "", settings.redis_url or "", []
    runtime = Runtime(settings=settings, database_url=database_url, redis_url=redis_url,
                      keys=RedisKeys(settings.redis_namespace), started_embedded=started)
    return settings, runtime
