"""`hyperfollow operator` and `hyperfollow shards plan`: the Kubernetes side."""

from __future__ import annotations

import typer

from hyperfollow.core.errors import not_built

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    shards = typer.Typer(help="TrackingShard resources.", no_args_is_help=True)
    app.add_typer(shards, name="shards")

    @app.command("operator")
    def operator_() -> None:
        """Not built yet."""
        not_built("operator")

    @shards.command("plan")
    def plan() -> None:
        """Not built yet."""
        not_built("shards plan")
