"""`hyperfollow bench`: the benchmarks."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench() -> None:
        """Not built yet."""
        not_built("bench")
