"""The local supervisor with real child processes: restarts with back-off, failure after too many, health
rules, graceful stop in reverse order, SIGKILL of a whole group that ignores SIGTERM, logs, the state file
that `hyperfollow status` and `hyperfollow logs` read."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil
import pytest
from support import free_port, wait_for

from hyperfollow.local.plan import ServiceSpec
from hyperfollow.local.supervisor import Supervisor, SupervisorConfig

SLEEPER = "import time; print('ready', flush=True); time.sleep(600)"
CRASHER = "import sys; print('boom', file=sys.stderr, flush=True); sys.exit(3)"
# ignores SIGTERM, and so does the grandchild it leaves in its process group; both write their pid
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
open(sys.argv[1], "w").write(f"{os.getpid()} {child.pid}")
time.sleep(600)
"""
# exits 0 on SIGTERM after appending its name to a file (to see the order of a graceful stop)
GRACEFUL = """
import signal, sys, time
def bye(*_):
    open(sys.argv[1], "a").write(sys.argv[2] + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
print("ready", flush=True)
time.sleep(600)
"""
# serves GET /healthz with the status code read from a file at every request
HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(open(sys.argv[2]).read().strip()))
        self.end_headers()
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def python(code: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code, *args)


def config(tmp_path: Path, **overrides: object) -> SupervisorConfig:
    values: dict[str, object] = dict(log_dir=tmp_path / "logs", state_file=tmp_path / "home" / "up" / "state.json",
                                     health_interval_s=0.2, status_interval_s=0, max_restarts=3,
                                     backoff_base_s=0.05, start_timeout_s=1.0, stage_wait_s=10,
                                     checks_to_restart=3)
    values.update(overrides)
    return SupervisorConfig(**values)  # type: ignore[arg-type]


@contextmanager
def supervising(specs: list[ServiceSpec], cfg: SupervisorConfig) -> Iterator[Supervisor]:
    """Start the services, supervise them in a thread; stop everything on the way out."""
    lines: list[str] = []
    supervisor = Supervisor(specs, cfg, out=lines.append)
    stop = threading.Event()
    loop = threading.Thread(target=supervisor.run, args=(stop,), daemon=True)
    try:
        supervisor.start_all()
        loop.start()
        yield supervisor
    finally:
        stop.set()
        if loop.is_alive():
            loop.join(timeout=10)
        supervisor.stop_all()


def notes(log: Path) -> list[dict]:
    records = [orjson.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [r for r in records if r.get("logger") == "hyperfollow.up"]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_crashing_service_backs_off_then_fails_while_the_others_keep_running(tmp_path: Path) -> None:
    specs = [ServiceSpec("steady", python(SLEEPER)), ServiceSpec("crashy", python(CRASHER), stage=1)]
    with supervising(specs, config(tmp_path)) as supervisor:
        steady_pid = supervisor.state_of("steady").pid
        wait_for(lambda: supervisor.state_of("crashy").state == "failed", timeout=20, what="crashy failed")
        crashy = supervisor.state_of("crashy")
        assert crashy.restarts == 3 and crashy.last_exit == 3 and crashy.pid is None
        assert "gave up after 3 restarts" in crashy.note
        assert supervisor.state_of("steady").state == "healthy" and supervisor.state_of("steady").pid == steady_pid
    log = notes(tmp_path / "logs" / "crashy.log")
    assert [n["restart_in_s"] for n in log if n["event"] == "exited; restarting"] == [0.05, 0.1, 0.2]
    assert [n["event"] for n in log].count("started") == 4
    errors = (tmp_path / "logs" / "crashy.error.log").read_text()
    assert errors.count("boom") == 4 and "failed: not restarting again" in errors
    assert "boom" not in (tmp_path / "logs" / "steady.log").read_text()
    assert "ready" in (tmp_path / "logs" / "steady.log").read_text()
    assert (tmp_path / "logs" / "steady.error.log").read_text() == ""


def test_a_killed_service_is_restarted(tmp_path: Path) -> None:
    with supervising([ServiceSpec("steady", python(SLEEPER))], config(tmp_path)) as supervisor:
        first = supervisor.state_of("steady").pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: supervisor.state_of("steady").pid not in (None, first), timeout=10, what="a new process")
        assert supervisor.state_of("steady").restarts == 1
        assert supervisor.state_of("steady").last_exit == -signal.SIGKILL


def test_stop_kills_a_group_that_ignores_sigterm_and_leaves_no_process(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    spec = ServiceSpec("stubborn", python(STUBBORN, str(pids_file)), stop_grace_s=0.5)
    with supervising([spec], config(tmp_path)):
        leader, grandchild = map(int, wait_for(lambda: pids_file.exists() and pids_file.read_text().split(),
                                               timeout=10, what="pids written"))
        assert os.getpgid(grandchild) == leader  # same group, its own session
        assert os.getsid(leader) == leader
    assert gone(leader) and gone(grandchild)
    log = notes(tmp_path / "logs" / "stubborn.log")
    assert [n["event"] for n in log][-3:] == ["stopping", "grace period over: SIGKILL", "stopped"]


def test_graceful_stop_goes_last_stage_first(tmp_path: Path) -> None:
    order = tmp_path / "order"
    specs = [ServiceSpec(name, python(GRACEFUL, str(order), name), stage=stage, stop_grace_s=10)
             for stage, name in enumerate(["database-ish", "middle", "front"])]
    with supervising(specs, config(tmp_path)) as supervisor:
        for name in ("database-ish", "middle", "front"):  # each has its SIGTERM handler in place
            log = tmp_path / "logs" / f"{name}.log"
            wait_for(lambda log=log: "ready" in log.read_text().splitlines(), timeout=20, what=f"{name} ready")
    assert order.read_text().split() == ["front", "middle", "database-ish"]
    assert {s.state for s in (supervisor.state_of(n) for n in ("front", "middle", "database-ish"))} == {"stopped"}
    assert supervisor.state_of("front").last_exit == 0


def test_unhealthy_answers_restart_only_services_that_say_so_about_themselves(tmp_path: Path) -> None:
    status_file = tmp_path / "status"
    status_file.write_text("200")
    own_port, outside_port = free_port(), free_port()
    specs = [ServiceSpec("own", python(HEALTH_SERVER, str(own_port), str(status_file)),
                         health_url=f"http://127.0.0.1:{own_port}/healthz", restart_when_unhealthy=True),
             ServiceSpec("outside", python(HEALTH_SERVER, str(outside_port), str(status_file)),
                         health_url=f"http://127.0.0.1:{outside_port}/healthz", restart_when_unhealthy=False)]
    with supervising(specs, config(tmp_path, max_restarts=50)) as supervisor:
        assert supervisor.state_of("own").state == "healthy" == supervisor.state_of("outside").state
        outside_pid = supervisor.state_of("outside").pid
        status_file.write_text("503")
        wait_for(lambda: supervisor.state_of("own").restarts >= 1, timeout=15, what="own restarted")
        wait_for(lambda: supervisor.state_of("outside").state == "unhealthy", timeout=5, what="outside unhealthy")
        assert supervisor.state_of("outside").pid == outside_pid and supervisor.state_of("outside").restarts == 0
        status_file.write_text("200")
        wait_for(lambda: supervisor.state_of("outside").state == "healthy", timeout=5, what="outside recovered")
        wait_for(lambda: supervisor.state_of("own").state == "healthy", timeout=15, what="own healthy again")
    assert any(n["event"] == "stopping" and n["reason"] == "restart"
               for n in notes(tmp_path / "logs" / "own.log"))


def test_a_service_whose_health_never_answers_is_restarted(tmp_path: Path) -> None:
    silent = ServiceSpec("silent", python(SLEEPER), health_url=f"http://127.0.0.1:{free_port()}/healthz",
                         restart_when_unhealthy=False, stop_grace_s=2)
    with supervising([silent], config(tmp_path, stage_wait_s=0.5)) as supervisor:
        assert supervisor.state_of("silent").state == "starting"
        wait_for(lambda: supervisor.state_of("silent").restarts >= 1, timeout=15, what="silent restarted")
    log = notes(tmp_path / "logs" / "silent.log")
    assert any(n["event"] == "health: not answering" for n in log)


def test_status_and_logs_commands_read_the_running_supervisor(tmp_path: Path) -> None:
    cfg = config(tmp_path, exchange="exchange: the simulator", web_url="http://127.0.0.1:1/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFOLLOW_")}
    env["HYPERFOLLOW_HOME"] = str(tmp_path / "home")
    command = [sys.executable, "-m", "hyperfollow.core"]
    with supervising([ServiceSpec("steady", python(SLEEPER)), ServiceSpec("crashy", python(CRASHER))],
                     cfg) as supervisor:
        wait_for(lambda: supervisor.state_of("crashy").state == "failed", timeout=20, what="crashy failed")
        supervisor.write_state()
        shown = subprocess.run([*command, "status"], env=env, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 1, shown.stderr  # running, but not every service is healthy
        assert "exchange: the simulator" in shown.stdout
        rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines() if line.split()}
        assert rows["steady"][1:3] == ["healthy", str(supervisor.state_of("steady").pid)]
        assert rows["crashy"][1] == "failed" and rows["crashy"][4] == "3"
        logs = subprocess.run([*command, "logs", "steady", "-n", "5"], env=env, capture_output=True, text=True,
                              timeout=60)
        assert logs.returncode == 0 and "ready" in logs.stdout.splitlines()
        errors = subprocess.run([*command, "logs", "crashy", "--errors"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert errors.stdout.count("boom") == 4
        missing = subprocess.run([*command, "logs", "nope"], env=env, capture_output=True, text=True, timeout=60)
        assert missing.returncode == 1 and "crashy" in missing.stderr and "steady" in missing.stderr
    stopped = subprocess.run([*command, "status"], env=env, capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 1 and "not running" in stopped.stdout


@pytest.mark.parametrize("blocker", ["api", "lock"])
def test_up_refuses_to_start_with_one_line_before_starting_anything(tmp_path: Path, blocker: str) -> None:
    import fasteners

    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPERFOLLOW_")}
    # unreachable servers: up must fail before it would touch them
    env.update(HYPERFOLLOW_HOME=str(tmp_path / "home"), DATABASE_URL="postgresql://nobody@127.0.0.1:9/x",
               REDIS_URL="redis://127.0.0.1:9/0")
    with contextlib_socket(api_port if blocker == "api" else None):
        lock = fasteners.InterProcessLock(str(tmp_path / "home" / "up" / "up.lock"))
        (tmp_path / "home" / "up").mkdir(parents=True)
        if blocker == "lock":
            assert lock.acquire(blocking=False)
        try:
            done = subprocess.run([sys.executable, "-m", "hyperfollow.core", "up", "--api-port", str(api_port),
                                   "--log-dir", str(tmp_path / "logs")],
                                  env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        finally:
            if blocker == "lock":
                lock.release()
    assert done.returncode == 1
    message = done.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert (f"port {api_port}" in message) if blocker == "api" else ("already running" in message)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "home" / "up" / "state.json").exists()


@contextmanager
def contextlib_socket(port: int | None) -> Iterator[None]:
    """A listening socket on `port` (nothing when None)."""
    import socket

    if port is None:
        yield
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def test_up_stops_what_an_earlier_killed_up_left_running(tmp_path: Path) -> None:
    from hyperfollow.local.status import ServiceState, UpState, process_start_time, state_path, write_state
    from hyperfollow.local.up import _stop_leftovers

    home = tmp_path / "home"
    orphan = subprocess.Popen(python(SLEEPER), start_new_session=True, stdout=subprocess.DEVNULL)
    unrelated = subprocess.Popen(python(SLEEPER), start_new_session=True, stdout=subprocess.DEVNULL)
    try:
        services = [ServiceState("discovery", "healthy", pid=orphan.pid,
                                 process_started=process_start_time(orphan.pid)),
                    # a pid that was reused since: its start time differs, so it is left alone
                    ServiceState("api", "healthy", pid=unrelated.pid, process_started=1.0)]
        write_state(state_path(home), UpState(supervisor_pid=999_999, supervisor_started=1.0, started_at=1.0,
                                              updated_at=1.0, exchange="", web_url="", log_dir="", phase="running",
                                              services=services))
        said: list[str] = []
        reaper = threading.Thread(target=orphan.wait)  # as init would: an orphan's exit is reaped at once
        reaper.start()
        _stop_leftovers(home, said.append)  # type: ignore[arg-type]
        reaper.join(timeout=15)
        assert orphan.returncode == -signal.SIGTERM
        assert unrelated.poll() is None
        assert "discovery" in said[0] and "api" not in said[0]
    finally:
        for process in (orphan, unrelated):
            process.kill()
            process.wait()
