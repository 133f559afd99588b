"""The Helm chart, with Helm itself as a library (helm-python-sdk): strict lint, every values profile renders
into valid manifests, values.schema.json rejects bad values, and the chart agrees with the code it deploys."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from k8s.conftest import CHART
from k8s.crd_schema import CRDSchema

from hyperfollow.core.settings import Settings
from hyperfollow.operator.settings import OperatorSettings

pytestmark = pytest.mark.k8s

PROFILES = {path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))}
K8S_VERSIONS = ("1.28", "1.30", "1.33")
RELEASE, NAMESPACE = "hf", "tracking"


def profile(name: str) -> dict[str, Any]:
    return yaml.safe_load(PROFILES[name].read_text()) or {}


@cache
def chart() -> helm.Chart:
    return helm.Chart.load(str(CHART))


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    files = chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith(".yaml"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


@cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(profile(name)))


def find(docs: Any, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def pod_specs(docs: Any) -> list[dict[str, Any]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            specs.append(doc["spec"]["template"]["spec"])
        elif doc["kind"] == "Pod":
            specs.append(doc["spec"])
    return specs


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container.get("env", [])}


def test_profiles_exist() -> None:
    assert {"minimal", "existing-secret", "full", "dev"} <= set(PROFILES)


@pytest.mark.parametrize("name", [None, *PROFILES])
def test_strict_lint_passes(name: str | None) -> None:
    report = helm.lint(str(CHART), profile(name) if name else None, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("name", sorted(PROFILES))
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_profile_renders_valid_manifests(name: str, version: str, crds: list[dict[str, Any]]) -> None:
    shards = CRDSchema(crds[0])
    docs = rendered(name)
    assert len(docs) >= 8
    for doc in docs:
        if doc["apiVersion"] == shards.api_version:
            assert shards.errors(doc) == [], doc["metadata"]["name"]
        else:
            kubernetes_validate.validate(doc, version, strict=True)
        assert doc["metadata"]["name"].startswith(RELEASE) or doc["kind"] == "TrackingShard"


def test_chart_crds_are_valid_and_match_the_operator() -> None:
    (crd,) = [yaml.safe_load(item["data"]) for item in chart().crds]
    kubernetes_validate.validate(crd, "1.30", strict=True)
    assert crd["spec"]["group"] == "hyperfollow.io"


def test_no_service_links_on_any_pod() -> None:
    """A Service named RELEASE-hyperfollow-api would inject HYPERFOLLOW_API_PORT=tcp://... and break settings."""
    for name in PROFILES:
        specs = pod_specs(rendered(name))
        assert specs and all(spec["enableServiceLinks"] is False for spec in specs), name


def test_pods_run_non_root_with_read_only_root_filesystems() -> None:
    for name in PROFILES:
        for spec in pod_specs(rendered(name)):
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
            for container in spec["containers"]:
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"]["drop"] == ["ALL"]
                assert container.get("resources", {}).get("limits", {}).get("memory"), container["name"]


def test_components_and_their_probes() -> None:
    docs = rendered("minimal")
    deployments = {d["metadata"]["name"]: d for d in find(docs, "Deployment")}
    assert set(deployments) == {f"{RELEASE}-hyperfollow-{c}" for c in ("operator", "discovery", "scheduler", "api")}
    for component in ("operator", "discovery", "scheduler"):
        deployment = deployments[f"{RELEASE}-hyperfollow-{component}"]
        assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    for component in ("discovery", "scheduler"):
        (container,) = deployments[f"{RELEASE}-hyperfollow-{component}"]["spec"]["template"]["spec"]["containers"]
        assert container["args"] == [component]
        assert env_of(container)["HYPERFOLLOW_METRICS_PORT"] == "9100"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    (api,) = deployments[f"{RELEASE}-hyperfollow-api"]["spec"]["template"]["spec"]["containers"]
    assert api["args"] == ["api"]
    assert (env_of(api)["HYPERFOLLOW_API_HOST"], env_of(api)["HYPERFOLLOW_API_PORT"]) == ("0.0.0.0", "8000")
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    (operator,) = deployments[f"{RELEASE}-hyperfollow-operator"]["spec"]["template"]["spec"]["containers"]
    assert operator["args"] == ["operator", "--namespace", NAMESPACE, "--liveness", "http://0.0.0.0:8080/healthz"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_operator_rbac_is_namespaced_and_exact() -> None:
    docs = rendered("full")
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    (role,) = find(docs, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert all("*" not in verbs for verbs in rules.values())
    assert rules[(("hyperfollow.io",), ("trackingshards",))] == {"get", "list", "watch", "patch"}
    assert rules[(("hyperfollow.io",), ("trackingshards/status",))] == {"get", "patch"}
    assert rules[(("apps",), ("deployments",))] == {"get", "create", "patch", "delete"}
    assert rules[(("",), ("events",))] == {"create"}
    (binding,) = find(docs, "RoleBinding")
    (account,) = find(docs, "ServiceAccount")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
    operator = find(docs, "Deployment", f"{RELEASE}-hyperfollow-operator")[0]["spec"]["template"]["spec"]
    assert operator["serviceAccountName"] == account["metadata"]["name"]
    for spec in pod_specs(docs):
        if spec is not operator:
            assert spec["automountServiceAccountToken"] is False


def _resolve_env(container: dict[str, Any], docs: Any) -> dict[str, str]:
    """The environment the container would get, with Secret and ConfigMap references resolved."""
    import base64

    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        (config_map,) = find(docs, "ConfigMap", source["configMapRef"]["name"])
        env.update(config_map["data"])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "secretKeyRef" in entry["valueFrom"]:
            ref = entry["valueFrom"]["secretKeyRef"]
            (secret,) = find(docs, "Secret", ref["name"])
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def test_the_operator_settings_load_from_what_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = rendered("full")
    operator = find(docs, "Deployment", f"{RELEASE}-hyperfollow-operator")[0]["spec"]["template"]["spec"]
    env = _resolve_env(operator["containers"][0], docs)
    aliases = {field.validation_alias.choices[0] for field in OperatorSettings.model_fields.values()}
    unknown = {name for name in env if name.startswith("HYPERFOLLOW_") and name not in aliases}
    assert unknown == {"HYPERFOLLOW_EXTRA_FLAG"}  # from config.extraEnv
    for name in list(__import__("os").environ):
        if name.startswith(("HYPERFOLLOW_", "DATABASE_URL", "REDIS_URL")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from hyperfollow.core.settings import load_settings

    settings = load_settings(OperatorSettings)
    defaults = settings.worker_defaults()
    assert defaults.image == "registry.example.internal/hyperfollow:1.2.3"
    assert defaults.secret_name == f"{RELEASE}-hyperfollow-secrets"
    assert defaults.config_map_name == f"{RELEASE}-hyperfollow-config"
    assert defaults.image_pull_secrets == ("regcred",) and defaults.instance == RELEASE
    assert defaults.termination_grace_period_seconds == 300 and defaults.node_selector == {"pool": "workers"}
    assert settings.redis_namespace == "prod:" and settings.status_interval == 15
    assert settings.database_url.startswith("postgresql://")


def test_config_map_keys_are_settings_the_code_reads() -> None:
    aliases = {field.validation_alias.choices[0] for field in Settings.model_fields.values()}
    (config_map,) = find(rendered("minimal"), "ConfigMap")
    assert set(config_map["data"]) <= aliases
    assert config_map["data"]["HYPERFOLLOW_LOG_FORMAT"] == "json"


def test_secrets_created_or_referenced() -> None:
    created = rendered("minimal")
    secrets = {s["metadata"]["name"]: s for s in find(created, "Secret")}
    main = secrets[f"{RELEASE}-hyperfollow-secrets"]
    assert set(main["data"]) == {"DATABASE_URL", "REDIS_URL", "HYPERFOLLOW_ADMIN_TOKEN", "SECRET_KEY"}
    assert all(main["data"].values())  # the admin token and secret key are generated when not given
    external = rendered("existing-secret")
    assert not find(external, "Secret")
    refs = {entry["valueFrom"]["secretKeyRef"]["name"]
            for spec in pod_specs(external) for c in spec["containers"] for entry in c.get("env", [])
            if "secretKeyRef" in entry.get("valueFrom", {})}
    assert refs == {"hyperfollow-secrets"}
    operator = find(external, "Deployment", f"{RELEASE}-hyperfollow-operator")[0]
    assert env_of(operator["spec"]["template"]["spec"]["containers"][0])[
        "HYPERFOLLOW_OPERATOR_WORKER_SECRET"] == "hyperfollow-secrets"
    assert not find(external, "Deployment", f"{RELEASE}-hyperfollow-discovery")


def test_install_without_database_settings_says_what_is_missing() -> None:
    with pytest.raises(helm.HelmError, match=r"secrets\.databaseUrl is required"):
        render({})


def test_ingress_hpa_pdb_and_shards_of_the_full_profile() -> None:
    docs = rendered("full")
    (ingress,) = find(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["hyperfollow.example.com"],
                                       "secretName": "hyperfollow.example.com-tls"}]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    (service,) = find(docs, "Service")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    (hpa,) = find(docs, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    api = find(docs, "Deployment", f"{RELEASE}-hyperfollow-api")[0]
    assert "replicas" not in api["spec"]  # the autoscaler owns it
    (pdb,) = find(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == api["spec"]["selector"]["matchLabels"]
    shards = find(docs, "TrackingShard")
    assert [(s["metadata"]["name"], s["spec"]["slots"]) for s in shards] == [
        ("shard-00", {"start": 0, "end": 8192}), ("shard-01", {"start": 8192, "end": 16384})]
    assert shards[1]["spec"]["budgetGroup"] == "egress-b"
    assert not find(rendered("existing-secret"), "PodDisruptionBudget")  # one API replica: no budget


def test_migrations_hook_and_helm_test() -> None:
    docs = rendered("minimal")
    (job,) = find(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["db", "upgrade"]
    hook_secret = find(docs, "Secret", job["metadata"]["name"])[0]
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"  # exists before the Job
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == hook_secret["metadata"]["name"]
    (test_pod,) = find(docs, "Pod")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert f"http://{RELEASE}-hyperfollow-api:8000/health" in test_pod["spec"]["containers"][0]["args"][0]


def test_config_changes_restart_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(values)
        return find(docs, "Deployment", f"{RELEASE}-hyperfollow-discovery")[0]["spec"]["template"]["metadata"][
            "annotations"]["checksum/config"]

    base = profile("existing-secret") | {"discovery": {"enabled": True}}
    assert checksum(base) == checksum(base)
    assert checksum(base) != checksum(base | {"config": {"logLevel": "DEBUG"}})


def test_notes_tell_what_to_do_next() -> None:
    notes = chart().render(profile("minimal"), name=RELEASE, namespace=NAMESPACE)["hyperfollow/templates/NOTES.txt"]
    for expected in ("helm test hf", "hyperfollow shards plan", "kubectl get ts", "port-forward",
                     "kubectl apply -f crds/", "HYPERFOLLOW_ADMIN_TOKEN"):
        assert expected in notes


GOOD_VALUES = profile("full")
BAD_VALUES = {
    "unknown key": ({"replica": 3}, "additional properties 'replica' not allowed"),
    "api replicas 0": ({"api": {"replicas": 0}}, "/api/replicas"),
    "bad pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "bad database URL": ({"secrets": {"databaseUrl": "mysql://db/x"}}, "/secrets/databaseUrl"),
    "shard end too far": ({"shards": [{"name": "s", "slots": {"start": 0, "end": 16385}}]}, "/shards/0/slots/end"),
    "shard bad name": ({"shards": [{"name": "Shard_A", "slots": {"start": 0, "end": 10}}]}, "/shards/0/name"),
    "shard without slots": ({"shards": [{"name": "s"}]}, "slots"),
    "negative workers": ({"shards": [{"name": "s", "slots": {"start": 0, "end": 9}, "workers": -1}]},
                         "/shards/0/workers"),
    "budget target above 1": ({"config": {"budgetTarget": 1.5}}, "/config/budgetTarget"),
    "unknown operator key": ({"operator": {"replicas": 2}}, "/operator"),
}


def test_values_schema_accepts_every_profile() -> None:
    for name in PROFILES:
        chart().validate_schema(profile(name))


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_values_schema_rejects_bad_values(case: str) -> None:
    values, where = BAD_VALUES[case]
    with pytest.raises(helm.HelmError) as failure:
        chart().validate_schema(values)
    assert where in str(failure.value)


def test_every_values_key_is_described_in_the_schema() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], spec: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            assert key in spec.get("properties", {}), f"{path}{key} is not in values.schema.json"
            sub = spec["properties"][key]
            assert sub.get("description"), f"{path}{key} has no description in values.schema.json"
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub, f"{path}{key}.")

    walk(values, schema, "")


def test_chart_folder_has_what_a_chart_needs() -> None:
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore", "templates/NOTES.txt"):
        assert (CHART / name).is_file(), name
    assert "ci/" in (CHART / ".helmignore").read_text()
    assert Path(CHART / "crds").is_dir()
