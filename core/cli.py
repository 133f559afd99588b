"""The `hyperfollow` command. Each component registers its own subcommands (see `<component>/cli.py`).

Errors a user can fix (bad configuration, a server that cannot start) print one line and exit non-zero.
"""

from __future__ import annotations

import importlib
import sys

import typer

from hyperfollow.core.embedded import EmbeddedError, stop_servers
from hyperfollow.core.settings import ConfigError, load_settings

__all__ = ["app", "get_app", "main"]

app = typer.Typer(name="hyperfollow", help="Find, track, rank and stream the best Hyperliquid traders.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
embedded_app = typer.Typer(help="The embedded PostgreSQL and Redis of local mode.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(embedded_app, name="embedded")

#: Modules that add commands to `app`, each through a `register(app)` function.
COMPONENT_CLIS = (
    "hyperfollow.sim.cli",
    "hyperfollow.discovery.cli",
    "hyperfollow.workers.cli",
    "hyperfollow.api.cli",
    "hyperfollow.operator.cli",
    "hyperfollow.local.cli",
    "hyperfollow.bench.cli",
)

EXIT_CONFIG = 2


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from hyperfollow.core.db.migrate import upgrade
    from hyperfollow.core.runtime import bootstrap

    _, runtime = bootstrap("db")
    upgrade(runtime.database_url, revision)
    typer.echo(f"database at revision {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="target revision, e.g. base or -1")) -> None:
    """Revert migrations down to REVISION."""
    from hyperfollow.core.db.migrate import downgrade
    from hyperfollow.core.runtime import bootstrap

    _, runtime = bootstrap("db")
    downgrade(runtime.database_url, revision)
    typer.echo(f"database at revision {revision}")


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one."""
    from hyperfollow.core.db.migrate import current_revision, head_revision
    from hyperfollow.core.runtime import bootstrap

    _, runtime = bootstrap("db")
    typer.echo(f"current: {current_revision(runtime.database_url) or 'empty'}  head: {head_revision()}")


@embedded_app.command("start")
def embedded_start() -> None:
    """Start the embedded servers that are not configured (DATABASE_URL / REDIS_URL unset); print their URLs."""
    from hyperfollow.core.runtime import bootstrap

    _, runtime = bootstrap("embedded")
    typer.echo(f"DATABASE_URL={runtime.database_url}")
    typer.echo(f"REDIS_URL={runtime.redis_url}")


@embedded_app.command("stop")
def embedded_stop() -> None:
    """Stop the embedded servers (their data stays under HYPERFOLLOW_HOME)."""
    settings = load_settings()
    stopped = stop_servers(settings.home, pg_port=settings.embedded_pg_port, redis_port=settings.embedded_redis_port)
    typer.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@embedded_app.command("status")
def embedded_status() -> None:
    """Say whether each embedded server is running."""
    from hyperfollow.core.embedded import EmbeddedPostgres, EmbeddedRedis

    settings = load_settings()
    pg = EmbeddedPostgres(settings.home, settings.embedded_pg_port)
    rd = EmbeddedRedis(settings.home, settings.embedded_redis_port)
    typer.echo(f"postgres: {'running' if pg.is_running() else 'stopped'} ({pg.pgdata})")
    typer.echo(f"redis: {'running' if rd.is_running() else 'stopped'} ({rd.directory})")


_registered = False


def get_app() -> typer.Typer:
    """The app with every component's commands registered (done once, on first use)."""
    global _registered
    if not _registered:
        for module in COMPONENT_CLIS:
            importlib.import_module(module).register(app)
        _registered = True
    return app


def main() -> None:
    """Run the command line. Click handles usage errors, --help and exit codes (standalone mode); the errors
    a user can fix are ours to turn into one line."""
    try:
        get_app()()
    except ConfigError as exc:
        typer.echo(f"hyperfollow: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    except EmbeddedError as exc:
        typer.echo(f"hyperfollow: {exc}", err=True)
        sys.exit(1)
