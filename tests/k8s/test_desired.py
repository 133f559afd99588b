"""The pure core: desired manifests (validated with kubernetes-validate), drift detection, range checks, status,
and `hyperfollow shards plan`."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
import yaml
from k8s.crd_schema import CRDSchema

from hyperfollow.core.slots import SLOT_COUNT, SlotRange
from hyperfollow.operator.desired import (
    Owner,
    WorkerDefaults,
    desired_deployment,
    desired_disruption_budget,
    drift,
    selector_labels,
)
from hyperfollow.operator.model import parse_spec
from hyperfollow.operator.plan import plan_shards
from hyperfollow.operator.ranges import Peer, assess, gaps
from hyperfollow.operator.settings import OperatorSettings
from hyperfollow.operator.status import Numbers, build_status, events_for

pytestmark = pytest.mark.k8s

OWNER = Owner(name="shard-03", namespace="tracking", uid="0b9d3c1e-0000-4000-8000-000000000001")
DEFAULTS = WorkerDefaults(image="registry.example/hyperfollow:1.0", secret_name="hf-secrets",
                          config_map_name="hf-config", resources={"requests": {"cpu": "100m", "memory": "256Mi"}},
                          instance="hf", image_pull_secrets=("regcred",), node_selector={"pool": "workers"},
                          tolerations=({"key": "dedicated", "operator": "Equal", "value": "hf",
                                        "effect": "NoSchedule"},),
                          config_checksum="abc123")
K8S_VERSIONS = ("1.28", "1.30", "1.33")


def deployment(**spec: Any) -> dict[str, Any]:
    return desired_deployment(OWNER, parse_spec(OWNER.name, {"slots": {"start": 4096, "end": 6144}, **spec}),
                              DEFAULTS)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_desired_objects_are_valid_kubernetes_manifests(version: str) -> None:
    for obj in (deployment(), deployment(workers=5, paused=True, budgetGroup="b", worker={
            "image": "x:1", "env": [{"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
            "resources": {"limits": {"memory": "1Gi"}}, "terminationGracePeriodSeconds": 600}),
            desired_disruption_budget(OWNER, DEFAULTS)):
        kubernetes_validate.validate(obj, version, strict=True)


def test_workers_follow_the_command_line_contract() -> None:
    obj = deployment(workers=3, batchSize=80, budgetGroup="egress-b")
    assert obj["metadata"]["name"] == "shard-03-workers"
    assert obj["metadata"]["namespace"] == "tracking"
    assert obj["spec"]["replicas"] == 3
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker", "--shard", "shard-03", "--slots", "4096:6144",
                                 "--budget-group", "egress-b"]
    assert "command" not in container  # the image's entrypoint is `hyperfollow`
    env = {entry["name"]: entry for entry in container["env"]}
    assert env["BATCH_SIZE"]["value"] == "80"
    assert env["HYPERFOLLOW_METRICS_PORT"]["value"] == "9100"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hf-secrets", "key": "DATABASE_URL"}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hf-secrets", "key": "REDIS_URL"}
    assert container["envFrom"] == [{"configMapRef": {"name": "hf-config"}}]
    assert deployment()["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "4096:6144"  # no group


def test_pods_are_locked_down() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False  # FOO_PORT=tcp://... would break HYPERFOLLOW_* settings
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert pod["terminationGracePeriodSeconds"] == 120


def test_ownership_labels_and_strategy() -> None:
    obj = deployment()
    (ref,) = obj["metadata"]["ownerReferences"]
    assert ref == {"apiVersion": "hyperfollow.io/v1alpha1", "kind": "TrackingShard", "name": "shard-03",
                   "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True}
    assert obj["spec"]["selector"]["matchLabels"] == selector_labels("shard-03")
    labels = obj["spec"]["template"]["metadata"]["labels"]
    assert labels["hyperfollow.io/shard"] == "shard-03" and labels["app.kubernetes.io/instance"] == "hf"
    assert obj["spec"]["strategy"] == {"type": "Recreate"}  # never two ranges at once during a change
    assert obj["spec"]["template"]["metadata"]["annotations"]["hyperfollow.io/config-checksum"] == "abc123"


def test_overrides_replace_defaults() -> None:
    obj = deployment(worker={"image": "mine:2", "imagePullPolicy": "Always", "terminationGracePeriodSeconds": 900,
                             "resources": {"limits": {"cpu": "2"}},
                             "env": [{"name": "BATCH_SIZE", "value": "7"}, {"name": "EXTRA", "value": "1"}]})
    pod = obj["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("mine:2", "Always")
    assert container["resources"] == {"limits": {"cpu": "2"}}
    assert pod["terminationGracePeriodSeconds"] == 900
    names = [entry["name"] for entry in container["env"]]
    assert names.count("BATCH_SIZE") == 1 and names[-1] == "EXTRA"
    assert {"name": "BATCH_SIZE", "value": "7"} in container["env"]


def test_paused_and_held_shards_run_no_workers() -> None:
    assert deployment(workers=4, paused=True)["spec"]["replicas"] == 0
    spec = parse_spec(OWNER.name, {"slots": {"start": 0, "end": 10}, "workers": 4})
    assert desired_deployment(OWNER, spec, DEFAULTS, replicas=0)["spec"]["replicas"] == 0


def test_drift_sees_scaling_template_changes_and_hand_edits() -> None:
    want = deployment(workers=2)
    assert drift(want, None) == ["missing"]
    assert drift(want, want) == []
    assert drift(deployment(workers=3), want) == ["replicas 2 -> 3"]  # scaling keeps the template
    assert "template" in drift(deployment(workers=2, batchSize=9), want)
    edited = yaml.safe_load(yaml.safe_dump(want))
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    assert drift(want, edited) == ["container image"]
    # fields the API server adds do not count as drift
    served = yaml.safe_load(yaml.safe_dump(want))
    served["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    served["status"] = {"replicas": 2}
    assert drift(want, served) == []


def test_settings_from_the_environment_build_the_worker_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERFOLLOW_OPERATOR_WORKER_IMAGE", "img:3")
    monkeypatch.setenv("HYPERFOLLOW_OPERATOR_WORKER_RESOURCES", '{"limits": {"memory": "512Mi"}}')
    monkeypatch.setenv("HYPERFOLLOW_OPERATOR_WORKER_TOLERATIONS", '[{"operator": "Exists"}]')
    monkeypatch.setenv("HYPERFOLLOW_OPERATOR_WORKER_IMAGE_PULL_SECRETS", "a, b")
    from hyperfollow.core.settings import ConfigError, load_settings

    defaults = load_settings(OperatorSettings).worker_defaults()
    assert defaults.image == "img:3" and defaults.resources == {"limits": {"memory": "512Mi"}}
    assert defaults.tolerations == ({"operator": "Exists"},) and defaults.image_pull_secrets == ("a", "b")
    monkeypatch.setenv("HYPERFOLLOW_OPERATOR_WORKER_RESOURCES", "[1]")
    with pytest.raises(ConfigError, match="HYPERFOLLOW_OPERATOR_WORKER_RESOURCES: must be a JSON object"):
        load_settings(OperatorSettings)


# --- ranges -----------------------------------------------------------------------------------------------------
def peer(name: str, start: int, end: int, minute: int) -> Peer:
    return Peer(created=f"2026-01-01T00:{minute:02d}:00Z", name=name, slots=SlotRange(start, end))


def test_gaps_of_a_tiling_and_of_holes() -> None:
    assert gaps([r for r in (SlotRange(0, 100), SlotRange(100, SLOT_COUNT))]) == []
    assert gaps([SlotRange(10, 20), SlotRange(15, 30), SlotRange(40, 50)]) == [
        SlotRange(0, 10), SlotRange(30, 40), SlotRange(50, SLOT_COUNT)]
    assert gaps([]) == [SlotRange(0, SLOT_COUNT)]


def test_an_overlap_holds_the_younger_shard_only() -> None:
    older, younger = peer("b-older", 0, 1000, 1), peer("a-younger", 500, SLOT_COUNT, 2)
    assert assess(older, [older, younger]).held is False
    report = assess(younger, [older, younger])
    assert report.held and report.held_by == (older,) and report.overlaps == (older,)
    assert assess(older, [older, younger]).overlaps == (younger,)
    # same creation time: the name decides, so every reconcile agrees
    twin_a, twin_b = peer("a", 0, 10, 1), peer("b", 5, 20, 1)
    assert (assess(twin_a, [twin_a, twin_b]).held, assess(twin_b, [twin_a, twin_b]).held) == (False, True)


def test_a_held_shard_does_not_count_as_coverage_and_gaps_go_to_neighbours() -> None:
    first, second = peer("first", 0, 8000, 1), peer("second", 9000, SLOT_COUNT, 2)
    assert assess(first, [first, second]).gaps == (SlotRange(8000, 9000),)
    assert assess(second, [first, second]).gaps == (SlotRange(8000, 9000),)
    far = peer("far", 0, 100, 3)
    assert assess(far, [first, second, far]).held  # overlaps first
    middle = peer("middle", 20, 50, 4)
    assert assess(middle, [first, middle]).gaps == ()  # inside first's range, nothing borders a gap


# --- status -------------------------------------------------------------------------------------------------------
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def status(**kwargs: Any) -> dict[str, Any]:
    from hyperfollow.operator.ranges import RangeReport

    args: dict[str, Any] = {"name": "s", "generation": 2, "now": NOW, "slots": SlotRange(0, SLOT_COUNT),
                            "replicas": 2, "paused": False, "invalid": None, "report": RangeReport(),
                            "deployment": None, "deployment_name": "s-workers", "selector": "x=y",
                            "numbers": Numbers(), "previous": None}
    args.update(kwargs)
    return build_status(**args)


def cond(st: dict[str, Any], kind: str) -> tuple[str, str]:
    item = next(c for c in st["conditions"] if c["type"] == kind)
    return item["status"], item["reason"]


def test_conditions_follow_the_deployment() -> None:
    rolling = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 1,
                                                         "updatedReplicas": 2}}
    st = status(deployment=rolling)
    assert cond(st, "Ready") == ("True", "Tracking")
    assert cond(st, "Progressing") == ("True", "RollingOut")
    assert cond(st, "Degraded") == ("False", "AsExpected")
    assert cond(st, "RangeConflict") == ("False", "NoConflict")
    assert (st["readyWorkers"], st["workers"], st["observedGeneration"]) == (1, 2, 2)
    stable = {"metadata": {"generation": 3}, "status": {"observedGeneration": 3, "replicas": 2, "readyReplicas": 2,
                                                        "updatedReplicas": 2}}
    assert cond(status(deployment=stable), "Progressing") == ("False", "Stable")
    stalled = {"metadata": {"generation": 3}, "status": {
        "observedGeneration": 3, "replicas": 2, "readyReplicas": 0, "updatedReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}}
    st = status(deployment=stalled)
    assert cond(st, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert cond(st, "Ready") == ("False", "WorkersNotReady")


def test_transition_times_move_only_when_a_condition_flips() -> None:
    first = status()
    later = status(now=NOW + timedelta(minutes=5), previous=first)
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-03-01T12:00:00Z"
    assert later["lastReconciled"] == "2026-03-01T12:05:00Z"
    flipped = status(now=NOW + timedelta(minutes=6), previous=later, deployment={
        "metadata": {"generation": 1}, "status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                                                  "updatedReplicas": 2}})
    ready = next(c for c in flipped["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["lastTransitionTime"]) == ("True", "2026-03-01T12:06:00Z")


def test_unknown_figures_are_removed_from_status_and_known_ones_shown() -> None:
    st = status()
    assert st["trackedTraders"] is None and st["stalenessSeconds"] is None  # None deletes in a merge patch
    st = status(numbers=Numbers(tracked_traders=12, staleness_seconds=40, queued_jobs=0, feeder=""))
    assert (st["trackedTraders"], st["stalenessSeconds"], st["queuedJobs"], st["feeder"]) == (12, 40, 0, "")


def test_invalid_paused_and_held_states() -> None:
    st = status(invalid="spec.workers: bad", slots=None, previous={"range": "0:5"})
    assert cond(st, "Ready") == ("False", "InvalidSpec") and cond(st, "RangeConflict")[0] == "Unknown"
    assert st["range"] == "0:5"
    assert cond(status(paused=True, replicas=0), "Ready") == ("False", "Paused")
    from hyperfollow.operator.ranges import RangeReport

    other = peer("other", 0, 10, 1)
    held = status(report=RangeReport(overlaps=(other,), held_by=(other,)), replicas=0)
    assert cond(held, "Ready") == ("False", "RangeConflict")
    assert cond(held, "RangeConflict") == ("True", "Overlap") and cond(held, "Degraded") == ("True", "RangeConflict")


def test_events_only_for_changes_worth_telling() -> None:
    from hyperfollow.operator.ranges import RangeReport

    other = peer("other", 0, 10, 1)
    conflict = status(report=RangeReport(overlaps=(other,), held_by=(other,)), replicas=0)
    events = events_for(None, conflict)
    assert [(e.type, e.reason) for e in events] == [("Warning", "RangeConflict")]
    assert events_for(conflict, status(report=RangeReport(overlaps=(other,), held_by=(other,)), replicas=0,
                                       previous=conflict)) == []
    resolved = status(previous=conflict)
    assert [(e.type, e.reason) for e in events_for(conflict, resolved)] == [("Normal", "RangeConflictResolved")]
    invalid = status(invalid="bad", previous=resolved)
    assert ("Warning", "InvalidSpec") in [(e.type, e.reason) for e in events_for(resolved, invalid)]


# --- shards plan --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [1, 3, 7, 64])
def test_plan_tiles_every_slot_exactly_once(count: int, crds: list[dict[str, Any]]) -> None:
    shards = plan_shards(count, workers=2, namespace="hf", budget_group="egress-a")
    schema = CRDSchema(crds[0])
    assert all(schema.errors(shard) == [] for shard in shards)
    ranges = [SlotRange(s["spec"]["slots"]["start"], s["spec"]["slots"]["end"]) for s in shards]
    assert gaps(ranges) == [] and sum(len(r) for r in ranges) == SLOT_COUNT
    assert len({s["metadata"]["name"] for s in shards}) == count


def test_shards_plan_command_prints_yaml_for_kubectl() -> None:
    exe = [sys.executable, "-c", "from hyperfollow.core.cli import main; main()"]
    done = subprocess.run([*exe, "shards", "plan", "--count", "4", "--workers", "3"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    assert [d["metadata"]["name"] for d in docs] == ["shard-00", "shard-01", "shard-02", "shard-03"]
    assert [d["spec"]["slots"] for d in docs] == [{"start": 0, "end": 4096}, {"start": 4096, "end": 8192},
                                                  {"start": 8192, "end": 12288}, {"start": 12288, "end": 16384}]
    assert {d["spec"]["workers"] for d in docs} == {3}
    bad = subprocess.run([*exe, "shards", "plan", "--count", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--count must be between 1 and 16384" in bad.stderr
