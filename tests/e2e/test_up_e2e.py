"""`hyperfollow up --exchange sim` as a new user runs it: a subprocess with no DATABASE_URL / REDIS_URL (so the
embedded servers start), the simulator, discovery, workers, the scheduler and the API.

The API must report traders, events and a leaderboard with non-zero win rates; a worker killed with SIGKILL is
restarted; Ctrl-C stops everything and leaves no process of any service's group, and the embedded servers this
run started are stopped too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from support import free_port, wait_for

from hyperfollow.core.embedded import stop_servers

pytestmark = pytest.mark.slow

COMMAND = [sys.executable, "-m", "hyperfollow.core"]


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    workdir: Path
    api: str
    sim_port: int
    pg_port: int
    redis_port: int

    @property
    def output(self) -> str:
        return (self.workdir / "up.out").read_text(errors="replace")

    def status(self) -> dict:
        done = subprocess.run([*COMMAND, "status", "--json"], env=self.env, cwd=self.workdir, capture_output=True,
                              text=True, timeout=60)
        return json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}

    def service(self, name: str) -> dict:
        return next(s for s in self.status().get("services", []) if s["name"] == name)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.api + path, timeout=10, **kwargs)  # type: ignore[arg-type]


def group_members(pgids: set[int]) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) in pgids and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture()
def up(tmp_path: Path) -> Iterator[Up]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HYPERFOLLOW_") and k not in ("DATABASE_URL", "REDIS_URL", "HYPERLIQUID_API_URL",
                                                             "WEBSOCKET_URL")}
    api_port, sim_port, pg_port, redis_port = free_port(), free_port(), free_port(), free_port()
    env.update(HYPERFOLLOW_HOME=str(tmp_path / "home"), HYPERFOLLOW_EMBEDDED_PG_PORT=str(pg_port),
               HYPERFOLLOW_EMBEDDED_REDIS_PORT=str(redis_port), HYPERFOLLOW_UP_SIM_LEADERBOARD_INTERVAL_S="15",
               HYPERFOLLOW_UP_STATUS_INTERVAL_S="30", PYTHONUNBUFFERED="1")
    out = (tmp_path / "up.out").open("wb")
    process = subprocess.Popen(
        [*COMMAND, "up", "--exchange", "sim", "--api-port", str(api_port), "--sim-port", str(sim_port),
         "--sim-traders", "300", "--sim-coins", "8", "--sim-rate", "40", "--workers", "2"],
        env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    out.close()
    made = Up(process, env, tmp_path, f"http://127.0.0.1:{api_port}", sim_port, pg_port, redis_port)
    try:
        yield made
    finally:
        if process.poll() is None:  # the test failed midway: stop it as a user would, then make sure
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        state = tmp_path / "home" / "up" / "state.json"
        if state.exists():
            for service in json.loads(state.read_text())["services"]:
                if service["pid"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(service["pid"], signal.SIGKILL)
        stop_servers(tmp_path / "home", pg_port=pg_port, redis_port=redis_port)
        print(f"\n--- hyperfollow up output ---\n{made.output[-4000:]}")


def test_up_runs_the_whole_system_restarts_a_killed_service_and_stops_cleanly(up: Up) -> None:
    wait_for(lambda: "hyperfollow is up: open" in up.output or up.process.poll() is not None, timeout=120,
             step=0.5, what="the API healthy")
    assert up.process.poll() is None, up.output
    lines = up.output.splitlines()
    assert lines[0] == (f"exchange: the simulator (--exchange sim) at http://127.0.0.1:{up.sim_port}/info and "
                        f"ws://127.0.0.1:{up.sim_port}/ws")
    assert any(f"embedded at postgresql://postgres@127.0.0.1:{up.pg_port}/" in line and "(started)" in line
               for line in lines)
    assert f"hyperfollow is up: open {up.api}/ in a browser" in up.output

    status = up.status()
    assert status["running"] and status["web_url"] == f"{up.api}/"
    names = [s["name"] for s in status["services"]]
    assert names == ["sim", "discovery", "worker-1", "worker-2", "scheduler", "api"]
    assert all(s["state"] == "healthy" and s["pid"] for s in status["services"]), status["services"]

    # the system works: traders found, events stored, a leaderboard with real win rates, the web page served
    stats = wait_for(lambda: (lambda s: s if s["database"]["total_traders"] > 0 and
                              s["database"]["total_trade_events"] > 0 else None)(up.get("/api/v1/stats").json()),
                     timeout=60, step=1, what="traders and events")
    assert stats["cache"]["redis_connected"] is True
    rows = wait_for(lambda: (lambda rows: rows if any(r["win_rate"] > 0 for r in rows) else None)(
        up.get("/api/v1/leaderboard", params={"limit": 500}).json()), timeout=90, step=2,
        what="a leaderboard with non-zero win rates")
    assert all(0 <= r["win_rate"] <= 1 for r in rows) and len({r["trader_address"] for r in rows}) == len(rows)
    page = up.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert up.get("/health").json()["status"] == "healthy"

    # a killed service comes back
    victim = up.service("worker-1")
    os.kill(victim["pid"], signal.SIGKILL)
    restarted = wait_for(lambda: (lambda s: s if s["pid"] not in (None, victim["pid"]) and s["state"] == "healthy"
                                  else None)(up.service("worker-1")), timeout=60, step=0.5, what="worker-1 restarted")
    assert restarted["restarts"] == 1 and restarted["last_exit"] == -signal.SIGKILL
    assert (up.workdir / "logs" / "worker-1.log").stat().st_size > 0
    assert "killed by SIGKILL" in (up.workdir / "logs" / "worker-1.error.log").read_text()

    # Ctrl-C stops everything: no process of any service's group is left, nor the embedded servers it started
    final = up.status()
    pgids = {s["pid"] for s in final["services"] if s["pid"]}
    assert len(pgids) == 6
    postmaster = int((up.workdir / "home" / "postgres" / "postmaster.pid").read_text().split()[0])
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(timeout=90) == 0, up.output
    assert group_members(pgids) == []
    # pg_ctl returns once the server removed its pid file; the postmaster exits a moment later
    wait_for(lambda: gone(postmaster), timeout=15, what="the embedded PostgreSQL stopped")
    assert "stopped the embedded postgres and redis this run had started" in up.output
    after = subprocess.run([*COMMAND, "status"], env=up.env, cwd=up.workdir, capture_output=True, text=True,
                           timeout=60)
    assert after.returncode == 1 and "not running" in after.stdout
    stopped = json.loads((up.workdir / "home" / "up" / "state.json").read_text())
    assert {s["state"] for s in stopped["services"]} == {"stopped"}
