"""TrackingShard -> the Kubernetes objects that should exist for it (pure: no kopf, no API client).

One shard owns a Deployment `NAME-workers` of identical worker pods, each running
`hyperfollow worker --shard NAME --slots START:END [--budget-group G]` (an RQ worker that also takes part in
the shard's feeder election, so the Deployment alone is complete), and a PodDisruptionBudget that lets a node
drain evict one worker at a time. Names are fixed by the shard's name, so reconciling is idempotent.

The Deployment uses the `Recreate` strategy on purpose: when a shard's range changes, old pods (old range) and
new pods (new range) never run side by side, so no slot is tracked under two ranges at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hyperfollow.operator.model import API_VERSION, KIND, ShardSpec

__all__ = [
    "LABEL_COMPONENT",
    "LABEL_SHARD",
    "SPEC_HASH_ANNOTATION",
    "Owner",
    "WorkerDefaults",
    "deployment_name",
    "desired_deployment",
    "desired_disruption_budget",
    "drift",
    "selector_labels",
    "selector_string",
    "spec_hash",
    "worker_args",
]

LABEL_SHARD = "hyperfollow.io/shard"
LABEL_COMPONENT = "app.kubernetes.io/component"
SLOTS_ANNOTATION = "hyperfollow.io/slots"
SPEC_HASH_ANNOTATION = "hyperfollow.io/spec-hash"
CONFIG_CHECKSUM_ANNOTATION = "hyperfollow.io/config-checksum"
MANAGED_BY = "hyperfollow-operator"
WORKER_CONTAINER = "worker"
#: Workers run as this non-root user (the image's user, see the Dockerfile).
RUN_AS_USER = 10001


@dataclass(frozen=True)
class Owner:
    """The TrackingShard that owns the objects (what an ownerReference needs)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        # blockOwnerDeletion needs `update` on trackingshards/finalizers where OwnerReferencesPermissionEnforcement
        # is on; the chart's Role grants it.
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class WorkerDefaults:
    """What every worker pod gets unless the shard overrides it (from the operator's settings)."""

    image: str
    image_pull_policy: str = "IfNotPresent"
    #: Secret holding DATABASE_URL and REDIS_URL (keys of those names); None = not injected.
    secret_name: str | None = None
    #: ConfigMap whose keys become environment variables (the chart's shared configuration).
    config_map_name: str | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    termination_grace_period_seconds: int = 120
    metrics_port: int = 9100
    #: `app.kubernetes.io/instance` of the install (the Helm release), if any.
    instance: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    #: Checksum of the shared configuration: when it changes, the workers restart to read it.
    config_checksum: str | None = None


def deployment_name(shard: str) -> str:
    return f"{shard}-workers"


def selector_labels(shard: str) -> dict[str, str]:
    """The labels that select a shard's worker pods (immutable once the Deployment exists)."""
    return {"app.kubernetes.io/name": "hyperfollow", LABEL_COMPONENT: "worker", LABEL_SHARD: shard}


def selector_string(shard: str) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(shard).items()))


def _labels(shard: str, defaults: WorkerDefaults) -> dict[str, str]:
    labels = {**selector_labels(shard), "app.kubernetes.io/part-of": "hyperfollow",
              "app.kubernetes.io/managed-by": MANAGED_BY}
    if defaults.instance:
        labels["app.kubernetes.io/instance"] = defaults.instance
    return labels


def worker_args(shard: str, spec: ShardSpec) -> list[str]:
    """The worker command line after the `hyperfollow` entrypoint (the tracking component's contract)."""
    args = ["worker", "--shard", shard, "--slots", f"{spec.slots.start}:{spec.slots.end}"]
    if spec.budget_group:
        args += ["--budget-group", spec.budget_group]
    return args


def _env(spec: ShardSpec, defaults: WorkerDefaults) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "BATCH_SIZE", "value": str(spec.batch_size)},
        {"name": "HYPERFOLLOW_METRICS_PORT", "value": str(defaults.metrics_port)},
        {"name": "HYPERFOLLOW_LOG_FORMAT", "value": "json"},
        {"name": "HYPERFOLLOW_HOME", "value": "/tmp/hyperfollow"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
    ]
    if defaults.secret_name:
        env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": defaults.secret_name, "key": key}}}
                for key in ("DATABASE_URL", "REDIS_URL")]
    overrides = {entry.name: entry.to_k8s() for entry in spec.worker.env}
    merged = [overrides.pop(entry["name"], entry) for entry in env]
    return merged + list(overrides.values())


def _container(shard: str, spec: ShardSpec, defaults: WorkerDefaults) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": "metrics"}, "timeoutSeconds": 5}
    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": spec.worker.image or defaults.image,
        "imagePullPolicy": spec.worker.image_pull_policy or defaults.image_pull_policy,
        "args": worker_args(shard, spec),
        "env": _env(spec, defaults),
        "ports": [{"name": "metrics", "containerPort": defaults.metrics_port, "protocol": "TCP"}],
        "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 20, "failureThreshold": 3},
        "readinessProbe": {**probe, "initialDelaySeconds": 5, "periodSeconds": 10, "failureThreshold": 3},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if defaults.config_map_name:
        container["envFrom"] = [{"configMapRef": {"name": defaults.config_map_name}}]
    resources = spec.worker.resources.to_k8s() if spec.worker.resources else dict(defaults.resources)
    if resources:
        container["resources"] = resources
    return container


def spec_hash(obj: Mapping[str, Any]) -> str:
    """A short stable hash of a manifest (what the operator last applied, stored as an annotation)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def desired_deployment(owner: Owner, spec: ShardSpec, defaults: WorkerDefaults, *, replicas: int | None = None
                       ) -> dict[str, Any]:
    """The workers' Deployment. `replicas` overrides the spec's (the operator holds a conflicting shard at 0)."""
    shard = owner.name
    labels = _labels(shard, defaults)
    slots = f"{spec.slots.start}:{spec.slots.end}"
    pod_annotations = {**defaults.pod_annotations, SLOTS_ANNOTATION: slots}
    if defaults.config_checksum:
        pod_annotations[CONFIG_CHECKSUM_ANNOTATION] = defaults.config_checksum
    pod_spec: dict[str, Any] = {
        # workers never talk to the Kubernetes API, and service-link variables (FOO_PORT=tcp://...) would
        # collide with our settings (HYPERFOLLOW_API_PORT)
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # RQ's SIGTERM is a warm shutdown: the current job finishes within this time
        "terminationGracePeriodSeconds": (spec.worker.termination_grace_period_seconds
                                          if spec.worker.termination_grace_period_seconds is not None
                                          else defaults.termination_grace_period_seconds),
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                            "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(shard, spec, defaults)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if defaults.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in defaults.image_pull_secrets]
    if defaults.node_selector:
        pod_spec["nodeSelector"] = dict(defaults.node_selector)
    if defaults.tolerations:
        pod_spec["tolerations"] = [dict(toleration) for toleration in defaults.tolerations]
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(shard),
            "namespace": owner.namespace,
            "labels": labels,
            "annotations": {SLOTS_ANNOTATION: slots},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "replicas": spec.replicas if replicas is None else replicas,
            "revisionHistoryLimit": 3,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(shard)},
            "template": {"metadata": {"labels": labels, "annotations": pod_annotations}, "spec": pod_spec},
        },
    }
    # the hash covers everything but the replica count, which changes without touching the template
    deployment["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(
        {**deployment, "spec": {**deployment["spec"], "replicas": None}})
    return deployment


def desired_disruption_budget(owner: Owner, defaults: WorkerDefaults) -> dict[str, Any]:
    """Voluntary evictions (node drains) take at most one worker of the shard at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": deployment_name(owner.name), "namespace": owner.namespace,
                     "labels": _labels(owner.name, defaults), "ownerReferences": [owner.reference()]},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner.name)}},
    }


def drift(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> list[str]:
    """Why `observed` (what the API returned) differs from `desired` in what the operator owns; [] = in line.

    Compared: the operator's spec hash (anything in the template the operator changed), the replica count, and
    the worker container's image, arguments and environment (someone editing the Deployment by hand).
    """
    if observed is None:
        return ["missing"]
    reasons = []
    want_hash = desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    have_hash = ((observed.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if have_hash != want_hash:
        reasons.append("template")
    want_replicas = desired["spec"]["replicas"]
    have_replicas = (observed.get("spec") or {}).get("replicas")
    if have_replicas != want_replicas:
        reasons.append(f"replicas {have_replicas} -> {want_replicas}")
    want = _worker_container(desired)
    have = _worker_container(observed)
    for key in ("image", "args", "env"):
        if want.get(key) != have.get(key) and "template" not in reasons:
            reasons.append(f"container {key}")
    return reasons


def _worker_container(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    containers: Sequence[Mapping[str, Any]] = (
        ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return next((c for c in containers if c.get("name") == WORKER_CONTAINER), {})
