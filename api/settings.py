"""The API's own settings (HYPERFOLLOW_API_*), on top of the shared ones (host and port live in core)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from hyperfollow.core.settings import Settings

__all__ = ["ApiSettings"]


def _env(name: str) -> AliasChoices:
    return AliasChoices(f"HYPERFOLLOW_API_{name}")


class ApiSettings(Settings):
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=_env("CORS_ORIGINS"),
        description="comma-separated origins allowed by CORS (`*` for any); empty = no CORS headers")
    default_page_size: int = Field(100, ge=1, le=10_000, validation_alias=_env("DEFAULT_PAGE_SIZE"),
                                   description="rows per page when `limit` is not given (the seed's 100)")
    max_page_size: int = Field(500, ge=1, le=10_000, validation_alias=_env("MAX_PAGE_SIZE"),
                               description="largest `limit` a client may ask for")
    cache_ttl_s: int = Field(300, ge=0, le=86_400, validation_alias=_env("CACHE_TTL_S"),
                             description="leaderboard cache lifetime (the seed's 5 min); 0 = no cache")
    ws_queue_size: int = Field(1024, ge=1, le=1_000_000, validation_alias=_env("WS_QUEUE_SIZE"),
                               description="messages buffered per WebSocket client; a client that falls this far "
                                           "behind is dropped (it may resume with ?since=)")
    ws_max_replay: int = Field(50_000, ge=0, le=10_000_000, validation_alias=_env("WS_MAX_REPLAY"),
                               description="most stream entries replayed to one resuming client")
    ws_drop_grace_s: float = Field(30.0, ge=0, le=600, validation_alias=_env("WS_DROP_GRACE_S"),
                                   description="how long a dropped client gets to read its closing message")
    ws_compression: bool = Field(False, validation_alias=_env("WS_COMPRESSION"),
                                 description="offer per-message deflate; off by default: each frame is serialised "
                                             "once for all clients, but compressed once per client")
    db_pool_size: int = Field(10, ge=1, le=200, validation_alias=_env("DB_POOL_SIZE"),
                              description="PostgreSQL connections per API process (as many again on overflow)")
    access_log: bool = Field(True, validation_alias=_env("ACCESS_LOG"), description="log every HTTP request")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> tuple[str, ...]:
        if value is None:
            return ()
        items = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[arg-type]
        origins = tuple(str(item).strip().rstrip("/") for item in items if str(item).strip())
        bad = [o for o in origins if o != "*" and not o.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"not an origin: {', '.join(map(repr, bad))} (expected e.g. https://example.org or *)")
        return origins

    @field_validator("max_page_size")
    @classmethod
    def _max_page(cls, value: int, info: object) -> int:
        default = getattr(info, "data", {}).get("default_page_size", 1)
        if value < default:
            raise ValueError(f"must be at least HYPERFOLLOW_API_DEFAULT_PAGE_SIZE ({default})")
        return value
