"""Helpers shared by the benchmarks: servers, scratch databases, ports, percentiles."""

from __future__ import annotations

import contextlib
import socket
import statistics
import uuid
from collections.abc import Iterator

import psycopg

from hyperfollow.core.db.engine import with_database
from hyperfollow.core.db.migrate import upgrade
from hyperfollow.core.runtime import resolve_servers
from hyperfollow.core.settings import Settings, load_settings

__all__ = ["free_port", "percentiles", "scratch_database", "servers"]


def servers() -> tuple[str, str]:
    """(database URL, Redis URL): DATABASE_URL / REDIS_URL, or the embedded servers (started if needed)."""
    found = resolve_servers(load_settings(Settings))
    return found.database_url, found.redis_url


@contextlib.contextmanager
def scratch_database(server_url: str | None = None) -> Iterator[str]:
    """A fresh database migrated to head on the benchmark server, dropped afterwards."""
    server_url = server_url or servers()[0]
    admin = with_database(server_url, "postgres")
    name = f"hf_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = with_database(server_url, name)
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentiles(samples: list[float], points: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """Named percentiles (p50, p90, p99 …) of samples, plus the mean and the count."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    result: dict[str, float] = {"count": len(ordered), "mean": statistics.fmean(ordered)}
    for point in points:
        index = min(len(ordered) - 1, max(0, round(point / 100 * len(ordered)) - 1))
        result[f"p{point}"] = ordered[index]
    return result
