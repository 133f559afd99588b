"""Engines and sessions from a plain PostgreSQL URL (the driver, psycopg 3, is chosen here)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

__all__ = ["async_session_factory", "make_async_engine", "make_engine", "session_factory", "sqlalchemy_url",
           "with_database"]


def sqlalchemy_url(url: str) -> str:
    """`postgresql://…` (as users write it) -> `postgresql+psycopg://…` (what SQLAlchemy needs for psycopg 3)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("not a PostgreSQL URL")


def with_database(url: str, database: str) -> str:
    """The same server URL naming another database (query parameters kept)."""
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}" + (f"?{query}" if query else "")


def make_engine(url: str, *, pool_size: int = 5, application_name: str = "hyperfollow") -> Engine:
    return create_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         connect_args={"application_name": application_name})


def make_async_engine(url: str, *, pool_size: int = 5, application_name: str = "hyperfollow") -> AsyncEngine:
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size,
                               pool_pre_ping=True, connect_args={"application_name": application_name})


def session_factory(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    return sessionmaker(engine, expire_on_commit=False)


def async_session_factory(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)
