"""The status table and the state file `hyperfollow status` reads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hyperfollow.local.status import (
    ServiceState,
    UpState,
    format_table,
    format_uptime,
    process_start_time,
    read_state,
    same_process,
    supervisor_alive,
    write_state,
)


def state(**overrides: object) -> UpState:
    services = [
        ServiceState("sim", "healthy", pid=101, started_at=1000.0, port=8100),
        ServiceState("worker-1", "backoff", pid=None, started_at=1000.0, restarts=2, last_exit=1,
                     note="exited with status 1; restart 2/5 in 2 s"),
        ServiceState("api", "failed", pid=None, restarts=5, port=8000, note="gave up"),
        ServiceState("discovery", "unhealthy", pid=103, started_at=3590.0, restarts=1),
    ]
    values: dict[str, object] = dict(supervisor_pid=os.getpid(), supervisor_started=process_start_time(os.getpid()),
                                     started_at=900.0, updated_at=1000.0, exchange="exchange: x", web_url="u",
                                     log_dir="/l", phase="running", services=services)
    values.update(overrides)
    return UpState(**values)  # type: ignore[arg-type]


def test_uptime_is_short_and_readable() -> None:
    assert [format_uptime(s) for s in (None, -1, 0, 59.9, 61, 3600, 3723, 86_400 * 2 + 7200)] == [
        "-", "-", "0s", "59s", "1m01s", "1h00m", "1h02m", "2d02h"]


def test_table_shows_pid_uptime_restarts_and_state_per_service() -> None:
    lines = format_table(state(), now=3600.0).splitlines()
    assert lines[0].split() == ["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "PORT", "NOTE"]
    assert lines[1].split() == ["sim", "healthy", "101", "43m20s", "0", "8100"]
    # a service waiting to restart or failed has no pid and no uptime, and says why
    assert lines[2].split()[:6] == ["worker-1", "backoff", "-", "-", "2", "-"]
    assert lines[2].endswith("exited with status 1; restart 2/5 in 2 s")
    assert lines[3].split()[:6] == ["api", "failed", "-", "-", "5", "8000"]
    assert lines[4].split()[:4] == ["discovery", "unhealthy", "103", "10s"]
    # columns line up
    assert len({line.index(line.split()[1]) for line in lines}) == 1


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "up" / "state.json"
    written = state()
    write_state(path, written)
    assert read_state(path) == written
    assert not list(path.parent.glob(".*tmp"))  # written atomically, nothing left over
    assert read_state(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert read_state(tmp_path / "bad.json") is None


def test_healthy_only_when_every_service_is() -> None:
    assert not state().healthy()
    assert state(services=[ServiceState("a", "healthy"), ServiceState("b", "healthy")]).healthy()


def test_a_dead_or_reused_pid_is_not_the_supervisor() -> None:
    assert supervisor_alive(state())
    assert not supervisor_alive(state(supervisor_started=(process_start_time(os.getpid()) or 0) - 100))
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start_time(child.pid)
    child.wait()
    assert not same_process(child.pid, started)
    assert not same_process(None, None)


def test_a_supervisor_that_has_stopped_is_not_running() -> None:
    assert not supervisor_alive(state(phase="stopped"))
