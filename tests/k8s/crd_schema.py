"""Validate custom resources against a CRD's openAPIV3Schema the way the API server does (test support).

`kubernetes-validate` knows only built-in kinds. This validator covers what the API server checks for a
custom resource: the structural schema (JSON Schema), unknown fields (rejected, as with kubectl's default
`--validate=strict` field validation), CEL rules (`x-kubernetes-validations`, evaluated with cel-python) and
defaulting (`default:`). Not covered: transition rules (`oldSelf`), CEL cost limits, quantity parsing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import cache
from typing import Any

import celpy
import jsonschema

__all__ = ["CRDSchema"]


def _strict(node: Any) -> Any:
    """The schema as plain JSON Schema: int-or-string, nullable, and unknown fields rejected."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


class CRDSchema:
    """One served version of a CRD: names, subresources, printer columns, and the validator."""

    def __init__(self, crd: Mapping[str, Any], version: str | None = None) -> None:
        spec = crd["spec"]
        versions = spec["versions"]
        chosen = next(v for v in versions if v["name"] == version) if version else \
            next(v for v in versions if v.get("storage"))
        self.group: str = spec["group"]
        self.version: str = chosen["name"]
        self.names: Mapping[str, Any] = spec["names"]
        self.kind: str = spec["names"]["kind"]
        self.plural: str = spec["names"]["plural"]
        self.namespaced: bool = spec.get("scope", "Namespaced") == "Namespaced"
        self.subresources: Mapping[str, Any] = chosen.get("subresources") or {}
        self.columns: list[Mapping[str, Any]] = list(chosen.get("additionalPrinterColumns") or [])
        self.schema: Mapping[str, Any] = chosen["schema"]["openAPIV3Schema"]
        plain = _strict(copy.deepcopy(dict(self.schema)))
        jsonschema.Draft7Validator.check_schema(plain)
        self._validator = jsonschema.Draft7Validator(plain)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    # --- validation ------------------------------------------------------------------------------------------
    def errors(self, obj: Mapping[str, Any]) -> list[str]:
        """Every problem with `obj`, as `path: message` lines (empty when the API server would accept it)."""
        problems = []
        for error in sorted(self._validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.path))):
            path = ".".join(str(part) for part in error.path) or "<root>"
            problems.append(f"{path}: {error.message}")
        if not problems:  # CEL runs on structurally valid objects only, like the API server
            root = dict(obj)
            meta = root.get("metadata") or {}
            root["metadata"] = {key: meta[key] for key in ("name", "generateName") if key in meta}
            self._cel(self.schema, root, "", problems)
        return problems

    def _cel(self, schema: Mapping[str, Any], value: Any, path: str, problems: list[str]) -> None:
        if value is None:
            return
        for rule in schema.get("x-kubernetes-validations") or []:
            try:
                ok = bool(_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)}))
            except Exception as exc:  # an evaluation error rejects the object, as in the API server
                ok, rule = False, {**rule, "message": f"rule {rule['rule']!r} failed to evaluate: {exc}"}
            if not ok:
                problems.append(f"{path or '<root>'}: Invalid value: {rule.get('message') or rule['rule']}")
        if isinstance(value, Mapping):
            for key, sub in (schema.get("properties") or {}).items():
                if key in value:
                    self._cel(sub, value[key], f"{path}.{key}" if path else key, problems)
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping):
                for key, item in value.items():
                    self._cel(extra, item, f"{path}.{key}" if path else key, problems)
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for index, item in enumerate(value):
                self._cel(schema["items"], item, f"{path}[{index}]", problems)

    # --- defaulting ------------------------------------------------------------------------------------------
    def apply_defaults(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Fill `default:` values in place (for objects and their nested properties that are present)."""
        self._default(self.schema, obj)
        return obj

    def _default(self, schema: Mapping[str, Any], value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in (schema.get("properties") or {}).items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    self._default(sub, value[key])
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for item in value:
                self._default(schema["items"], item)
