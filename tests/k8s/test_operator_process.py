"""`hyperfollow operator` as the chart runs it: a separate process with kopf's liveness endpoint, Prometheus
metrics and JSON logs, reconciling a shard in the emulator, and stopping cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from k8s.conftest import Cluster, eventually, shard_manifest
from support import free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, answer.read().decode()
    except OSError:
        return 0, ""


def test_the_operator_command_serves_health_metrics_and_reconciles(cluster: Cluster, namespace: str,
                                                                   tmp_path: Path) -> None:
    liveness, metrics = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERFOLLOW_", "KUBECONFIG"))}
    env.update(KUBECONFIG=str(cluster.kubeconfig), HYPERFOLLOW_METRICS_PORT=str(metrics), DATABASE_URL="",
               REDIS_URL="", HYPERFOLLOW_LOG_FORMAT="json", HYPERFOLLOW_HOME=str(tmp_path),
               HYPERFOLLOW_OPERATOR_WORKER_IMAGE="hyperfollow:proc", PYTHONUNBUFFERED="1")
    log = (tmp_path / "operator.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from hyperfollow.core.cli import main; main()", "operator", "--namespace", namespace,
         "--liveness", f"http://127.0.0.1:{liveness}/healthz"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        eventually(lambda: fetch(f"http://127.0.0.1:{liveness}/healthz")[0] == 200, timeout=30, what="liveness")
        cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-",
                        input=yaml.safe_dump(shard_manifest("proc", 0, 16384, workers=2)))
        deployment = eventually(lambda: cluster.deployment(namespace, "proc-workers"), what="reconciled")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "hyperfollow:proc"
        eventually(lambda: "hyperfollow_operator_reconciles_total" in fetch(f"http://127.0.0.1:{metrics}/metrics")[1],
                   what="metrics")
        status, body = fetch(f"http://127.0.0.1:{liveness}/healthz")
        assert status == 200 and "reconciles" in json.loads(body)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(timeout=10)
        log.close()
    output = (tmp_path / "operator.log").read_text()
    assert code == 0, output[-3000:]
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line.get("event") == "deployment applied" and line.get("shard") == "proc" for line in lines), \
        output[-3000:]
    assert all("service" in line for line in lines)
