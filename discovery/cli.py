"""`hyperfollow discovery`: the trades WebSocket -> traders + activity marks."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("discovery")
    def discovery() -> None:
        """Find traders in the exchange's trades stream (zero API weight) and mark them active."""
        from hyperfollow.discovery.service import run

        run()
