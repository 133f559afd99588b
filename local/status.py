"""The supervisor's state: what `hyperfollow up` prints every 30 s and `hyperfollow status` reads.

The running supervisor rewrites `<HYPERFOLLOW_HOME>/up/state.json` (atomically: write, then rename) whenever
something changes and at every health check; `hyperfollow status` reads it and checks that the supervisor that
wrote it is still alive (pid and process start time, so a reused pid is not mistaken for it). Formatting is
pure and tested without processes.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

__all__ = [
    "ServiceState",
    "UpState",
    "format_table",
    "format_uptime",
    "process_start_time",
    "read_state",
    "state_path",
    "supervisor_alive",
    "write_state",
]

#: States of a service, in the table.
STATES = ("waiting", "starting", "healthy", "unhealthy", "not answering", "backoff", "stopping", "stopped", "failed")


@dataclass
class ServiceState:
    name: str
    state: str = "stopped"
    pid: int | None = None
    #: wall-clock time (epoch seconds) the current process started
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    port: int | None = None
    note: str = ""
    #: start time of `pid` as psutil reports it (to recognise the process later, e.g. after a crash of `up`)
    process_started: float | None = None


@dataclass
class UpState:
    supervisor_pid: int
    supervisor_started: float
    started_at: float
    updated_at: float
    exchange: str
    web_url: str
    log_dir: str
    phase: str = "starting"  # starting, running, stopping, stopped
    services: list[ServiceState] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> UpState:
        data = json.loads(text)
        services = [ServiceState(**item) for item in data.pop("services", [])]
        return cls(**data, services=services)

    def healthy(self) -> bool:
        return all(service.state == "healthy" for service in self.services)


def state_path(home: Path) -> Path:
    return home / "up" / "state.json"


def write_state(path: Path, state: UpState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(state.to_json())
    os.replace(temporary, path)


def read_state(path: Path) -> UpState | None:
    try:
        return UpState.from_json(path.read_text())
    except (OSError, ValueError, TypeError):
        return None


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process(pid: int | None, started: float | None) -> bool:
    """True when `pid` is alive and is the process that started at `started` (not a reuse of its pid)."""
    if pid is None or started is None:
        return False
    now_started = process_start_time(pid)
    if now_started is None:
        return False
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return False
    return abs(now_started - started) < 1.0


def supervisor_alive(state: UpState) -> bool:
    """Whether the supervisor that wrote `state` is still running it (alive, and not done stopping)."""
    return state.phase != "stopped" and same_process(state.supervisor_pid, state.supervisor_started)


def format_uptime(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_table(state: UpState, now: float) -> str:
    """The status table: one row per service (SERVICE, STATE, PID, UPTIME, RESTARTS, PORT, NOTE)."""
    header = ("SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "PORT", "NOTE")
    rows = [header]
    for service in state.services:
        running = service.pid is not None and service.state not in ("waiting", "stopped", "failed", "backoff")
        rows.append((
            service.name,
            service.state,
            str(service.pid) if running else "-",
            format_uptime(now - service.started_at) if running and service.started_at else "-",
            str(service.restarts),
            str(service.port) if service.port else "-",
            service.note,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in rows]
    return "\n".join(line.rstrip() for line in lines)
