"""The TrackingShard CRD: valid for Kubernetes, its schema and CEL rules accept good shards and reject bad ones,
its defaults match the operator's model, and the chart ships an identical copy."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from k8s.conftest import CHART, CRD_DIR, shard_manifest
from k8s.crd_schema import CRDSchema

from hyperfollow.operator.model import API_VERSION, KIND, PLURAL, ShardSpec, parse_spec
from hyperfollow.operator.plan import plan_shards

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def schema(crds: list[dict[str, Any]]) -> CRDSchema:
    (crd,) = crds
    return CRDSchema(crd)


def test_crd_is_a_valid_kubernetes_object(crds: list[dict[str, Any]]) -> None:
    for version in ("1.28", "1.30", "1.33"):
        kubernetes_validate.validate(crds[0], version, strict=True)


def test_crd_names_and_subresources(schema: CRDSchema) -> None:
    assert (schema.api_version, schema.kind, schema.plural) == (API_VERSION, KIND, PLURAL)
    assert schema.names["shortNames"] == ["ts"] and schema.namespaced
    assert schema.subresources["status"] == {}
    assert schema.subresources["scale"] == {"specReplicasPath": ".spec.workers",
                                            "statusReplicasPath": ".status.workers",
                                            "labelSelectorPath": ".status.selector"}
    names = [column["name"] for column in schema.columns if not column.get("priority")]
    assert names == ["Range", "Workers", "Ready", "Traders", "Staleness", "Age"]


GOOD = [
    shard_manifest("shard-00", 0, 16384),
    shard_manifest("a", 0, 1, workers=0, paused=True),
    shard_manifest("b", 16383, 16384, workers=256, batchSize=10000, budgetGroup="egress-2"),
    shard_manifest("c", 100, 200, worker={
        "image": "registry.example/hyperfollow:1.2", "imagePullPolicy": "Always",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": 1073741824}},
        "env": [{"name": "LOG_LEVEL", "value": "DEBUG"},
                {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "terminationGracePeriodSeconds": 300}),
    *plan_shards(7, workers=3),
]


@pytest.mark.parametrize("shard", GOOD, ids=lambda s: s["metadata"]["name"])
def test_good_shards_pass_the_schema_and_the_operator_model(schema: CRDSchema, shard: dict[str, Any]) -> None:
    assert schema.errors(shard) == []
    parse_spec(shard["metadata"]["name"], shard["spec"])


def _with(**spec: Any) -> dict[str, Any]:
    shard = shard_manifest("bad", 0, 100)
    shard["spec"].update(spec)
    return shard


BAD = {
    "start equals end": (shard_manifest("bad", 100, 100), "slots.start must be less than slots.end"),
    "start after end": (shard_manifest("bad", 9000, 100), "slots.start must be less than slots.end"),
    "end beyond the slots": (shard_manifest("bad", 0, 16385), "16385 is greater than the maximum of 16384"),
    "negative start": (shard_manifest("bad", -1, 10), "-1 is less than the minimum of 0"),
    "negative workers": (_with(workers=-1), "-1 is less than the minimum of 0"),
    "too many workers": (_with(workers=257), "257 is greater than the maximum of 256"),
    "workers as a string": (_with(workers="2"), "'2' is not of type 'integer'"),
    "unknown spec field": (_with(replicas=3), "Additional properties are not allowed ('replicas' was unexpected)"),
    "unknown nested field": (_with(worker={"imag": "x"}), "('imag' was unexpected)"),
    "zero batch size": (_with(batchSize=0), "0 is less than the minimum of 1"),
    "bad budget group": (_with(budgetGroup="Egress_A"), "does not match"),
    "bad quantity": (_with(worker={"resources": {"limits": {"cpu": "lots"}}}), "does not match"),
    "value and valueFrom": (_with(worker={"env": [{"name": "A", "value": "1", "valueFrom": {}}]}),
                            "an env entry has either value or valueFrom"),
    "missing slots": ({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "bad"}, "spec": {}},
                      "'slots' is a required property"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_shards_are_rejected_with_a_reason(schema: CRDSchema, case: str) -> None:
    shard, expected = BAD[case]
    problems = schema.errors(shard)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("name", "ok"), [("shard-1", True), ("a" * 40, True), ("a" * 41, False),
                                          ("Shard", False), ("shard.one", False), ("-x", False)])
def test_shard_names_must_fit_a_deployment_label_and_redis_keys(schema: CRDSchema, name: str, ok: bool) -> None:
    problems = schema.errors(shard_manifest(name, 0, 10))
    assert (problems == []) is ok, problems
    with_model = True
    try:
        parse_spec(name, {"slots": {"start": 0, "end": 10}})
    except ValueError:
        with_model = False
    assert with_model is ok


@pytest.mark.parametrize("case", sorted(set(BAD) - {"unknown nested field", "missing slots"}))
def test_the_operator_model_rejects_what_the_schema_rejects(case: str) -> None:
    """A shard that got past an older CRD is still caught by the operator (and reported as InvalidSpec)."""
    shard, _ = BAD[case]
    with pytest.raises(ValueError):
        parse_spec("bad", shard["spec"])


def test_schema_defaults_equal_the_model_defaults(schema: CRDSchema) -> None:
    shard = schema.apply_defaults(copy.deepcopy(shard_manifest("d", 0, 10)))
    model = ShardSpec.model_validate({"slots": {"start": 0, "end": 10}})
    assert shard["spec"] == {"slots": {"start": 0, "end": 10}, "workers": model.workers,
                             "batchSize": model.batch_size, "paused": model.paused}


def test_status_written_by_the_operator_fits_the_schema(schema: CRDSchema) -> None:
    from datetime import UTC, datetime

    from hyperfollow.core.slots import SlotRange
    from hyperfollow.operator.ranges import Peer, RangeReport
    from hyperfollow.operator.status import Numbers, build_status

    report = RangeReport(overlaps=(Peer("2026-01-01T00:00:00Z", "x", SlotRange(0, 5)),))
    status = build_status(name="s", generation=3, now=datetime.now(UTC), slots=SlotRange(0, 10), replicas=2,
                          paused=False, invalid=None, report=report, deployment=None, deployment_name="s-workers",
                          selector="a=b", numbers=Numbers(10, 20, 3, "pod"), previous=None)
    shard = {**shard_manifest("s", 0, 10), "status": status}
    assert schema.errors(shard) == []
    shard["status"] = {**status, "conditions": [{**status["conditions"][0], "status": "Maybe"}]}
    assert any("'Maybe' is not one of" in p for p in schema.errors(shard))


def test_the_chart_ships_the_same_crds() -> None:
    source = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    shipped = {path.name: path.read_text() for path in (CHART / "crds").glob("*.yaml")}
    assert shipped == source, "the chart's CRDs differ from crds/: run `cp crds/*.yaml charts/hyperfollow/crds/`"
