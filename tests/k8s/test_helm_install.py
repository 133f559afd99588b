"""Helm installs the chart into the API emulator; the operator, started exactly as the chart's operator
Deployment describes (its arguments, its environment with the Secret and ConfigMap resolved), reconciles the
release's shards and a shard applied with kubectl; uninstalling removes it all.

Helm runs as a library (helm-python-sdk, Helm v4). Two knobs the emulator needs: release storage in memory
(Helm's client-go sends Secrets as protobuf) and no OpenAPI validation (the emulator serves no OpenAPI).
Hooks are off here: a pre-install Job would wait forever for a pod that nothing schedules.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import helm_python as helm
import pytest
import yaml
from helm_python import _native
from k8s.conftest import CHART, Cluster, condition, eventually, operator_env, running_operator, shard_manifest

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

RELEASE = "hf"


def helm_call(config: helm.Config, function: str, chart: helm.Chart | None, values: dict[str, Any],
              namespace: str, **options: Any) -> dict[str, Any]:
    """An install/upgrade through the C ABI, which (unlike the Python wrapper) takes disable_openapi_validation."""
    handle, ref = config._chart_args(chart) if chart is not None else (None, None)
    options = {"namespace": namespace, "disable_openapi_validation": True, **options}
    return json.loads(_native.call_string(function, config._raw(), config._context_arg(None), handle, ref, RELEASE,
                                          json.dumps(values), json.dumps(options)))


def pod_environment(cluster: Cluster, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """What the kubelet would give the container: ConfigMap keys, literal values, Secret keys."""
    from hyperfollow.operator.kube import Kube

    kube = Kube()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(kube.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry.get("valueFrom", {}):
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = kube.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{ref['name']}")
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def test_helm_install_then_kubectl_apply_is_reconciled(cluster: Cluster, namespace: str, database_url: str,
                                                       redis_url: str, redis_namespace: str) -> None:
    values = {
        "image": {"repository": "registry.example.internal/hyperfollow", "tag": "9.9.9"},
        "secrets": {"databaseUrl": database_url, "redisUrl": redis_url},
        "config": {"redisNamespace": redis_namespace},
        "migrations": {"enabled": False},
        "shards": [{"name": "shard-00", "slots": {"start": 0, "end": 8192}, "workers": 2}],
    }
    chart = helm.Chart.load(str(CHART))
    config = helm.Config(kubeconfig_path=str(cluster.kubeconfig), namespace=namespace, storage_driver="memory")
    release = helm_call(config, "helm_install", chart, values, namespace)
    assert (release["status"], release["revision"]) == ("deployed", 1)
    assert f"helm test {RELEASE} -n {namespace}" in release["notes"]

    operator = cluster.deployment(namespace, f"{RELEASE}-hyperfollow-operator")
    assert operator is not None
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["operator", "--namespace", namespace]
    env = operator_env(pod_environment(cluster, namespace, container))
    env["HYPERFOLLOW_OPERATOR_STATUS_INTERVAL"] = "1"
    with running_operator(env, "--namespace", namespace):
        # the release's own shard
        workers = eventually(lambda: cluster.deployment(namespace, "shard-00-workers"), what="release shard")
        pod = workers["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "registry.example.internal/hyperfollow:9.9.9"
        assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": f"{RELEASE}-hyperfollow-config"}}]
        secret_refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]
                       if "secretKeyRef" in e.get("valueFrom", {})}
        assert secret_refs == {f"{RELEASE}-hyperfollow-secrets"}
        assert workers["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert workers["spec"]["replicas"] == 2

        # a shard added by hand next to it
        cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-",
                        input=yaml.safe_dump(shard_manifest("shard-01", 8192, 16384, workers=1)))
        eventually(lambda: cluster.deployment(namespace, "shard-01-workers"), what="kubectl shard")
        tiled = eventually(lambda: condition(cluster.shard(namespace, "shard-00"), "RangeConflict").get(
            "reason") == "NoConflict" and cluster.shard(namespace, "shard-00"), what="no gap once both exist")
        assert tiled["status"]["trackedTraders"] == 0  # the session's database, read by the operator

        listing = cluster.kubectl("get", "ts", "-n", namespace).stdout
        assert "shard-00" in listing and "0:8192" in listing and "8192:16384" in listing

        # uninstalling deletes the release's shard; the operator cleans up after it
        config.uninstall(RELEASE)
        eventually(lambda: cluster.shard(namespace, "shard-00") is None, what="release shard deleted")
        assert cluster.deployment(namespace, "shard-00-workers") is None
        assert cluster.deployment(namespace, f"{RELEASE}-hyperfollow-operator") is None
        assert cluster.deployment(namespace, "shard-01-workers") is not None  # not the release's
