"""The operator's configuration (`HYPERFOLLOW_OPERATOR_*`), on top of the shared settings.

The chart sets these from its values; `DATABASE_URL` / `REDIS_URL` are optional here: without them the
shards' status simply omits the numbers read from PostgreSQL and Redis, and deletion skips the Redis cleanup.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import NoDecode

from hyperfollow.core.settings import Settings
from hyperfollow.operator.desired import WorkerDefaults

__all__ = ["OperatorSettings"]


def _env(name: str) -> dict[str, Any]:
    return {"validation_alias": AliasChoices(name)}


def _json(value: object, kind: type) -> object:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else kind()
    if not isinstance(value, kind):
        raise ValueError(f"must be a JSON {'object' if kind is dict else 'array'}")
    return value


class OperatorSettings(Settings):
    worker_image: str = Field("hyperfollow:latest", min_length=1, description="image of the worker pods",
                              **_env("HYPERFOLLOW_OPERATOR_WORKER_IMAGE"))
    worker_image_pull_policy: str = Field("IfNotPresent", pattern=r"^(Always|IfNotPresent|Never)$",
                                          description="imagePullPolicy of the worker pods",
                                          **_env("HYPERFOLLOW_OPERATOR_WORKER_IMAGE_PULL_POLICY"))
    worker_secret: str = Field("", description="Secret with DATABASE_URL and REDIS_URL for the workers",
                               **_env("HYPERFOLLOW_OPERATOR_WORKER_SECRET"))
    worker_config_map: str = Field("", description="ConfigMap whose keys become the workers' environment",
                                   **_env("HYPERFOLLOW_OPERATOR_WORKER_CONFIGMAP"))
    worker_resources: Annotated[dict[str, Any], NoDecode] = Field(
        {}, description="JSON ResourceRequirements of a worker container",
        **_env("HYPERFOLLOW_OPERATOR_WORKER_RESOURCES"))
    worker_grace_seconds: int = Field(120, ge=0, le=3600,
                                      description="terminationGracePeriodSeconds of a worker (covers one job)",
                                      **_env("HYPERFOLLOW_OPERATOR_WORKER_GRACE_SECONDS"))
    worker_image_pull_secrets: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated imagePullSecrets", **_env("HYPERFOLLOW_OPERATOR_WORKER_IMAGE_PULL_SECRETS"))
    worker_node_selector: Annotated[dict[str, str], NoDecode] = Field(
        {}, description="JSON nodeSelector of the worker pods", **_env("HYPERFOLLOW_OPERATOR_WORKER_NODE_SELECTOR"))
    worker_tolerations: Annotated[list[dict[str, Any]], NoDecode] = Field(
        [], description="JSON tolerations of the worker pods", **_env("HYPERFOLLOW_OPERATOR_WORKER_TOLERATIONS"))
    worker_pod_annotations: Annotated[dict[str, str], NoDecode] = Field(
        {}, description="JSON annotations of the worker pods", **_env("HYPERFOLLOW_OPERATOR_WORKER_POD_ANNOTATIONS"))
    instance: str = Field("", description="app.kubernetes.io/instance label of the workers (the Helm release)",
                          **_env("HYPERFOLLOW_OPERATOR_INSTANCE"))
    config_checksum: str = Field("", description="checksum of the shared configuration; a change restarts workers",
                                 **_env("HYPERFOLLOW_OPERATOR_CONFIG_CHECKSUM"))
    status_interval: float = Field(30.0, gt=0, le=3600,
                                   description="seconds between status refreshes (and drift repairs) of a shard",
                                   **_env("HYPERFOLLOW_OPERATOR_STATUS_INTERVAL"))
    watch_timeout: int = Field(300, ge=10, le=3600,
                               description="server-side watch timeout; watches are re-opened after it",
                               **_env("HYPERFOLLOW_OPERATOR_WATCH_TIMEOUT"))

    @field_validator("worker_resources", "worker_node_selector", "worker_pod_annotations", mode="before")
    @classmethod
    def _json_object(cls, value: object) -> object:
        return _json(value, dict)

    @field_validator("worker_tolerations", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        return _json(value, list)

    @field_validator("worker_image_pull_secrets", mode="before")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def worker_defaults(self) -> WorkerDefaults:
        return WorkerDefaults(
            image=self.worker_image, image_pull_policy=self.worker_image_pull_policy,
            secret_name=self.worker_secret or None, config_map_name=self.worker_config_map or None,
            resources=self.worker_resources, termination_grace_period_seconds=self.worker_grace_seconds,
            metrics_port=9100, instance=self.instance or None, image_pull_secrets=self.worker_image_pull_secrets,
            node_selector=self.worker_node_selector, tolerations=tuple(self.worker_tolerations),
            pod_annotations=self.worker_pod_annotations, config_checksum=self.config_checksum or None)
