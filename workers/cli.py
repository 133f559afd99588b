"""`hyperfollow worker|feeder|scheduler`: sharded position tracking."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker() -> None:
        """Not built yet."""
        not_built("worker")

    @app.command("feeder")
    def feeder() -> None:
        """Not built yet."""
        not_built("feeder")

    @app.command("scheduler")
    def scheduler() -> None:
        """Not built yet."""
        not_built("scheduler")
