"""`hyperfollow discovery`: the trades WebSocket -> traders + activity marks."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("discovery")
    def discovery() -> None:
        """Not built yet."""
        not_built("discovery")
