"""One idempotent reconcile of a TrackingShard: desired objects in place, then the status to write.

Every kopf entry point (create, update, resume, the timer) calls :func:`reconcile`; it reads the world afresh
each time, so it does not matter which of them runs or how often.

1. Parse the spec (a bad one: status says why, the last applied Deployment is left alone, no retry loop).
2. List the namespace's shards and check ranges: a shard overlapping an older one is held at 0 workers.
3. Compare the desired Deployment and PodDisruptionBudget with what exists; apply only what differs.
4. Read the shard's figures from PostgreSQL/Redis (when configured) and build the status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hyperfollow.core.logging import get_logger
from hyperfollow.core.slots import SlotRange
from hyperfollow.operator import metrics
from hyperfollow.operator.desired import (
    Owner,
    WorkerDefaults,
    deployment_name,
    desired_deployment,
    desired_disruption_budget,
    drift,
    selector_string,
)
from hyperfollow.operator.kube import Kube
from hyperfollow.operator.model import InvalidShard, ShardSpec, parse_spec
from hyperfollow.operator.ranges import Peer, RangeReport, assess
from hyperfollow.operator.stats import ShardStats
from hyperfollow.operator.status import Event, Numbers, build_status, events_for

__all__ = ["Outcome", "cleanup", "peers_of", "reconcile"]

log = get_logger(__name__)


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)


def peers_of(items: list[Mapping[str, Any]]) -> list[Peer]:
    """The shards of a namespace listing that have a usable range and are not being deleted."""
    peers = []
    for item in items:
        meta = item.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            continue
        slots = (item.get("spec") or {}).get("slots") or {}
        try:
            peers.append(Peer(created=str(meta.get("creationTimestamp") or ""), name=str(meta["name"]),
                              slots=SlotRange(int(slots["start"]), int(slots["end"]))))
        except (KeyError, TypeError, ValueError):
            continue  # its own reconcile reports it as invalid
    return peers


async def reconcile(body: Mapping[str, Any], *, kube: Kube, stats: ShardStats | None, defaults: WorkerDefaults,
                    now: datetime | None = None) -> Outcome:
    meta = body.get("metadata") or {}
    name, namespace = str(meta["name"]), str(meta["namespace"])
    generation = int(meta.get("generation") or 0)
    previous = body.get("status") or {}
    now = now or datetime.now(UTC)
    owner = Owner(name=name, namespace=namespace, uid=str(meta.get("uid") or ""))
    events: list[Event] = []
    dname = deployment_name(name)

    spec: ShardSpec | None = None
    invalid: str | None = None
    try:
        spec = parse_spec(name, body.get("spec"))
    except InvalidShard as exc:
        invalid = str(exc)

    report = RangeReport()
    replicas = 0
    if spec is not None:
        items = await asyncio.to_thread(kube.list_shards, namespace)
        me = Peer(created=str(meta.get("creationTimestamp") or ""), name=name, slots=spec.slots.range)
        report = assess(me, peers_of(items))
        replicas = 0 if report.held else spec.replicas
        desired = desired_deployment(owner, spec, defaults, replicas=replicas)
        observed = await asyncio.to_thread(kube.get, "apps/v1", "Deployment", namespace, dname)
        reasons = drift(desired, observed)
        if reasons:
            before = (observed or {}).get("spec", {}).get("replicas")
            observed = await asyncio.to_thread(kube.apply, desired)
            metrics.APPLIED.labels(kind="Deployment").inc()
            log.info("deployment applied", shard=name, namespace=namespace, deployment=dname, reasons=reasons)
            events.append(_apply_event(dname, reasons, before, replicas))
        budget = desired_disruption_budget(owner, defaults)
        existing = await asyncio.to_thread(kube.get, "policy/v1", "PodDisruptionBudget", namespace, dname)
        if existing is None or (existing.get("spec") or {}).get("maxUnavailable") != budget["spec"]["maxUnavailable"]:
            await asyncio.to_thread(kube.apply, budget)
            metrics.APPLIED.labels(kind="PodDisruptionBudget").inc()
    else:
        observed = await asyncio.to_thread(kube.get, "apps/v1", "Deployment", namespace, dname)
        log.warning("invalid TrackingShard left as it is", shard=name, namespace=namespace, reason=invalid)

    numbers = Numbers()
    if stats is not None and spec is not None:
        numbers = await asyncio.to_thread(stats.read, name, spec.slots.range)

    status = build_status(name=name, generation=generation, now=now,
                          slots=spec.slots.range if spec else None, replicas=replicas,
                          paused=bool(spec and spec.paused), invalid=invalid, report=report, deployment=observed,
                          deployment_name=dname, selector=selector_string(name), numbers=numbers,
                          previous=previous)
    events += events_for(previous, status)
    metrics.observe_shard(namespace, name, status)
    return Outcome(status=status, events=events)


def _apply_event(dname: str, reasons: list[str], before: object, replicas: int) -> Event:
    if reasons == ["missing"]:
        return Event("Normal", "Created", f"created Deployment {dname} with {replicas} worker(s)")
    if all(reason.startswith("replicas") for reason in reasons):
        return Event("Normal", "Scaled", f"scaled Deployment {dname} from {before} to {replicas} worker(s)")
    return Event("Normal", "Updated", f"updated Deployment {dname} ({', '.join(reasons)})")


async def cleanup(name: str, namespace: str, *, kube: Kube, stats: ShardStats | None) -> list[str]:
    """What deleting a shard removes: its workers first (so none re-creates keys), then its Redis keys."""
    removed = []
    dname = deployment_name(name)
    if await asyncio.to_thread(kube.delete, "apps/v1", "Deployment", namespace, dname):
        removed.append(f"deployment/{dname}")
    if await asyncio.to_thread(kube.delete, "policy/v1", "PodDisruptionBudget", namespace, dname):
        removed.append(f"poddisruptionbudget/{dname}")
    if stats is not None:
        removed += await asyncio.to_thread(stats.cleanup, name)
    metrics.forget_shard(namespace, name)
    return removed
