"""`hyperfollow api`: the REST and WebSocket API and the web page, served by uvicorn."""

from __future__ import annotations

import typer

__all__ = ["register"]

#: uvicorn's status when it cannot start (e.g. the port is taken); reported as 1, like our other start failures.
_UVICORN_STARTUP_FAILURE = 3


def register(app: typer.Typer) -> None:
    @app.command("api")
    def api(host: str | None = typer.Option(None, help="bind address (default HYPERFOLLOW_API_HOST, 127.0.0.1)"),
            port: int | None = typer.Option(None, help="port (default HYPERFOLLOW_API_PORT, 8000)")) -> None:
        """Serve the REST API, the /ws/v1/updates feed and the web page (docs at /docs)."""
        import uvicorn

        from hyperfollow.api.app import create_app
        from hyperfollow.api.settings import ApiSettings
        from hyperfollow.core.runtime import bootstrap

        settings, runtime = bootstrap("api", ApiSettings)
        application = create_app(settings, database_url=runtime.database_url, redis_url=runtime.redis_url)
        try:
            uvicorn.run(application, host=host or settings.api_host, port=port or settings.api_port,
                        log_config=None, access_log=settings.access_log, proxy_headers=True,
                        ws_max_size=64 * 1024, ws_ping_interval=20.0, ws_ping_timeout=20.0,
                        ws_per_message_deflate=settings.ws_compression, timeout_graceful_shutdown=10)
        except SystemExit as exc:
            raise SystemExit(1 if exc.code == _UVICORN_STARTUP_FAILURE else exc.code) from None
