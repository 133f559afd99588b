"""`/metrics` (Prometheus) and `/healthz` for long-running services without an HTTP server of their own.

Discovery, workers, feeders and the scheduler call :func:`serve_observability` with
`HYPERFOLLOW_METRICS_PORT` (off when 0). `/healthz` answers 200 while `is_healthy()` is true, 503 otherwise,
so Kubernetes probes and `hyperfollow up` see a stuck service, not only a dead one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["ObservabilityServer", "serve_observability"]


class ObservabilityServer:
    """A tiny threaded HTTP server; `port` is the bound port (useful when asked for port 0)."""

    def __init__(self, host: str, port: int, is_healthy: Callable[[], bool]) -> None:
        check = is_healthy

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    body, status, kind = generate_latest(REGISTRY), 200, CONTENT_TYPE_LATEST
                elif self.path.split("?")[0] == "/healthz":
                    try:
                        ok = bool(check())
                    except Exception:  # a failing check is an unhealthy service, not a crashed server
                        ok = False
                    body, status, kind = (b"ok\n", 200, "text/plain") if ok else (b"unhealthy\n", 503, "text/plain")
                else:
                    body, status, kind = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="observability", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_observability(port: int, is_healthy: Callable[[], bool] = lambda: True,
                        host: str = "0.0.0.0") -> ObservabilityServer | None:
    """Start the server unless `port` is 0 (off)."""
    if port <= 0:
        return None
    return ObservabilityServer(host, port, is_healthy)
