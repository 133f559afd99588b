"""The real operator (kopf, KopfRunner) against the API emulator, driven with kubectl like a user would.

One emulator and one operator serve the whole module; each test works in its own namespace. The operator
refreshes status every second here (HYPERFOLLOW_OPERATOR_STATUS_INTERVAL=1).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s.conftest import Cluster, condition, eventually, shard_manifest

from hyperfollow.operator import metrics

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def apply(cluster: Cluster, namespace: str, *manifests: dict[str, Any]) -> str:
    text = yaml.safe_dump_all(list(manifests))
    return cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-", input=text).stdout


def replicas(cluster: Cluster, namespace: str, name: str) -> int | None:
    deployment = cluster.deployment(namespace, name)
    return None if deployment is None else deployment["spec"]["replicas"]


def test_kubectl_apply_creates_the_workers_deployment(cluster: Cluster, operator: Any, namespace: str) -> None:
    out = apply(cluster, namespace, shard_manifest("alpha", 0, 8192, workers=2, batchSize=25, budgetGroup="egress-a"))
    assert "trackingshard.hyperfollow.io/alpha created" in out

    deployment = eventually(lambda: cluster.deployment(namespace, "alpha-workers"), what="deployment")
    shard = cluster.shard(namespace, "alpha")
    assert shard is not None
    assert deployment["spec"]["replicas"] == 2
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "TrackingShard", "alpha", shard["metadata"]["uid"], True)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["worker", "--shard", "alpha", "--slots", "0:8192", "--budget-group", "egress-a"]
    assert {"name": "BATCH_SIZE", "value": "25"} in container["env"]
    assert pod["enableServiceLinks"] is False and pod["automountServiceAccountToken"] is False
    kubernetes_validate.validate(_without_server_fields(deployment), "1.30", strict=True)
    assert cluster.get("policy/v1", "PodDisruptionBudget", namespace, "alpha-workers") is not None

    # status: the generation it describes, the range, and the four conditions (a Gap: 8192:16384 is untracked)
    shard = eventually(lambda: (s := cluster.shard(namespace, "alpha")) and s.get("status", {}).get("range") and s,
                       what="status")
    status = shard["status"]
    assert status["observedGeneration"] == shard["metadata"]["generation"]
    assert status["range"] == "0:8192"
    assert status["deployment"] == "alpha-workers"
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Progressing", "Degraded", "RangeConflict"}
    gap = condition(shard, "RangeConflict")
    assert (gap["status"], gap["reason"]) == ("True", "Gap") and "8192:16384" in gap["message"]
    # nothing schedules pods in the emulator, so no worker ever becomes ready
    assert (condition(shard, "Ready")["status"], condition(shard, "Ready")["reason"]) == ("False", "WorkersNotReady")
    assert "trackedTraders" not in status  # no database configured for this operator
    # Events are posted by kopf in the background
    eventually(lambda: {"Created", "SlotGap"} <= {e["reason"] for e in cluster.events(namespace)}, what="events")


def _without_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items()
            if k not in ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")}
    return {**obj, "metadata": meta}


def test_kubectl_scale_and_editing_workers_rescale(cluster: Cluster, operator: Any, namespace: str) -> None:
    apply(cluster, namespace, shard_manifest("beta", 0, 16384, workers=1))
    eventually(lambda: replicas(cluster, namespace, "beta-workers") == 1, what="1 worker")

    out = cluster.kubectl("scale", "-n", namespace, "ts/beta", "--replicas=3").stdout
    assert "scaled" in out
    eventually(lambda: replicas(cluster, namespace, "beta-workers") == 3, what="scaled to 3")
    shard = cluster.shard(namespace, "beta")
    assert shard["spec"]["workers"] == 3 and shard["metadata"]["generation"] == 2

    cluster.kubectl("patch", "-n", namespace, "ts/beta", "--type=merge", "-p", '{"spec": {"workers": 2}}')
    eventually(lambda: replicas(cluster, namespace, "beta-workers") == 2, what="edited to 2")

    cluster.kubectl("patch", "-n", namespace, "ts/beta", "--type=merge", "-p", '{"spec": {"paused": true}}')
    eventually(lambda: replicas(cluster, namespace, "beta-workers") == 0, what="paused")
    paused = eventually(lambda: condition(cluster.shard(namespace, "beta"), "Ready").get("reason") == "Paused",
                        what="Paused condition")
    assert paused
    shard = cluster.shard(namespace, "beta")
    assert shard["status"]["observedGeneration"] == shard["metadata"]["generation"] == 4
    # one covering shard: no conflict at all
    assert condition(shard, "RangeConflict")["status"] == "False"


def test_kubectl_get_shows_the_status_columns(cluster: Cluster, operator: Any, namespace: str) -> None:
    apply(cluster, namespace, shard_manifest("gamma", 100, 200, workers=4))
    eventually(lambda: (cluster.shard(namespace, "gamma") or {}).get("status", {}).get("range"), what="status")
    out = cluster.kubectl("get", "ts", "-n", namespace).stdout
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "RANGE", "WORKERS", "READY", "TRADERS", "STALENESS", "AGE"]
    assert row.split()[:4] == ["gamma", "100:200", "4", "0"]
    wide = cluster.kubectl("get", "trackingshards", "-n", namespace, "-o", "wide").stdout
    assert "STATE" in wide.splitlines()[0] and "WorkersNotReady" in wide


def test_overlapping_shard_is_held_and_reported(cluster: Cluster, operator: Any, namespace: str) -> None:
    # "older" = created first; creation times have one-second resolution, so a tie goes by name: the names
    # agree with the creation order, whichever second each lands in
    apply(cluster, namespace, shard_manifest("first", 0, 10000, workers=2))
    eventually(lambda: replicas(cluster, namespace, "first-workers") == 2, what="older runs")
    apply(cluster, namespace, shard_manifest("second", 5000, 16384, workers=3))

    newer = eventually(lambda: condition(cluster.shard(namespace, "second"), "RangeConflict").get("status") == "True"
                       and cluster.shard(namespace, "second"), what="RangeConflict on the newer shard")
    assert condition(newer, "RangeConflict")["reason"] == "Overlap"
    assert "first (0:10000)" in condition(newer, "RangeConflict")["message"]
    assert (condition(newer, "Ready")["status"], condition(newer, "Ready")["reason"]) == ("False", "RangeConflict")
    assert replicas(cluster, namespace, "second-workers") == 0  # never two shards on the same slots
    # the older shard keeps running and is told about the overlap by its next status refresh
    eventually(lambda: condition(cluster.shard(namespace, "first"), "RangeConflict").get("reason") == "Overlap",
               what="RangeConflict on the older shard")
    assert replicas(cluster, namespace, "first-workers") == 2
    warnings = eventually(lambda: [e for e in cluster.events(namespace) if e["reason"] == "RangeConflict"],
                          what="RangeConflict events")
    assert all(e["type"] == "Warning" for e in warnings)

    # fixing the newer shard's range releases it
    cluster.kubectl("patch", "-n", namespace, "ts/second", "--type=merge", "-p",
                    '{"spec": {"slots": {"start": 10000, "end": 16384}}}')
    eventually(lambda: replicas(cluster, namespace, "second-workers") == 3, what="released")
    eventually(lambda: condition(cluster.shard(namespace, "first"), "RangeConflict").get("status") == "False",
               what="conflict resolved")


def test_delete_removes_what_the_shard_owns(cluster: Cluster, operator: Any, namespace: str) -> None:
    apply(cluster, namespace, shard_manifest("delta", 0, 16384))
    eventually(lambda: cluster.deployment(namespace, "delta-workers"), what="deployment")
    shard = eventually(lambda: "hyperfollow.io/cleanup" in (cluster.shard(namespace, "delta") or {}).get(
        "metadata", {}).get("finalizers", []) and cluster.shard(namespace, "delta"), what="finalizer")
    assert shard

    out = cluster.kubectl("delete", "-n", namespace, "ts/delta", "--wait=true", "--timeout=20s").stdout
    assert "deleted" in out
    assert cluster.shard(namespace, "delta") is None
    assert cluster.deployment(namespace, "delta-workers") is None
    assert cluster.get("policy/v1", "PodDisruptionBudget", namespace, "delta-workers") is None


def test_hand_edits_of_the_deployment_are_repaired(cluster: Cluster, operator: Any, namespace: str) -> None:
    apply(cluster, namespace, shard_manifest("epsilon", 0, 16384, workers=2))
    eventually(lambda: replicas(cluster, namespace, "epsilon-workers") == 2, what="deployment")
    before = cluster.deployment(namespace, "epsilon-workers")["metadata"]["generation"]
    assert "scaled" in cluster.kubectl("scale", "-n", namespace, "deployment/epsilon-workers", "--replicas=7").stdout
    # the next status refresh puts it back (two more generations: the hand edit and the repair)
    repaired = eventually(lambda: (d := cluster.deployment(namespace, "epsilon-workers"))["metadata"]["generation"]
                          >= before + 2 and d, what="drift repaired by the timer")
    assert repaired["spec"]["replicas"] == 2
    eventually(lambda: any(e["reason"] == "Scaled" and "from 7 to 2" in e["message"]
                           for e in cluster.events(namespace)), what="Scaled event")


def test_the_api_rejects_bad_shards_like_a_cluster_would(cluster: Cluster, namespace: str) -> None:
    bad = shard_manifest("zeta", 9000, 100)
    done = cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad),
                           check=False)
    assert done.returncode != 0
    assert "slots.start must be less than slots.end" in done.stderr
    assert cluster.shard(namespace, "zeta") is None


def test_an_invalid_spec_becomes_a_condition_not_a_retry_loop(cluster: Cluster, operator: Any,
                                                              namespace: str) -> None:
    """A resource the API server did not reject (e.g. an older CRD without CEL) is reported, not retried."""
    errors_before = _reconcile_errors()
    cluster.emu.validation_enabled = False
    try:
        apply(cluster, namespace, shard_manifest("eta", 9000, 100))
    finally:
        cluster.emu.validation_enabled = True
    shard = eventually(lambda: condition(cluster.shard(namespace, "eta"), "Ready").get("reason") == "InvalidSpec"
                       and cluster.shard(namespace, "eta"), what="InvalidSpec")
    ready = condition(shard, "Ready")
    assert ready["status"] == "False" and "slots.start must be less than slots.end" in ready["message"]
    assert shard["status"]["observedGeneration"] == shard["metadata"]["generation"]
    assert cluster.deployment(namespace, "eta-workers") is None
    assert _reconcile_errors() == errors_before
    eventually(lambda: any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in cluster.events(namespace)),
               what="InvalidSpec event")


def _reconcile_errors() -> float:
    return sum(s.value for s in metrics.RECONCILES.collect()[0].samples
               if s.name.endswith("_total") and s.labels.get("result") == "error")
