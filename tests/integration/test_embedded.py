"""The embedded servers start, serve, stop without leftovers, keep their data, and explain a busy port."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from support import free_port

from hyperfollow.core.embedded import EmbeddedError, EmbeddedPostgres, EmbeddedRedis, ensure_servers, stop_servers


def _server_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_embedded_servers_keep_data_across_restarts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pg_port, redis_port = free_port(), free_port()
    servers = ensure_servers(home, database_url=None, redis_url=None, pg_port=pg_port, redis_port=redis_port)
    try:
        assert servers.started == ["postgres", "redis"]
        assert servers.database_url == f"postgresql://postgres@127.0.0.1:{pg_port}/hyperfollow"
        assert servers.redis_url == f"redis://127.0.0.1:{redis_port}/0"
        with psycopg.connect(servers.database_url) as conn:
            conn.execute("CREATE TABLE kept (value text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")
        client = redis.Redis.from_url(servers.redis_url)
        client.set("kept", "survives")
        client.close()
        # a second caller finds them running and starts nothing
        again = ensure_servers(home, database_url=None, redis_url=None, pg_port=pg_port, redis_port=redis_port)
        assert again.started == [] and again.database_url == servers.database_url

        assert stop_servers(home, pg_port=pg_port, redis_port=redis_port) == ["redis", "postgres"]
        assert _server_processes(home) == []
        assert not EmbeddedPostgres(home, pg_port).is_running() and not EmbeddedRedis(home, redis_port).is_running()

        restarted = ensure_servers(home, database_url=None, redis_url=None, pg_port=pg_port, redis_port=redis_port)
        assert restarted.started == ["postgres", "redis"]
        with psycopg.connect(restarted.database_url) as conn:
            assert conn.execute("SELECT value FROM kept").fetchall() == [("survives",)]
        client = redis.Redis.from_url(restarted.redis_url)
        assert client.get("kept") == b"survives"
        client.close()
    finally:
        stop_servers(home, pg_port=pg_port, redis_port=redis_port)
    assert _server_processes(home) == []


def test_configured_urls_start_nothing(tmp_path: Path) -> None:
    servers = ensure_servers(tmp_path, database_url="postgresql://x/y", redis_url="redis://x:1/0")
    assert servers.started == [] and not (tmp_path / "postgres").exists()


def test_a_busy_port_gives_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmbeddedError, match=f"port {port} is taken.*HYPERFOLLOW_EMBEDDED_REDIS_PORT"):
            EmbeddedRedis(tmp_path, port).start()
        with pytest.raises(EmbeddedError, match=f"port {port} is taken.*HYPERFOLLOW_EMBEDDED_PG_PORT"):
            EmbeddedPostgres(tmp_path, port).start()
