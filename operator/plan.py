"""`hyperfollow shards plan`: TrackingShard manifests that tile the 16384 slots (pure)."""

from __future__ import annotations

from typing import Any

import yaml

from hyperfollow.core.slots import SLOT_COUNT, tile
from hyperfollow.operator.model import API_VERSION, KIND, MAX_NAME_LENGTH, parse_spec

__all__ = ["plan_shards", "render_yaml"]


def plan_shards(count: int, *, workers: int = 1, prefix: str = "shard", namespace: str | None = None,
                batch_size: int | None = None, budget_group: str | None = None) -> list[dict[str, Any]]:
    """`count` TrackingShards named PREFIX-00, PREFIX-01, ... whose ranges tile [0, 16384) exactly."""
    if not 1 <= count <= SLOT_COUNT:
        raise ValueError(f"--count must be between 1 and {SLOT_COUNT}, got {count}")
    if not 0 <= workers <= 256:
        raise ValueError(f"--workers must be between 0 and 256, got {workers}")
    width = max(2, len(str(count - 1)))
    shards = []
    for index, slots in enumerate(tile(count)):
        name = f"{prefix}-{index:0{width}d}"
        if len(name) > MAX_NAME_LENGTH:
            raise ValueError(f"--prefix is too long: {name!r} exceeds {MAX_NAME_LENGTH} characters")
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        spec: dict[str, Any] = {"slots": {"start": slots.start, "end": slots.end}, "workers": workers}
        if batch_size is not None:
            spec["batchSize"] = batch_size
        if budget_group is not None:
            spec["budgetGroup"] = budget_group
        parse_spec(name, spec)  # the same checks as the operator's (InvalidShard is a ValueError)
        shards.append({"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec})
    return shards


def render_yaml(shards: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream for `kubectl apply -f -`."""
    return yaml.safe_dump_all(shards, sort_keys=False, explicit_start=True)
