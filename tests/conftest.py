"""Fixtures shared by the whole suite: real PostgreSQL and Redis, isolated per test session.

Servers: `DATABASE_URL` / `REDIS_URL` when given, else the embedded servers under `.hyperfollow/test`
(started on demand, stopped when the last test session using them ends). Each session gets its own
database (`hf_test_<random>`, migrated to head, dropped at the end) and its own Redis namespace, so
several sessions can run at once against the same servers. `service_env` is the environment for
hyperfollow services a test starts as subprocesses, bound to the same database and namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fasteners
import psycopg
import pytest
import redis
from sqlalchemy import Engine, text

from hyperfollow.core.db.engine import make_engine, with_database
from hyperfollow.core.db.migrate import upgrade
from hyperfollow.core.db.models import Base
from hyperfollow.core.embedded import ensure_servers, stop_servers
from hyperfollow.core.keys import RedisKeys, purge_namespace
from hyperfollow.core.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
TEST_HOME = REPO / ".hyperfollow" / "test"
TEST_PG_PORT = int(os.environ.get("HYPERFOLLOW_TEST_PG_PORT", "55442"))
TEST_REDIS_PORT = int(os.environ.get("HYPERFOLLOW_TEST_REDIS_PORT", "56389"))


class _EmbeddedLease:
    """Reference-counts test sessions using the embedded servers, so the last one out stops them."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.users_file = home / "sessions.json"
        self.lock = fasteners.InterProcessLock(str(home / "sessions.lock"))

    def _users(self) -> list[int]:
        try:
            pids = json.loads(self.users_file.read_text())
        except (OSError, ValueError):
            return []
        alive = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 0)
                alive.append(pid)
        return alive

    def acquire(self) -> None:
        with self.lock:
            self.users_file.write_text(json.dumps([*self._users(), os.getpid()]))

    def release(self) -> bool:
        """Return True when no other session uses the servers any more."""
        with self.lock:
            users = [pid for pid in self._users() if pid != os.getpid()]
            self.users_file.write_text(json.dumps(users))
            return not users


@pytest.fixture(scope="session")
def server_urls() -> Iterator[tuple[str, str]]:
    """(PostgreSQL server URL, Redis URL): the configured ones or the embedded ones."""
    database_url = os.environ.get("DATABASE_URL") or None
    redis_url = os.environ.get("REDIS_URL") or None
    lease = None
    if database_url is None or redis_url is None:
        lease = _EmbeddedLease(TEST_HOME)
        lease.acquire()
    servers = ensure_servers(TEST_HOME, database_url=database_url, redis_url=redis_url,
                             pg_port=TEST_PG_PORT, redis_port=TEST_REDIS_PORT)
    yield servers.database_url, servers.redis_url
    if lease is not None and lease.release():
        stop_servers(TEST_HOME, pg_port=TEST_PG_PORT, redis_port=TEST_REDIS_PORT)


@pytest.fixture(scope="session")
def database_url(server_urls: tuple[str, str]) -> Iterator[str]:
    """A fresh database for this test session, migrated to head."""
    server_url = server_urls[0]
    name = f"hf_test_{uuid.uuid4().hex[:10]}"
    admin_url = with_database(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    upgrade(url)
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_namespace() -> str:
    return f"hft{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="session")
def redis_url(server_urls: tuple[str, str], redis_namespace: str) -> Iterator[str]:
    url = server_urls[1]
    yield url
    client = redis.Redis.from_url(url)
    purge_namespace(client, redis_namespace)
    client.close()


@pytest.fixture(scope="session")
def service_env(database_url: str, redis_url: str, redis_namespace: str, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, str]:
    """Environment for a hyperfollow subprocess bound to this session's database and Redis namespace."""
    home = tmp_path_factory.mktemp("hyperfollow-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFOLLOW_")}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, HYPERFOLLOW_REDIS_NAMESPACE=redis_namespace,
               HYPERFOLLOW_HOME=str(home), HYPERFOLLOW_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="session")
def settings(database_url: str, redis_url: str, redis_namespace: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Settings:
    return load_settings(Settings, database_url=database_url, redis_url=redis_url, redis_namespace=redis_namespace,
                         home=tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session")
def keys(redis_namespace: str) -> RedisKeys:
    return RedisKeys(redis_namespace)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture()
def db(engine: Engine) -> Engine:
    """The session's database, emptied before the test."""
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture()
def redis_client(redis_url: str, redis_namespace: str) -> Iterator[redis.Redis]:
    """A Redis client; the session's namespace (RQ's keys included) is emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    purge_namespace(client, redis_namespace)
    yield client
    client.close()
