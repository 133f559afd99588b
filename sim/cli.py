"""`hyperfollow sim`: the Hyperliquid simulator."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("sim")
    def sim() -> None:
        """Not built yet."""
        not_built("sim")
