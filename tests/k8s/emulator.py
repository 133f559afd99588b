"""An in-process Kubernetes API server for tests, built on kmock 0.8 (plain HTTP on 127.0.0.1).

No real cluster can run here (no container engine, no apiserver binaries), so the operator, kubectl and Helm
are tested against this emulator. `kmock.KubernetesEmulator` stores objects (create, merge/JSON patch,
delete with finalizers, list, watch); this subclass adds what kopf, the `kubernetes` client, kubectl and
Helm 4 need and kmock 0.8 lacks:

* metadata.uid / creationTimestamp / generation / resourceVersion / generateName; resourceVersion bumps on
  every write and `generation` on every change outside metadata and status (observedGeneration means something);
* list answers carry the current resourceVersion, kind and apiVersion; `watch?resourceVersion=N` replays only
  newer events and subscribes before the snapshot (kmock re-sends everything and can lose events);
* a failed JSON-patch `test` op answers 422 (kopf relies on it); canonical Status reasons
  (NotFound/AlreadyExists/Invalid); `/api/v1/namespaces` works; core discovery says `v1`;
* watch streams as application/json with the WatchList initial-events-end bookmark (`kubectl get -w`,
  `kubectl delete --wait`, `kubectl wait`); server-side apply creates missing objects (Helm 4, the operator);
* custom resources registered from a CRD manifest are defaulted and validated (schema, unknown fields, CEL:
  see crd_schema.py; unchanged values are ratcheted on updates) with a 422 like the API server's; `status` is
  a real subresource (writes to the main resource cannot change it and vice versa); the `scale` subresource
  (autoscaling/v1 Scale) serves `kubectl scale`; `kubectl get` receives server-side Tables built from the
  CRD's printer columns; the server reports Kubernetes v1.30.

Not emulated (design tests around it): scheduling and pods, controllers (a Deployment never becomes ready),
ownerReference garbage collection, admission, RBAC, label/field selectors, OpenAPI (kubectl needs
`--validate=false`), strategic-merge semantics (merge patches replace lists).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import datetime
import itertools
import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import aiohttp.web
import jsonpatch
import jsonpointer
import kmock
from k8s.crd_schema import CRDSchema
from kmock._internal import aiobus, dicts, enums, parsing

__all__ = ["Emulator", "EmulatorThread", "make_emulator"]

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

# --- kmock 0.8 parses '/api/v1/namespaces[/NAME]' wrongly (ValueError -> 500) ------------------------------------
_orig_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    core = parts[:2] == ["api", "v1"] and len(parts) >= 3 and parts[2] == "namespaces"
    if core and len(parts) in (3, 4):
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    if core and len(parts) == 5 and parts[4] in ("status", "finalize"):
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3], parts[4])
    return _orig_parse_path(path)


parsing.parse_path = _parse_path

_orig_guess = parsing.guess_k8s


def _guess_k8s(k8s: parsing.ParsedPath, method: enums.method, query: dict[str, str]) -> enums.action | None:
    if k8s.group is not None and k8s.name is not None and method == enums.method.PUT:
        return enums.action.UPDATE  # kmock ignores PUT; a replace is handled as an update
    return _orig_guess(k8s, method, query)


parsing.guess_k8s = _guess_k8s


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human_age(timestamp: str | None) -> str:
    """Like apimachinery's duration.HumanDuration (what `kubectl get` shows under AGE)."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    return f"{hours}h" if hours < 48 else f"{hours // 24}d"


_JSONPATH_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[\?\(@\.([A-Za-z0-9_-]+)==[\"']([^\"']*)[\"']\)\]|\[(\d+)\]")


def jsonpath(obj: Any, path: str) -> Any:
    """The small JSONPath subset of printer columns: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`."""
    value = obj
    for key, filter_key, filter_value, index in _JSONPATH_TOKEN.findall(path):
        if value is None:
            return None
        if key:
            value = value.get(key) if isinstance(value, Mapping) else None
        elif filter_key:
            value = next((item for item in value or [] if isinstance(item, Mapping)
                          and str(item.get(filter_key)) == filter_value), None)
        else:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
    return value


def _value_at(obj: Any, problem: str) -> Any:
    """The value a validation problem (`path: message`) is about; the whole object for `<root>`."""
    path = problem.split(":", 1)[0]
    if path == "<root>":
        return {k: v for k, v in obj.items() if k != "status"} if isinstance(obj, Mapping) else obj
    value = obj
    for part in re.split(r"[.\[\]]+", path):
        if not part:
            continue
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


class _RecordingBus(aiobus.Bus):  # type: ignore[type-arg]
    """Remembers every event with its sequence number (= resourceVersion) for watch?resourceVersion=N."""

    counter: Any = None
    history: list[tuple[int, Any]]

    async def put(self, *items: Any) -> None:
        for item in items:
            meta = item.get("object", {}).get("metadata", {})
            rv = meta.get("resourceVersion")
            seq = int(rv) if (item.get("type") != "DELETED" and rv and str(rv).isdigit()) else next(self.counter)
            self.history.append((seq, item))
        await super().put(*items)


class Emulator(kmock.KubernetesEmulator):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        counter = itertools.count(1000)
        self._counter = counter

        def make_bus() -> _RecordingBus:
            bus = _RecordingBus()
            bus.counter, bus.history = counter, []
            return bus

        self._buses = collections.defaultdict(make_bus)
        self._last_rv = 999
        self.crds: dict[Any, CRDSchema] = {}
        #: resource -> (spec replicas path, status replicas path, selector path) of its scale subresource
        self.scales: dict[Any, tuple[str, str, str | None]] = {}
        self.validation_enabled = True
        (self.fallback ** 1)[kmock.action.WATCH] << kmock.headers({"Content-Type": "application/json"}) \
            << self._serve_watch

    # --- registration -----------------------------------------------------------------------------------------
    def register_crd(self, crd: Mapping[str, Any]) -> CRDSchema:
        """Serve the CRD's resource (discovery, validation, subresources, printer columns) and store the CRD."""
        schema = CRDSchema(crd)
        resource = kmock.resource(schema.group, schema.version, schema.plural)
        subresources = [name for name in ("status", "scale") if name in schema.subresources]
        self.resources[f"{schema.group}/{schema.version}/{schema.plural}"] = kmock.ResourceInfo(
            kind=schema.kind, singular=schema.names.get("singular"), namespaced=schema.namespaced, verbs=ALL_VERBS,
            shortnames=schema.names.get("shortNames") or [], categories=schema.names.get("categories") or [],
            subresources=subresources)
        self.crds[resource] = schema
        if "scale" in schema.subresources:
            scale = schema.subresources["scale"]
            self.scales[resource] = (scale["specReplicasPath"], scale["statusReplicasPath"],
                                     scale.get("labelSelectorPath"))
        stored = copy.deepcopy(dict(crd))
        meta = stored.setdefault("metadata", {})
        meta.update(uid=str(uuid.uuid4()), resourceVersion="1", generation=1, creationTimestamp=_now())
        self.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, meta["name"]] = stored
        return schema

    def _next_rv(self) -> str:
        self._last_rv = next(self._counter)
        return str(self._last_rv)

    def _fill_create_meta(self, request: Any, meta: dict[str, Any]) -> None:
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_rv()
        if request.namespace and "namespace" not in meta:
            meta["namespace"] = request.namespace

    # --- the request pipeline -------------------------------------------------------------------------------
    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is not None and request.subresource == "scale" and resource in self.scales:
            return await self._serve_scale(request)
        if resource is not None and "as=Table" in request.headers.get("Accept", "") and resource in self.crds \
                and request.action in (kmock.action.LIST, kmock.action.FETCH):
            return aiohttp.web.json_response(await self._table(request))
        if (resource is not None and request.action == kmock.action.UPDATE and request.name
                and not request.subresource and isinstance(request.data, Mapping)
                and "apply-patch" in request.headers.get("Content-Type", "")):
            created = await self._apply_create(request)
            if created is not None:
                return created
        if resource is not None and request.action in (kmock.action.CREATE, kmock.action.UPDATE):
            await self._prepare_write(request)
        try:
            return await super()._handle(request)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            # a real apiserver answers a failed JSON-patch 'test' op with 422; kopf relies on it
            raise kmock.KubernetesError(status=422, reason="Invalid", message=str(exc)) from None

    async def _apply_create(self, request: Any) -> aiohttp.web.StreamResponse | None:
        """Server-side apply of a missing object creates it (otherwise it is handled as a merge patch)."""
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                return None
            data = copy.deepcopy(dict(request.data))
            data["metadata"] = dict(data.get("metadata") or {}, name=request.name)
            self._admit(request.resource, data, create=True)
            self._fill_create_meta(request, data["metadata"])
            if key in self._objects:
                self._objects[key].create(data)
            else:
                self._objects[key] = data
            raw = self._objects[key].last.raw
            await self._buses[request.resource].put({"type": "ADDED", "object": raw})
            return aiohttp.web.json_response(raw, status=201)

    def _admit(self, resource: Any, obj: dict[str, Any], *, create: bool,
               previous: Mapping[str, Any] | None = None) -> None:
        """Default and validate a custom resource as the API server would; 422 when it is invalid.

        On updates, problems in values that did not change are let through, like the API server's validation
        ratcheting (Kubernetes 1.30+): a stored object that predates a rule can still get status and metadata
        writes (kopf's annotations, finalizer removal).
        """
        schema = self.crds.get(resource)
        if schema is None or not self.validation_enabled:
            return
        if create:
            schema.apply_defaults(obj)
        problems = schema.errors(obj)
        if previous is not None:
            problems = [p for p in problems if _value_at(obj, p) != _value_at(previous, p)]
        if problems:
            name = (obj.get("metadata") or {}).get("name")
            raise kmock.KubernetesError(status=422, reason="Invalid", message=(
                f'{schema.kind}.{schema.group} "{name}" is invalid: ' + "; ".join(problems)))

    async def _prepare_write(self, request: Any) -> None:
        """Stamp metadata, isolate the status subresource, bump generation, admit custom resources."""
        resource, data = request.resource, request.data
        has_status = resource in self.crds and "status" in self.crds[resource].subresources
        if request.action == kmock.action.CREATE and isinstance(data, Mapping):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):  # e.g. kopf's Events
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if has_status:
                data.pop("status", None)
            self._admit(resource, data, create=True)
            self._fill_create_meta(request, data.setdefault("metadata", {}))
            return
        if request.name is None:
            return
        # an update: restrict it to what the endpoint may change, then look at the result
        if isinstance(data, Mapping) and has_status:
            if request.subresource == "status":
                for key in [key for key in data if key not in ("status", "metadata", "apiVersion", "kind")]:
                    data.pop(key)
            elif not request.subresource:
                data.pop("status", None)
        key = (resource, request.namespace, request.name)
        async with self._lock:
            current = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else None
        rv = self._next_rv()
        if isinstance(data, Mapping):
            data.setdefault("metadata", {})["resourceVersion"] = rv
        elif isinstance(data, list):
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": rv})
        if current is None:
            return  # kmock answers 404
        try:
            preview = dict(dicts.patch_dict(current, data))
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, ValueError, TypeError):
            return  # kmock reports it (422 for a failed test op)
        changed = {k: v for k, v in preview.items() if k not in ("metadata", "status")} != \
            {k: v for k, v in current.items() if k not in ("metadata", "status")}
        if changed and not request.subresource:
            generation = int((current.get("metadata") or {}).get("generation") or 1) + 1
            if isinstance(data, Mapping):
                data["metadata"]["generation"] = generation
            else:
                data.append({"op": "add", "path": "/metadata/generation", "value": generation})
        self._admit(resource, preview, create=False, previous=current)

    # --- the scale subresource --------------------------------------------------------------------------------
    def _scale_of(self, resource: Any, obj: Mapping[str, Any]) -> dict[str, Any]:
        spec_path, status_path, selector_path = self.scales[resource]
        meta = obj.get("metadata") or {}
        status: dict[str, Any] = {"replicas": jsonpath(obj, status_path) or 0}
        selector = jsonpath(obj, selector_path) if selector_path else None
        if selector:
            status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {key: meta[key] for key in ("name", "namespace", "uid", "resourceVersion",
                                                         "creationTimestamp") if key in meta},
                "spec": {"replicas": jsonpath(obj, spec_path) or 0}, "status": status}

    async def _serve_scale(self, request: Any) -> aiohttp.web.StreamResponse:
        resource = request.resource
        key = (resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                raise kmock.KubernetesError(status=404, reason="NotFound", message=f"{request.name} not found")
            obj = self._objects[key]
            scale = self._scale_of(resource, obj.raw)
            if request.method in (enums.method.PATCH, enums.method.PUT):
                try:
                    wanted = dict(request.data) if request.method == enums.method.PUT else \
                        dict(dicts.patch_dict(scale, request.data))
                    replicas = wanted["spec"]["replicas"]
                except (KeyError, TypeError, ValueError, jsonpatch.JsonPatchException) as exc:
                    raise kmock.KubernetesError(status=422, reason="Invalid", message=f"bad scale: {exc}") from None
                if not isinstance(replicas, int) or replicas < 0:
                    raise kmock.KubernetesError(status=422, reason="Invalid",
                                                message=f"spec.replicas: Invalid value: {replicas!r}")
                spec_path = self.scales[resource][0]
                change: dict[str, Any] = {}
                cursor = change
                parts = spec_path.strip(".").split(".")
                for part in parts[:-1]:
                    cursor = cursor.setdefault(part, {})
                cursor[parts[-1]] = replicas
                if jsonpath(obj.raw, spec_path) != replicas:
                    generation = int(obj.raw.get("metadata", {}).get("generation") or 1) + 1
                    change["metadata"] = {"resourceVersion": self._next_rv(), "generation": generation}
                    self._admit(resource, dict(dicts.patch_dict(obj.raw, change)), create=False, previous=obj.raw)
                    obj.patch(change)
                    await self._buses[resource].put({"type": "MODIFIED", "object": obj.raw})
                scale = self._scale_of(resource, obj.raw)
        return aiohttp.web.json_response(scale)

    # --- server-side printing ---------------------------------------------------------------------------------
    async def _table(self, request: Any) -> dict[str, Any]:
        schema = self.crds[request.resource]
        async with self._lock:
            objs = [o.raw for o in self._KubernetesEmulator__get_objs(request, strict=request.name is not None)
                    if not o.deleted]
        if request.name is not None and not objs:
            raise kmock.KubernetesError(status=404, reason="NotFound",
                                        message=f'{schema.plural}.{schema.group} "{request.name}" not found')
        columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        columns += [{"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                     "description": c.get("description", ""), "priority": c.get("priority", 0)}
                    for c in schema.columns]
        rows = []
        for obj in objs:
            cells: list[Any] = [obj["metadata"]["name"]]
            for column in schema.columns:
                value = jsonpath(obj, column["jsonPath"])
                cells.append(_human_age(value) if column["type"] == "date" else value)
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                                                    "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(self._last_rv)}, "columnDefinitions": columns, "rows": rows}

    # --- fixes of kmock's answers -----------------------------------------------------------------------------
    _REASONS: ClassVar[dict[int, str]] = {404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}

    def _info(self, resource: Any) -> Any:
        return self.resources[resource] if resource in self.resources else None  # noqa: SIM401 (no .get)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        # kmock 0.8 uses reasons like 'Object Not Found'; clients need the canonical metav1.StatusReason values
        if isinstance(exc, kmock.KubernetesError) and exc.status in self._REASONS:
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "code": exc.status, "reason": self._REASONS[exc.status],
                "message": exc.message or repr(exc), "details": exc.details or {}}, status=exc.status)
        return await super()._render_error(exc)

    async def _serve_server_version(self, request: Any) -> dict[str, Any]:
        # kmock says v1.26 (its bundled resource list's); the chart and kubectl's skew check want a current one
        version = await super()._serve_server_version(request)
        return {**version, "minor": "30", "gitVersion": "v1.30.0+emulator"}

    async def _serve_list(self, request: Any) -> dict[str, Any]:
        result = await super()._serve_list(request)
        result["metadata"]["resourceVersion"] = str(self._last_rv)
        res = request.resource
        info = self._info(res)
        kind = info.kind if info is not None and info.kind else res.plural.capitalize()
        return {"apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                "kind": f"{kind}List", **result}

    async def _serve_version(self, request: Any) -> dict[str, Any]:
        result = await super()._serve_version(request)
        result["groupVersion"] = result["groupVersion"].lstrip("/")  # kmock says "/v1" for the core group
        for entry in result.get("resources", []):
            if "/" in entry["name"]:
                # kmock copies the parent's names onto subresources, which confuses kubectl's RESTMapper
                entry.update(shortNames=[], categories=[], singularName="", verbs=["get", "patch", "update"])
                if entry["name"].endswith("/scale"):
                    entry.update(group="autoscaling", version="v1", kind="Scale")
        return result

    def _match(self, request: Any, event: Mapping[str, Any]) -> bool:
        meta = event.get("object", {}).get("metadata", {})
        return self._KubernetesEmulator__check(request, request.resource, meta.get("namespace"),
                                               meta.get("name"), strict=False)

    async def _serve_watch(self, request: Any):  # type: ignore[no-untyped-def]
        yield b""
        bus = self._buses[request.resource]
        mark = await bus.mark()  # subscribe BEFORE the snapshot: nothing is lost in between
        try:
            since = request.params.get("resourceVersion", "")
            initial = request.params.get("sendInitialEvents") == "true"
            async with self._lock:
                if since.isdigit() and int(since) > 0 and not initial:  # after a list: only newer events
                    events = [(seq, ev) for seq, ev in bus.history if seq > int(since)]
                else:  # no resourceVersion: the current state as ADDED
                    objs = [o for o in self._KubernetesEmulator__get_objs(request, strict=False) if not o.deleted]
                    events = [(int(o.raw["metadata"].get("resourceVersion", 0) or 0),
                               {"type": "ADDED", "object": o.raw}) for o in objs]
                seen = {id(ev) for _, ev in events}
            for _, ev in events:
                if self._match(request, ev):
                    yield ev
            if initial:  # WatchList: mark the end of the initial state
                res = request.resource
                info = self._info(res)
                yield {"type": "BOOKMARK", "object": {
                    "kind": info.kind if info is not None and info.kind else "",
                    "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                    "metadata": {"resourceVersion": str(self._last_rv),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}}
            async for ev in bus.stream(since=mark):
                if id(ev) not in seen and self._match(request, ev):
                    yield ev
        finally:
            await bus.unmark(mark)


def make_emulator(crds: list[Mapping[str, Any]] = (), namespaces: tuple[str, ...] = ("default",)) -> Emulator:
    emu = Emulator()
    emu.resources.load_bundled()  # built-in resources of a K3s v1.26 (v1, apps/v1, policy/v1, ...)
    for crd in crds:
        emu.register_crd(crd)
    emu.scales[kmock.resource("apps", "v1", "deployments")] = (".spec.replicas", ".status.replicas", None)
    for ns in ("kube-system", *namespaces):
        emu.objects["v1/namespaces", None, ns] = {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": str(uuid.uuid4()), "resourceVersion": "1", "creationTimestamp": _now()}}
    return emu


class EmulatorThread:
    """The emulator served from a background thread with its own event loop (for synchronous tests)."""

    def __init__(self, crds: list[Mapping[str, Any]] = (), namespaces: tuple[str, ...] = ("default",),
                 port: int = 0) -> None:
        self.crds, self.namespaces, self.port = list(crds), namespaces, port
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self.emu: Emulator | None = None
        self.url = ""
        self.error: BaseException | None = None

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        emu = make_emulator(self.crds, self.namespaces)
        # entering the emulator makes it answer failures as Kubernetes Status bodies (not strict: no re-raise)
        async with emu, kmock.Server(emu, port=self.port) as server:
            self.emu, self.url = emu, str(server.url).rstrip("/")
            self.ready.set()
            await self._stop.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by __enter__ when start-up fails
            self.error = exc
            self.ready.set()

    def __enter__(self) -> EmulatorThread:
        self.thread = threading.Thread(target=self._run, name="k8s-emulator", daemon=True)
        self.thread.start()
        if not self.ready.wait(10) or self.error is not None:
            raise RuntimeError(f"the Kubernetes emulator did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
