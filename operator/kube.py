"""The few Kubernetes API calls the operator makes, on plain JSON dicts.

Built on the `kubernetes` client's ApiClient (so in-cluster and kubeconfig logins work as kopf sets them up)
but without its typed models: the desired objects are plain manifests, applied with server-side apply under
the field manager `hyperfollow-operator`, which also repairs fields someone changed by hand.
Calls are synchronous; the handlers run them with `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client as k8s

from hyperfollow.operator.model import GROUP, PLURAL, VERSION

__all__ = ["FIELD_MANAGER", "Kube", "KubeError"]

FIELD_MANAGER = "hyperfollow-operator"
_PLURALS = {"Deployment": "deployments", "PodDisruptionBudget": "poddisruptionbudgets"}
_TIMEOUT = 30


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = _PLURALS.get(kind) or (PLURAL if kind == "TrackingShard" else f"{kind.lower()}s")
    path = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    """A thin client; `api_client` defaults to one built from the `kubernetes` library's default configuration
    (which kopf's login sets, in cluster or from a kubeconfig) on first use."""

    def __init__(self, api_client: k8s.ApiClient | None = None) -> None:
        self._api_client = api_client

    @property
    def api_client(self) -> k8s.ApiClient:
        if self._api_client is None:
            self._api_client = k8s.ApiClient()
        return self._api_client

    def close(self) -> None:
        if self._api_client is not None:
            self._api_client.close()

    def request(self, method: str, path: str, *, body: Any = None, query: Sequence[tuple[str, str]] = (),
                content_type: str = "application/json") -> dict[str, Any] | None:
        """One call; the decoded JSON answer, None for 404, KubeError for any other failure."""
        api = self.api_client
        try:
            method, url, headers, payload, _ = api.param_serialize(
                method=method, resource_path=path, query_params=list(query),
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body, auth_settings=["BearerToken"])
            response = api.call_api(method, url, header_params=headers, body=payload, _request_timeout=_TIMEOUT)
            response.read()
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError(exc.status or 0, str(exc.reason or exc)) from None
        except Exception as exc:  # connection errors from urllib3
            raise KubeError(0, f"{method} {path}: {exc}") from None
        if response.status == 404:
            return None
        text = response.data.decode("utf-8", errors="replace") if response.data else ""
        if response.status >= 400:
            message = text
            with contextlib.suppress(ValueError):
                message = json.loads(text).get("message") or text
            raise KubeError(response.status, f"{method} {path}: {message}")
        return json.loads(text) if text else {}

    # --- the operations -------------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.request("GET", object_path(api_version, kind, namespace, name))

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply (creates the object when missing); the object as stored."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        result = self.request("PATCH", path, body=dict(manifest), content_type="application/apply-patch+yaml",
                              query=[("fieldManager", FIELD_MANAGER), ("force", "true")])
        if result is None:  # pragma: no cover - apply never answers 404 for a namespaced object
            raise KubeError(404, f"apply of {path} found no such resource")
        return result

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete (pods go in the background); False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        return self.request("DELETE", object_path(api_version, kind, namespace, name), body=body) is not None

    def list_shards(self, namespace: str) -> list[dict[str, Any]]:
        result = self.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}") or {}
        return list(result.get("items") or [])
