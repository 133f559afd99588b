"""The TrackingShard custom resource as typed models, parsed once at the edge of every handler.

The CRD's schema (crds/) already rejects most bad specs at `kubectl apply`; these models repeat its rules so
that a resource that slipped past it (an older CRD, a cluster without CEL) becomes a readable
`Ready=False, reason=InvalidSpec` condition instead of a crash. Defaults equal the CRD's (a test checks).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from hyperfollow.core.slots import SLOT_COUNT, SlotRange

__all__ = [
    "GROUP",
    "KIND",
    "MAX_NAME_LENGTH",
    "PLURAL",
    "VERSION",
    "EnvVar",
    "InvalidShard",
    "ShardSpec",
    "Slots",
    "WorkerOverrides",
    "check_name",
    "parse_spec",
]

GROUP = "hyperfollow.io"
VERSION = "v1alpha1"
PLURAL = "trackingshards"
KIND = "TrackingShard"
API_VERSION = f"{GROUP}/{VERSION}"

#: A shard's name names its Deployment (`NAME-workers`), a label value and Redis keys.
MAX_NAME_LENGTH = 40
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
                       r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")


class InvalidShard(ValueError):
    """The resource cannot be reconciled as written; the message says why in one line."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
                              strict=True)


class Slots(_Model):
    start: int = Field(ge=0, le=SLOT_COUNT - 1)
    """First slot of the range."""
    end: int = Field(ge=1, le=SLOT_COUNT)
    """One past the last slot."""

    @model_validator(mode="after")
    def _ordered(self) -> Slots:
        if self.start >= self.end:
            raise ValueError("slots.start must be less than slots.end")
        return self

    @property
    def range(self) -> SlotRange:
        return SlotRange(self.start, self.end)


class EnvVar(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    value: str | None = None
    value_from: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("an env entry has either value or valueFrom")
        return self

    def to_k8s(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name}
        if self.value_from is not None:
            entry["valueFrom"] = self.value_from
        else:
            entry["value"] = self.value or ""
        return entry


class Resources(_Model):
    limits: dict[str, int | str] | None = None
    requests: dict[str, int | str] | None = None

    @field_validator("limits", "requests")
    @classmethod
    def _quantities(cls, value: dict[str, int | str] | None) -> dict[str, int | str] | None:
        for key, quantity in (value or {}).items():
            if isinstance(quantity, str) and not _QUANTITY.match(quantity):
                raise ValueError(f"{key}: {quantity!r} is not a Kubernetes quantity")
        return value

    def to_k8s(self) -> dict[str, Any]:
        return {key: dict(val) for key, val in (("limits", self.limits), ("requests", self.requests)) if val}


class WorkerOverrides(_Model):
    image: str | None = Field(None, min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    resources: Resources | None = None
    env: list[EnvVar] = Field(default_factory=list, max_length=64)
    termination_grace_period_seconds: int | None = Field(None, ge=0, le=3600)

    @field_validator("env")
    @classmethod
    def _unique_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        names = [entry.name for entry in env]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"env lists {', '.join(duplicates)} twice")
        return env


class ShardSpec(_Model):
    """`spec` of a TrackingShard."""

    slots: Slots
    """The half-open slot range the shard owns."""
    workers: int = Field(1, ge=0, le=256)
    """Worker pods; 0 stops the shard (like `paused`)."""
    batch_size: int = Field(50, ge=1, le=10_000)
    """Traders per tracking job, passed to the workers as BATCH_SIZE."""
    budget_group: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    """Weight budget group; None = the workers' configured default."""
    paused: bool = False
    """Scale to zero without deleting the shard."""
    worker: WorkerOverrides = WorkerOverrides()
    """Per-shard overrides of the operator's worker defaults."""

    @property
    def replicas(self) -> int:
        return 0 if self.paused else self.workers


def check_name(name: str) -> None:
    """Raise InvalidShard unless `name` can name a Deployment, a label value and Redis keys."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidShard(f"the name is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    if not _NAME.match(name):
        raise InvalidShard("the name must be a DNS label: lowercase letters, digits and '-'")


def _describe(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"spec.{location}: {message}" if location else f"spec: {message}"


def parse_spec(name: str, spec: Mapping[str, Any] | None) -> ShardSpec:
    """The typed spec of shard `name`; InvalidShard (one line naming every problem) when it is not valid."""
    check_name(name)
    try:
        return ShardSpec.model_validate(dict(spec or {}))
    except ValidationError as exc:
        raise InvalidShard("; ".join(_describe(err) for err in exc.errors())) from None
