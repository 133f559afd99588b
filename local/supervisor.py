"""The local supervisor: one process group per service, restarts with back-off, health checks, graceful stop.

Each service runs in its own session and process group (`start_new_session=True`, i.e. `os.setsid`), so a
Ctrl-C in the terminal reaches only the supervisor, and stopping a service reaches everything it started:
SIGTERM to the group, up to the service's grace period, then SIGKILL to the group. Its stdout and stderr are
pipes the supervisor copies into `logs/NAME.log` and `logs/NAME.error.log` (local/logs.py).

Everything that changes a service's state happens in the thread that calls :meth:`Supervisor.tick` (the
supervisor's loop); health checks run in a small thread pool and are collected there, so there are no locks
around the state. Restart and health rules: local/policy.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hyperfollow.local.logs import LogSink
from hyperfollow.local.plan import ServiceSpec
from hyperfollow.local.policy import Health, HealthTracker, RestartBudget
from hyperfollow.local.status import ServiceState, UpState, format_table, process_start_time, write_state

__all__ = ["Supervisor", "SupervisorConfig", "check_health", "group_alive", "kill_group"]

HEALTH_TIMEOUT_S = 3.0
STARTING_CHECK_S = 0.5  # how often a starting service is checked until it first answers healthy


def check_health(url: str, timeout: float = HEALTH_TIMEOUT_S) -> Health:
    """GET `url`: 200 is healthy, another status unhealthy, no answer (refused, timeout) not answering."""
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return Health.NO_ANSWER
    return Health.HEALTHY if response.status_code == 200 else Health.UNHEALTHY


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is left (zombies of ours are reaped before this is asked)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class SupervisorConfig:
    log_dir: Path
    state_file: Path | None = None
    health_interval_s: float = 10.0
    status_interval_s: float = 30.0
    max_restarts: int = 5
    backoff_base_s: float = 1.0
    stable_after_s: float = 300.0
    start_timeout_s: float = 90.0
    #: how long `start_all` waits for a stage to be healthy before starting the next one anyway
    stage_wait_s: float = 30.0
    checks_to_restart: int = 3
    log_max_bytes: int = 0
    exchange: str = ""
    web_url: str = ""


@dataclass
class _Service:
    spec: ServiceSpec
    sink: LogSink
    budget: RestartBudget
    status: ServiceState
    health: HealthTracker = field(default_factory=HealthTracker)
    process: subprocess.Popen[bytes] | None = None
    started_mono: float = 0.0
    restart_at: float | None = None
    #: why the supervisor is stopping this process: "restart" (health), "stop" (shutdown), or None
    stopping: str | None = None
    kill_at: float | None = None
    next_check: float = 0.0
    check: Future[Health] | None = None
    pumps: list[threading.Thread] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    def __init__(self, services: Sequence[ServiceSpec], config: SupervisorConfig, *,
                 base_env: Mapping[str, str] | None = None, out: Callable[[str], None] = print,
                 on_first_healthy: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        names = [spec.name for spec in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.config = config
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.out = out
        self.on_first_healthy = on_first_healthy
        self.clock = clock
        self.services = {spec.name: _Service(
            spec=spec, sink=LogSink(config.log_dir, spec.name, config.log_max_bytes),
            budget=RestartBudget(config.max_restarts, config.stable_after_s, config.backoff_base_s),
            status=ServiceState(name=spec.name, state="waiting", port=spec.port),
            health=HealthTracker(spec.restart_when_unhealthy, config.checks_to_restart)) for spec in services}
        self.phase = "starting"
        self.started_at = time.time()
        self._pool = ThreadPoolExecutor(max_workers=max(2, min(16, len(services))), thread_name_prefix="health")
        self._next_status = clock() + config.status_interval_s if config.status_interval_s else None
        self._dirty = True
        self._announced: set[str] = set()

    # --- one service ------------------------------------------------------------------------------------------
    def _say(self, message: str) -> None:
        self.out(f"{time.strftime('%H:%M:%S')}  {message}")

    def _spawn(self, service: _Service) -> None:
        spec = service.spec
        env = {**self.base_env, **spec.env}
        try:
            process = subprocess.Popen(list(spec.argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as exc:  # a command that cannot even start counts as an exit
            service.sink.note("could not start", level="error", error=str(exc))
            self._say(f"{spec.name}: could not start: {exc}")
            service.process = None
            service.started_mono = self.clock()
            self._after_exit(service, 127)
            return
        assert process.stdout is not None and process.stderr is not None
        service.process = process
        service.pumps = [service.sink.pump(process.stdout, from_stderr=False),
                         service.sink.pump(process.stderr, from_stderr=True)]
        now = self.clock()
        service.started_mono = now
        service.restart_at = None
        service.stopping = None
        service.kill_at = None
        service.next_check = now + STARTING_CHECK_S
        service.health = HealthTracker(spec.restart_when_unhealthy, self.config.checks_to_restart)
        status = service.status
        status.pid = process.pid
        status.started_at = time.time()
        status.process_started = process_start_time(process.pid)
        status.state = "starting"
        status.note = ""
        service.sink.note("started", pid=process.pid, command=" ".join(spec.argv[1:]))
        self._dirty = True

    def _after_exit(self, service: _Service, code: int) -> None:
        """The process is gone (reaped): clean its group, then restart it later or give up."""
        spec, status = service.spec, service.status
        if service.process is not None:
            kill_group(service.process.pid, signal.SIGKILL)  # anything it left behind in its group
        for pump in service.pumps:
            pump.join(timeout=2)
        service.pumps = []
        status.last_exit = code
        reason = service.stopping
        service.stopping = None
        service.kill_at = None
        service.check = None
        status.pid = None
        self._dirty = True
        if reason == "stop" or self.phase == "stopping":
            status.state = "stopped"
            status.note = _describe_exit(code) if code not in (0, -signal.SIGTERM) else ""
            service.sink.note("stopped", exit=code)
            return
        ran_for = self.clock() - service.started_mono
        why = "stopped: it did not pass its health checks" if reason == "restart" else _describe_exit(code)
        delay = service.budget.after_exit(ran_for)
        if delay is None:
            status.state = "failed"
            status.note = f"{why}; gave up after {self.config.max_restarts} restarts in a row " \
                          f"(see {service.sink.error_path})"
            service.sink.note("failed: not restarting again", level="error", exit=code,
                              restarts_in_a_row=self.config.max_restarts)
            self._say(f"{spec.name} FAILED: {why} after {self.config.max_restarts} restarts in a row; "
                      f"the other services keep running. Logs: {service.sink.error_path}")
            return
        status.state = "backoff"
        status.note = f"{why}; restart {service.budget.in_a_row}/{self.config.max_restarts} in {delay:g} s"
        service.restart_at = self.clock() + delay
        service.sink.note("exited; restarting", level="warning", exit=code, reason=why, restart_in_s=delay,
                          restart=service.budget.in_a_row)
        self._say(f"{spec.name} {why}; restarting in {delay:g} s "
                  f"({service.budget.in_a_row}/{self.config.max_restarts})")

    def _terminate(self, service: _Service, reason: str) -> None:
        """SIGTERM the service's group; SIGKILL follows at its grace period's end (see `tick`)."""
        if not service.running or service.stopping == "stop":
            return
        assert service.process is not None
        service.stopping = reason
        service.kill_at = self.clock() + service.spec.stop_grace_s
        service.status.state = "stopping"
        service.sink.note("stopping", reason=reason, grace_s=service.spec.stop_grace_s)
        kill_group(service.process.pid, signal.SIGTERM)
        self._dirty = True

    def _health_result(self, service: _Service, result: Health) -> None:
        status = service.status
        now = self.clock()
        counting = now - service.started_mono >= self.config.start_timeout_s
        restart = service.health.record(result, counting=counting)
        previous = status.state
        if result is Health.HEALTHY:
            status.state, status.note = "healthy", ""
            if service.spec.name not in self._announced:
                self._announced.add(service.spec.name)
                if self.on_first_healthy is not None:
                    self.on_first_healthy(service.spec.name)
        elif not service.health.ever_healthy and not counting:
            status.state, status.note = "starting", f"health check: {result.value}"
        else:
            status.state = result.value
            status.note = f"{service.health.failures} failed health check(s) in a row"
        if status.state != previous:
            self._dirty = True
            if previous != "starting" or status.state != "healthy":
                service.sink.note(f"health: {status.state}", level="info" if result is Health.HEALTHY else "warning")
        if restart:
            self._say(f"{service.spec.name} is {result.value} ({service.health.failures} checks in a row): "
                      f"restarting it")
            self._terminate(service, "restart")
        interval = self.config.health_interval_s
        if not service.health.ever_healthy and not counting:
            interval = STARTING_CHECK_S
        service.next_check = now + interval

    # --- the loop -------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """One round: reap exits, send SIGKILLs that are due, start due restarts, run and read health checks,
        print the status table when due, write the state file."""
        now = self.clock()
        for service in self.services.values():
            process = service.process
            if process is not None and process.returncode is None:
                code = process.poll()
                if code is not None:
                    self._after_exit(service, code)
                    continue
                if service.kill_at is not None and now >= service.kill_at:
                    service.sink.note("grace period over: SIGKILL", level="warning")
                    kill_group(process.pid, signal.SIGKILL)
                    service.kill_at = None
            elif service.restart_at is not None and now >= service.restart_at and self.phase != "stopping":
                service.status.restarts += 1
                self._spawn(service)
                self._say(f"{service.spec.name} restarted (pid {service.status.pid})")
            if service.running and service.spec.health_url and service.stopping is None:
                if service.check is not None and service.check.done():
                    result = service.check.result()
                    service.check = None
                    self._health_result(service, result)
                elif service.check is None and now >= service.next_check:
                    service.check = self._pool.submit(check_health, service.spec.health_url)
            elif service.running and not service.spec.health_url and service.status.state == "starting":
                service.status.state = "healthy"  # nothing to check: running is all we can know
                self._dirty = True
        if self._next_status is not None and now >= self._next_status:
            self._next_status = now + self.config.status_interval_s
            self.out(self.table())
        if self._dirty:
            self.write_state()

    def snapshot(self) -> UpState:
        return UpState(supervisor_pid=os.getpid(), supervisor_started=process_start_time(os.getpid()) or 0.0,
                       started_at=self.started_at, updated_at=time.time(), exchange=self.config.exchange,
                       web_url=self.config.web_url, log_dir=str(self.config.log_dir.absolute()), phase=self.phase,
                       services=[service.status for service in self.services.values()])

    def table(self) -> str:
        return format_table(self.snapshot(), time.time())

    def write_state(self) -> None:
        self._dirty = False
        if self.config.state_file is not None:
            write_state(self.config.state_file, self.snapshot())

    def state_of(self, name: str) -> ServiceState:
        return self.services[name].status

    def pid_of(self, name: str) -> int | None:
        service = self.services[name]
        return service.process.pid if service.running and service.process is not None else None

    def _wait(self, done: Callable[[], bool], timeout: float, stop: threading.Event | None, step: float = 0.1
              ) -> bool:
        deadline = self.clock() + timeout
        while True:
            self.tick()
            if done():
                return True
            if (stop is not None and stop.is_set()) or self.clock() >= deadline:
                return False
            time.sleep(step)

    def start_all(self, stop: threading.Event | None = None) -> bool:
        """Start the services stage by stage; a stage starts once the previous one is healthy (or has had
        `stage_wait_s`). Return False when `stop` was set meanwhile."""
        stages: dict[int, list[_Service]] = {}
        for service in self.services.values():
            stages.setdefault(service.spec.stage, []).append(service)
        for stage in sorted(stages):
            members = stages[stage]
            for service in members:
                self._spawn(service)
                self._say(f"{service.spec.name} started (pid {service.status.pid})")
            def settled_now(members: list[_Service] = members) -> bool:
                return all(s.status.state in ("healthy", "failed") for s in members)

            settled = self._wait(settled_now, self.config.stage_wait_s, stop)
            if stop is not None and stop.is_set():
                return False
            if not settled:
                slow = [s.spec.name for s in members if s.status.state not in ("healthy", "failed")]
                self._say(f"not healthy yet after {self.config.stage_wait_s:g} s: {', '.join(slow)} "
                          f"(starting the next services anyway; `hyperfollow logs NAME` shows why)")
        self.phase = "running"
        self._dirty = True
        return True

    def run(self, stop: threading.Event, step: float = 0.2) -> None:
        """Supervise until `stop` is set."""
        while not stop.is_set():
            self.tick()
            stop.wait(step)

    def stop_all(self, force: threading.Event | None = None) -> None:
        """Stop every service, last stage first: SIGTERM each group, wait up to its grace period, SIGKILL.
        `force` set (a second Ctrl-C) sends SIGKILL at once. Returns when no process of any group is left."""
        self.phase = "stopping"
        self._dirty = True
        for service in self.services.values():  # nothing waiting to restart is started any more
            service.restart_at = None
            if service.status.state == "backoff":
                service.status.state = "stopped"
        stages = sorted({service.spec.stage for service in self.services.values()}, reverse=True)
        for stage in stages:
            members = [s for s in self.services.values() if s.spec.stage == stage]
            for service in members:
                if service.running:
                    service.stopping = None
                    self._terminate(service, "stop")
            # past the longest grace period plus a margin, a process SIGKILL did not end (stuck in the kernel)
            # is reported and left behind rather than blocking the stop forever
            give_up = self.clock() + max(s.spec.stop_grace_s for s in members) + 15
            while any(s.running for s in members):
                if force is not None and force.is_set():
                    for service in members:
                        if service.running and service.process is not None:
                            kill_group(service.process.pid, signal.SIGKILL)
                if self.clock() > give_up:
                    stuck = [s.spec.name for s in members if s.running]
                    self._say(f"could not stop {', '.join(stuck)} even with SIGKILL; giving up on it")
                    break
                self.tick()
                time.sleep(0.05)
            for service in members:
                if service.process is not None and group_alive(service.process.pid):
                    kill_group(service.process.pid, signal.SIGKILL)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for service in self.services.values():
            service.sink.close()
        self.phase = "stopped"
        self.write_state()
