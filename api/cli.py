"""`hyperfollow api`: the REST and WebSocket API."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("api")
    def api() -> None:
        """Not built yet."""
        not_built("api")
