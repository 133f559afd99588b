"""The shared /metrics and /healthz server answers probes and reflects the health check."""

from __future__ import annotations

import httpx
from prometheus_client import Counter

from hyperfollow.core.observability import ObservabilityServer, serve_observability

PROBE_COUNTER = Counter("hyperfollow_test_probe_total", "a counter only this test increments")


def test_metrics_and_health_follow_the_check() -> None:
    healthy = {"value": True}
    server = ObservabilityServer("127.0.0.1", 0, lambda: healthy["value"])
    try:
        base = f"http://127.0.0.1:{server.port}"
        PROBE_COUNTER.inc(3)
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.status_code == 200 and "hyperfollow_test_probe_total 3.0" in metrics.text
        assert httpx.get(f"{base}/healthz").status_code == 200
        healthy["value"] = False
        assert httpx.get(f"{base}/healthz").status_code == 503
        assert httpx.get(f"{base}/other").status_code == 404
    finally:
        server.close()


def test_a_raising_check_is_unhealthy_and_port_zero_is_off() -> None:
    def broken() -> bool:
        raise RuntimeError("redis down")

    server = ObservabilityServer("127.0.0.1", 0, broken)
    try:
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz").status_code == 503
    finally:
        server.close()
    assert serve_observability(0) is None
