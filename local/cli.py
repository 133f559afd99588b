"""`hyperfollow up|status|logs`: the whole system on one machine, supervised."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up() -> None:
        """Not built yet."""
        not_built("up")

    @app.command("status")
    def status() -> None:
        """Not built yet."""
        not_built("status")

    @app.command("logs")
    def logs() -> None:
        """Not built yet."""
        not_built("logs")
