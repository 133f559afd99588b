"""`hyperfollow worker|feeder|scheduler`: sharded position tracking (docs/tracking.md)."""

from __future__ import annotations

import typer

__all__ = ["register"]

SHARD_HELP = "the shard's name (the TrackingShard's; names its queue, lease and claims)"
SLOTS_HELP = "the shard's slot range START:END (half-open, within 0:16384)"
GROUP_HELP = "weight budget group (one per egress IP); default HYPERFOLLOW_BUDGET_GROUP"


def _slots(text: str):  # type: ignore[no-untyped-def]
    from hyperfollow.core.slots import SlotRange

    try:
        return SlotRange.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _shard(name: str) -> str:
    from hyperfollow.workers.main import check_shard

    try:
        return check_shard(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(shard: str = typer.Option(..., "--shard", help=SHARD_HELP),
               slots: str = typer.Option(..., "--slots", help=SLOTS_HELP),
               budget_group: str = typer.Option(None, "--budget-group", help=GROUP_HELP)) -> None:
        """Track a shard's traders: an RQ worker on its queue that also takes part in its feeder election."""
        from hyperfollow.workers.main import run_worker

        run_worker(_shard(shard), _slots(slots), budget_group)

    @app.command("feeder")
    def feeder(shard: str = typer.Option(..., "--shard", help=SHARD_HELP),
               slots: str = typer.Option(..., "--slots", help=SLOTS_HELP),
               budget_group: str = typer.Option(None, "--budget-group", help=GROUP_HELP)) -> None:
        """Feed a shard's queue (active traders first) while holding its lease; no worker."""
        from hyperfollow.workers.main import run_feeder

        run_feeder(_shard(shard), _slots(slots), budget_group)

    @app.command("scheduler")
    def scheduler() -> None:
        """Run the periodic jobs (leaderboard every 10 min, event republishing, snapshot pruning)."""
        from hyperfollow.workers.scheduler import run_scheduler

        run_scheduler()
