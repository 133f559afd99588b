"""A TrackingShard's status and the Events worth posting, from what the operator observed (pure).

Conditions follow the Kubernetes convention (metav1.Condition: type, status, reason, message,
lastTransitionTime, observedGeneration); `lastTransitionTime` only moves when `status` flips.

- **Ready**: at least one worker is ready and the shard is not held or paused (reasons: Tracking, Paused,
  ScaledToZero, RangeConflict, InvalidSpec, WorkersNotReady).
- **Progressing**: the Deployment has not yet converged on the desired workers (RollingOut / Stable).
- **Degraded**: fewer workers are ready than desired and the Deployment gave up (ProgressDeadlineExceeded,
  ReplicaFailure), or the shard cannot run as written (InvalidSpec, RangeConflict).
- **RangeConflict**: the range overlaps another shard (Overlap) or borders slots no shard tracks (Gap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hyperfollow.core.slots import SlotRange
from hyperfollow.operator.ranges import Peer, RangeReport

__all__ = ["CONDITION_TYPES", "Event", "Numbers", "build_status", "events_for", "format_time"]

CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "RangeConflict")


@dataclass(frozen=True)
class Numbers:
    """The shard's figures from PostgreSQL and Redis; None = unknown (not configured or unreachable)."""

    tracked_traders: int | None = None
    staleness_seconds: int | None = None
    queued_jobs: int | None = None
    feeder: str | None = None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the shard."""

    type: str  # Normal | Warning
    reason: str
    message: str


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ranges(peers: Sequence[Peer]) -> str:
    return ", ".join(f"{peer.name} ({peer.slots})" for peer in peers)


def _gaps(gaps: Sequence[SlotRange]) -> str:
    return ", ".join(str(gap) for gap in gaps)


class _Conditions:
    def __init__(self, previous: Sequence[Mapping[str, Any]], generation: int, now: str) -> None:
        self.previous = {c.get("type"): c for c in previous if isinstance(c, Mapping)}
        self.generation = generation
        self.now = now
        self.items: list[dict[str, Any]] = []

    def set(self, kind: str, status: bool | None, reason: str, message: str) -> None:
        value = "Unknown" if status is None else ("True" if status else "False")
        before = self.previous.get(kind)
        since = before.get("lastTransitionTime") if before and before.get("status") == value else None
        self.items.append({"type": kind, "status": value, "reason": reason, "message": message,
                           "lastTransitionTime": since or self.now, "observedGeneration": self.generation})


def _deployment_condition(deployment: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return {}


def build_status(*, name: str, generation: int, now: datetime, slots: SlotRange | None, replicas: int,
                 paused: bool, invalid: str | None, report: RangeReport, deployment: Mapping[str, Any] | None,
                 deployment_name: str, selector: str, numbers: Numbers,
                 previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The full `status` to write. Keys whose value is unknown are None (a merge patch then removes them).

    `replicas` is what the Deployment should run (0 when paused or held); `invalid` is the reason the spec
    cannot be used, if any (the last applied Deployment is then left as it is).
    """
    previous = previous or {}
    stamp = format_time(now)
    conditions = _Conditions(previous.get("conditions") or [], generation, stamp)
    dep_status = (deployment or {}).get("status") or {}
    ready = int(dep_status.get("readyReplicas") or 0)
    current = int(dep_status.get("replicas") or 0)
    if invalid is not None:
        for kind in ("Ready", "Progressing"):
            conditions.set(kind, False, "InvalidSpec", invalid)
        conditions.set("Degraded", True, "InvalidSpec", invalid)
        conditions.set("RangeConflict", None, "InvalidSpec", "the range is not checked while the spec is invalid")
    else:
        _conditions_for(conditions, report, deployment, replicas, ready, paused)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "range": str(slots) if slots is not None else None,
        "deployment": deployment_name,
        "workers": current,
        "readyWorkers": ready,
        "selector": selector,
        "trackedTraders": numbers.tracked_traders,
        "stalenessSeconds": numbers.staleness_seconds,
        "queuedJobs": numbers.queued_jobs,
        "feeder": numbers.feeder,
        "lastReconciled": stamp,
        "conditions": conditions.items,
    }
    if invalid is not None and slots is None:
        status["range"] = previous.get("range")
    return status


def _conditions_for(conditions: _Conditions, report: RangeReport, deployment: Mapping[str, Any] | None,
                    replicas: int, ready: int, paused: bool) -> None:
    dep_status = (deployment or {}).get("status") or {}
    dep_generation = int((deployment or {}).get("metadata", {}).get("generation") or 0)
    observed = int(dep_status.get("observedGeneration") or 0)
    updated = int(dep_status.get("updatedReplicas") or 0)
    current = int(dep_status.get("replicas") or 0)
    stalled = _deployment_condition(deployment or {}, "Progressing").get("reason") == "ProgressDeadlineExceeded"
    failure = _deployment_condition(deployment or {}, "ReplicaFailure")

    if report.held:
        held = (f"held at 0 workers: the slots overlap older shard(s) {_ranges(report.held_by)}; "
                "change or delete one of them")
        conditions.set("Ready", False, "RangeConflict", held)
    elif paused:
        conditions.set("Ready", False, "Paused", "spec.paused is true: the workers are scaled to zero")
    elif replicas == 0:
        conditions.set("Ready", False, "ScaledToZero", "spec.workers is 0")
    elif ready > 0:
        conditions.set("Ready", True, "Tracking", f"{ready} of {replicas} worker(s) ready")
    else:
        conditions.set("Ready", False, "WorkersNotReady", f"0 of {replicas} worker(s) ready")

    if deployment is None:
        conditions.set("Progressing", True, "Creating", "the workers' Deployment is being created")
    elif observed < dep_generation or updated < replicas or current != replicas or ready < replicas:
        conditions.set("Progressing", not stalled, "ProgressDeadlineExceeded" if stalled else "RollingOut",
                       f"{ready} of {replicas} worker(s) ready, {updated} up to date")
    else:
        conditions.set("Progressing", False, "Stable", f"{ready} of {replicas} worker(s) ready")

    if report.held:
        conditions.set("Degraded", True, "RangeConflict", "the shard is held because of an overlapping range")
    elif failure.get("status") == "True":
        conditions.set("Degraded", True, "ReplicaFailure", str(failure.get("message") or "pods cannot be created"))
    elif stalled and ready < replicas:
        conditions.set("Degraded", True, "ProgressDeadlineExceeded", f"only {ready} of {replicas} worker(s) ready")
    else:
        conditions.set("Degraded", False, "AsExpected", "no problem seen")

    if report.overlaps:
        extra = " (this shard is held)" if report.held else " (those shards are held; this one runs)"
        conditions.set("RangeConflict", True, "Overlap", f"the slots overlap {_ranges(report.overlaps)}{extra}")
    elif report.gaps:
        conditions.set("RangeConflict", True, "Gap",
                       f"slots {_gaps(report.gaps)} next to this shard are tracked by no shard in the namespace")
    else:
        conditions.set("RangeConflict", False, "NoConflict", "no overlap, no gap next to this shard")


def events_for(previous: Mapping[str, Any] | None, status: Mapping[str, Any]) -> list[Event]:
    """Events for what changed between two statuses: conflicts appearing or ending, readiness flips."""
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or [] if isinstance(c, Mapping)}
    events = []
    for condition in status.get("conditions") or []:
        kind, value, reason = condition["type"], condition["status"], condition["reason"]
        old = before.get(kind) or {}
        changed = (old.get("status"), old.get("reason"), old.get("message")) != (value, reason,
                                                                                   condition["message"])
        if not changed:
            continue
        if kind == "RangeConflict":
            if value == "True":
                events.append(Event("Warning", "RangeConflict" if reason == "Overlap" else "SlotGap",
                                    condition["message"]))
            elif old.get("status") == "True":
                events.append(Event("Normal", "RangeConflictResolved", condition["message"]))
        elif kind == "Ready" and (old.get("status"), old.get("reason")) != (value, reason):
            if value == "True":
                events.append(Event("Normal", "Ready", condition["message"]))
            elif reason == "InvalidSpec":
                events.append(Event("Warning", "InvalidSpec", condition["message"]))
    return events
