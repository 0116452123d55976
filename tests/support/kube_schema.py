"""A CRD's structural schema as a real API server enforces it, for the Kubernetes API emulator.

At CRD registration (``check_crd``): the structural-schema rules, every ``default`` checked against its own schema
and against the CEL rules at its level *as written* (the server does not fill nested defaults into a default
before checking it: a rule on ``spec`` that reads ``self.workers.x`` fails on ``spec``'s ``default: {}``), and
every rule compiled. For each write of a custom resource (``Schema.admit``): unknown fields pruned, or refused
under ``fieldValidation=Strict``; defaults applied top-down; the OpenAPI value validations; the
``x-kubernetes-validations`` rules, transition rules (``oldSelf``) included where the old value correlates.

Errors are ``FieldError``s worded as the API server words them (``spec.workers.replicas: Invalid value: 300:
spec.workers.replicas in body should be less than or equal to 256``), so tests can match the field they name.
CEL is evaluated by cel-python (a real CEL implementation). Known gaps, each with the test that would catch it:
- Kubernetes' own CEL libraries (``isSorted``, ``indexOf``, ``url``, ``quantity``, ``format``, ...) and
  ``messageExpression`` are not available: a rule using them fails to compile here (a CRD test would show it).
- Rules are not type-checked at compile time and their cost is not estimated (the real server refuses a rule
  whose worst-case cost is too high): the rules of our CRD read bounded lists only.
- Value validations ``format`` and ``multipleOf`` are not checked (our CRD uses neither).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy

__all__ = ["FieldError", "Schema", "check_crd", "crd_schema"]

_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# What a schema under a logical junctor may not say (structural schemas: junctors only add value validations).
_NOT_IN_JUNCTORS = ("type", "default", "nullable", "description", "additionalProperties",
                    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                    "x-kubernetes-int-or-string")
_ROOT_KEPT = ("apiVersion", "kind", "metadata")
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "integer": (int,),
    "number": (int, float),
}


@dataclass(frozen=True)
class FieldError:
    """One cause of a 422 Invalid, as the API server lists it in ``details.causes``."""

    field: str
    reason: str  # FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, FieldValueTooMany, ...
    detail: str  # the text after "<field>: "

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.detail, "field": self.field}


def _shown(value: Any) -> str:
    # field.Invalid prints the value: strings quoted, numbers and booleans bare, containers by their type.
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for name in ("object", "array", "string", "integer", "number"):
        if isinstance(value, _TYPES[name]):
            return name
    return type(value).__name__


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _invalid(path: str, value: Any, text: str) -> FieldError:
    return FieldError(path, "FieldValueInvalid", f"Invalid value: {_shown(value)}: {text}")


# --- CEL ---------------------------------------------------------------------------------------------------------

_CEL = celpy.Environment()


@dataclass(frozen=True)
class _Rule:
    rule: str
    message: str | None
    field_path: str  # ".x.y" relative to the node, or ""
    reason: str
    program: Any  # celpy.Runner
    transition: bool  # reads oldSelf: evaluated only on an update whose old value correlates

    @staticmethod
    def compile(raw: dict[str, Any]) -> _Rule:
        text = raw.get("rule", "")
        program = _CEL.program(_CEL.compile(_strict_has(text)))  # raises celpy.CELParseError
        return _Rule(text, raw.get("message"), raw.get("fieldPath", ""), raw.get("reason", "FieldValueInvalid"),
                     program, re.search(r"\boldSelf\b", text) is not None)

    def shown(self) -> str:
        return self.message or self.rule


_HAS = re.compile(r"\bhas\(\s*([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+)\.([A-Za-z_]\w*)\s*\)")


def _strict_has(rule: str) -> str:
    """has(a.b.f) as cel-go evaluates it: an error when a.b itself is absent (cel-python answers false). Written as
    a conditional on a.b, whose evaluation fails first, so the error reaches the rule's result as in cel-go."""
    return _HAS.sub(lambda m: f"(({m.group(1)} == {m.group(1)}) ? has({m.group(1)}.{m.group(2)}) : false)", rule)


def _cel_error_text(exc: BaseException, rule: str, value: Any) -> str:
    # cel-python says "no such member in mapping: 'workers'" (and, for `error || error`, "no matching overload");
    # cel-go, the API server's, reports the left-most error: "no such key: workers".
    for m in re.finditer(r"\bself((?:\.[A-Za-z_]\w*)+)", rule):
        at = value
        for step in m.group(1).split(".")[1:]:
            if not isinstance(at, dict):
                break
            if step not in at:
                return f"no such key: {step}"
            at = at[step]
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    m = re.match(r"no such member in mapping: '(.*)'", text)
    return f"no such key: {m.group(1)}" if m else text


_REASONS = {"FieldValueInvalid": "Invalid value", "FieldValueForbidden": "Forbidden",
            "FieldValueRequired": "Required value", "FieldValueDuplicate": "Duplicate value"}


def _evaluate(rules: list[_Rule], node_type: str, value: Any, old: Any, has_old: bool, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in rules:
        if rule.transition and not has_old:
            continue
        activation = {"self": celpy.json_to_cel(value)}
        if rule.transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        where = (path + rule.field_path).lstrip(".")
        try:
            result = rule.program.evaluate(activation)
        except celpy.CELEvalError as exc:
            errors.append(FieldError(where, "FieldValueInvalid", f'Invalid value: "{node_type}": '
                                     f"{_cel_error_text(exc, rule.rule, value)} evaluating rule: {rule.shown()}"))
            continue
        if isinstance(result, celpy.CELEvalError):
            errors.append(FieldError(where, "FieldValueInvalid", f'Invalid value: "{node_type}": '
                                     f"{_cel_error_text(result, rule.rule, value)} evaluating rule: {rule.shown()}"))
        elif not bool(result):
            word = _REASONS.get(rule.reason, "Invalid value")
            detail = (f'{word}: "{node_type}": {rule.shown()}' if word == "Invalid value"
                      else f"{word}: {rule.shown()}")
            errors.append(FieldError(where, rule.reason, detail))
    return errors


# --- the schema --------------------------------------------------------------------------------------------------


class Schema:
    """One version's ``openAPIV3Schema``, with its CEL rules compiled once."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.rules_enabled = True  # False: as an API server before 1.25, which does not evaluate the rules
        self._rules: dict[int, list[_Rule]] = {}
        for node in _nodes(raw):
            if node.get("x-kubernetes-validations"):
                self._rules[id(node)] = [_Rule.compile(r) for r in node["x-kubernetes-validations"]]

    # -- a write of a custom resource --

    def admit(self, obj: dict[str, Any], old: dict[str, Any] | None, field_validation: str = "Strict",
              ) -> tuple[dict[str, Any], list[str], list[FieldError]]:
        """Prune (or refuse) unknown fields, default, validate: (the object to store, warnings, errors).

        ``field_validation`` is the request's ``fieldValidation``: Strict refuses unknown fields (a 400 the caller
        raises when warnings come back with Strict), Warn prunes them and warns, Ignore prunes them silently.
        """
        obj = copy.deepcopy(obj)
        unknown = list(prune(obj, self.raw, "", root=True))
        self.default(obj)
        errors = self.validate(obj, old)
        return obj, [f'unknown field "{u}"' for u in unknown] if field_validation != "Ignore" else [], errors

    def default(self, obj: Any) -> None:
        _default(obj, self.raw)

    def validate(self, obj: Any, old: Any = None) -> list[FieldError]:
        errors = _validate(self.raw, obj, "", root=True)
        if self.rules_enabled:
            errors += self._cel(self.raw, obj, old, old is not None, "")
        return errors

    def _cel(self, schema: dict[str, Any], value: Any, old: Any, has_old: bool, path: str) -> list[FieldError]:
        errors: list[FieldError] = []
        if value is None:
            return errors
        rules = self._rules.get(id(schema))
        if rules:
            errors += _evaluate(rules, schema.get("type", "object"), value, old, has_old, path)
        if isinstance(value, dict):
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                sub = props.get(key) if props else (extra if isinstance(extra, dict) else None)
                if sub is None:
                    continue
                sub_path = _child(path, key) if props else f"{path}[{key}]"
                in_old = has_old and isinstance(old, dict) and key in old
                errors += self._cel(sub, item, old[key] if in_old else None, in_old, sub_path)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
            olds: dict[Any, Any] = {}
            if keys and has_old and isinstance(old, list):  # only map lists correlate items across an update
                olds = {_map_key(o, keys): o for o in old if isinstance(o, dict)}
            for i, item in enumerate(value):
                key = _map_key(item, keys) if keys and isinstance(item, dict) else None
                errors += self._cel(items, item, olds.get(key), key in olds, f"{path}[{i}]")
        return errors


def _map_key(item: dict[str, Any], keys: list[str]) -> tuple[str, ...]:
    return tuple(json.dumps(item.get(k)) for k in keys)


def _nodes(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield schema
    for sub in (schema.get("properties") or {}).values():
        yield from _nodes(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key])


# --- pruning and defaulting --------------------------------------------------------------------------------------


def prune(value: Any, schema: dict[str, Any], path: str, root: bool = False) -> Iterator[str]:
    """Remove fields the schema does not declare (in place), yielding their paths."""
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
        embedded = schema.get("x-kubernetes-embedded-resource") is True
        for key in list(value):
            if (root or embedded) and key in _ROOT_KEPT and not (props and key in props and key != "metadata"):
                continue
            sub = props.get(key) if props else None
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None and (extra is True or keep_unknown):
                continue
            if sub is None:
                del value[key]
                yield _child(path, key)
                continue
            yield from prune(value[key], sub, _child(path, key) if props else f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from prune(item, schema["items"], f"{path}[{i}]")


def _default(value: Any, schema: dict[str, Any]) -> None:
    # Structural defaulting, top-down: an absent property with a default gets a copy of it, then every present
    # value is defaulted in turn (so a defaulted {} gets its own fields' defaults).
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if (key not in value or (value[key] is None and not sub.get("nullable"))) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = props.get(key) if props else None
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                _default(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default(item, schema["items"])


# --- OpenAPI value validation ------------------------------------------------------------------------------------


def _validate(schema: dict[str, Any], value: Any, path: str, root: bool = False) -> list[FieldError]:
    shown_path = path or "<root>"
    if value is None:
        if schema.get("nullable"):
            return []
        want = schema.get("type")
        return [_invalid(path, "null", f'{shown_path} in body must be of type {want}: "null"')] if want else []
    errors: list[FieldError] = []
    want = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return [_invalid(path, _type_of(value), f'{shown_path} in body must be of type integer or string: '
                                                    f'"{_type_of(value)}"')]
    elif want:
        ok = isinstance(value, _TYPES.get(want, (object,))) and not (isinstance(value, bool) and want != "boolean")
        if want == "integer" and isinstance(value, float) and value.is_integer():
            ok = True
        if not ok:
            return [_invalid(path, _type_of(value), f'{shown_path} in body must be of type {want}: '
                                                    f'"{_type_of(value)}"')]
    errors += _value_checks(schema, value, path, shown_path)
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                errors += _validate(items, item, f"{path}[{i}]")
        errors += _list_type(schema, value, path)
    if isinstance(value, dict):
        errors += _object_checks(schema, value, path, shown_path, root)
    errors += _junctors(schema, value, path)
    return errors


def _value_checks(schema: dict[str, Any], value: Any, path: str, shown_path: str) -> list[FieldError]:
    # enum, numeric bounds, string length and pattern, list length: one value's own constraints
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append(FieldError(path, "FieldValueNotSupported",
                                 f"Unsupported value: {json.dumps(value)}: supported values: {supported}"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and (value < schema["minimum"] or
                                    (schema.get("exclusiveMinimum") and value == schema["minimum"])):
            errors.append(_invalid(path, value, f"{shown_path} in body should be greater than "
                                                f"{'' if schema.get('exclusiveMinimum') else 'or equal to '}"
                                                f"{schema['minimum']}"))
        if "maximum" in schema and (value > schema["maximum"] or
                                    (schema.get("exclusiveMaximum") and value == schema["maximum"])):
            errors.append(_invalid(path, value, f"{shown_path} in body should be less than "
                                                f"{'' if schema.get('exclusiveMaximum') else 'or equal to '}"
                                                f"{schema['maximum']}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(FieldError(path, "FieldValueTooLong",
                                     f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(_invalid(path, value, f"{shown_path} in body should be at least {schema['minLength']} "
                                                "chars long"))
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(_invalid(path, value, f"{shown_path} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(FieldError(path, "FieldValueTooMany",
                                     f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(_invalid(path, len(value), f"{shown_path} in body should have at least "
                                                     f"{schema['minItems']} items"))
    return errors


def _object_checks(schema: dict[str, Any], value: dict[str, Any], path: str, shown_path: str, root: bool,
                   ) -> list[FieldError]:
    errors: list[FieldError] = []
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(FieldError(path, "FieldValueTooMany", f"Too many: {len(value)}: must have at most "
                                                            f"{schema['maxProperties']} items"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(_invalid(path, len(value), f"{shown_path} in body should have at least "
                                                 f"{schema['minProperties']} properties"))
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(FieldError(_child(path, key), "FieldValueRequired", "Required value"))
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if root and key in _ROOT_KEPT and key not in props:
            continue
        if key in props:
            errors += _validate(props[key], item, _child(path, key))
        elif isinstance(extra, dict):
            errors += _validate(extra, item, f"{path}[{key}]")
    return errors


def _list_type(schema: dict[str, Any], value: list[Any], path: str) -> list[FieldError]:
    kind = schema.get("x-kubernetes-list-type")
    seen: set[Any] = set()
    errors: list[FieldError] = []
    for i, item in enumerate(value):
        if kind == "map" and isinstance(item, dict):
            key: Any = _map_key(item, schema.get("x-kubernetes-list-map-keys") or [])
        elif kind == "set":
            key = json.dumps(item, sort_keys=True)
        else:
            return errors
        if key in seen:
            errors.append(FieldError(f"{path}[{i}]", "FieldValueDuplicate", f"Duplicate value: {_shown(item)}"))
        seen.add(key)
    return errors


def _junctors(schema: dict[str, Any], value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for sub in schema.get("allOf") or []:
        errors += _validate(sub, value, path)
    if schema.get("anyOf"):
        branches = [_validate(sub, value, path) for sub in schema["anyOf"]]
        if all(branches):
            errors += [e for b in branches for e in b]
            errors.append(_invalid(path, value, f"{path or '<root>'} in body must validate at least one schema "
                                                "(anyOf)"))
    if schema.get("oneOf"):
        passing = sum(not _validate(sub, value, path) for sub in schema["oneOf"])
        if passing != 1:
            errors.append(_invalid(path, value, f"{path or '<root>'} in body must validate one and only one "
                                                "schema (oneOf)"))
    if isinstance(schema.get("not"), dict) and not _validate(schema["not"], value, path):
        errors.append(_invalid(path, value, f"{path or '<root>'} in body should not validate the given schema"))
    return errors


# --- the CRD ------------------------------------------------------------------------------------------------------


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v.get("schema", {}).get("openAPIV3Schema") or {"type": "object",
                                                                   "x-kubernetes-preserve-unknown-fields": True}
    raise KeyError(version)


def check_crd(crd: dict[str, Any]) -> list[FieldError]:
    """What the API server refuses in a CustomResourceDefinition's schemas (structural rules, defaults, CEL)."""
    errors: list[FieldError] = []
    versions = crd.get("spec", {}).get("versions") or []
    if not versions:
        return [FieldError("spec.versions", "FieldValueRequired", "Required value: must have exactly one version "
                                                                  "marked as storage version")]
    if sum(bool(v.get("storage")) for v in versions) != 1:
        errors.append(FieldError("spec.versions", "FieldValueInvalid", "Invalid value: \"array\": must have "
                                                                       "exactly one version marked as storage version"))
    schemas = [json.dumps(v.get("schema"), sort_keys=True) for v in versions]
    shared = len(set(schemas)) == 1  # one schema for all versions: the server reports it as spec.validation
    for i, v in enumerate(versions):
        raw = (v.get("schema") or {}).get("openAPIV3Schema")
        if raw is None:
            errors.append(FieldError(f"spec.versions[{i}].schema.openAPIV3Schema", "FieldValueRequired",
                                     "Required value: schemas are required"))
            continue
        where = "spec.validation.openAPIV3Schema" if shared else f"spec.versions[{i}].schema.openAPIV3Schema"
        errors += _structural(raw, where, root=True)
        if shared and i > 0:
            continue
        try:
            schema = Schema(raw)
        except celpy.CELParseError as exc:
            errors.append(FieldError(f"{where}.x-kubernetes-validations", "FieldValueInvalid",
                                     f"Invalid value: \"rule\": compilation failed: {exc}"))
            continue
        errors += _check_defaults(schema, raw, where)
    return errors


def _structural(schema: dict[str, Any], path: str, root: bool = False, in_junctor: bool = False,
                ) -> list[FieldError]:
    errors = _structural_node(schema, path, root, in_junctor)
    for key, sub in (schema.get("properties") or {}).items():
        if root and key == "metadata":
            continue
        errors += _structural(sub, f"{path}.properties[{key}]", in_junctor=in_junctor)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            errors += _structural(schema[key], f"{path}.{key}", in_junctor=in_junctor)
    for junctor in _JUNCTORS:
        subs = schema.get(junctor)
        for i, sub in enumerate([subs] if isinstance(subs, dict) else subs or []):
            errors += _structural(sub, f"{path}.{junctor}[{i}]", in_junctor=True)
    return errors


def _structural_node(schema: dict[str, Any], path: str, root: bool, in_junctor: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    if in_junctor:
        for key in _NOT_IN_JUNCTORS:
            if key in schema:
                errors.append(FieldError(f"{path}.{key}", "FieldValueForbidden", "Forbidden: must be empty to be "
                                                                                 "structural"))
    elif not schema.get("type") and not schema.get("x-kubernetes-int-or-string"):
        errors.append(FieldError(f"{path}.type", "FieldValueRequired", "Required value: must not be empty for "
                                                                       "specified object fields"))
    if "x-kubernetes-preserve-unknown-fields" in schema and schema["x-kubernetes-preserve-unknown-fields"] is not True:
        errors.append(FieldError(f"{path}.x-kubernetes-preserve-unknown-fields", "FieldValueInvalid",
                                 "Invalid value: false: must be true or undefined"))
    if schema.get("properties") and "additionalProperties" in schema:
        errors.append(FieldError(f"{path}.additionalProperties", "FieldValueForbidden",
                                 "Forbidden: additionalProperties and properties are mutual exclusive"))
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        items = schema.get("items") or {}
        if not keys:
            errors.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "FieldValueRequired",
                                     "Required value: must not be empty if x-kubernetes-list-type is map"))
        for key in keys:
            sub = (items.get("properties") or {}).get(key)
            if sub is None:
                errors.append(FieldError(f"{path}.x-kubernetes-list-map-keys", "FieldValueInvalid",
                                         f"Invalid value: \"{key}\": entries must all be names of item properties"))
            elif key not in (items.get("required") or []) and "default" not in sub:
                errors.append(FieldError(f"{path}.items.properties[{key}]", "FieldValueRequired",
                                         "Required value: this property is in x-kubernetes-list-map-keys, so it "
                                         "must have a default or be a required property"))
    if root:
        meta = (schema.get("properties") or {}).get("metadata")
        if meta is not None and set(meta.get("properties") or {}) - {"name", "generateName"}:
            errors.append(FieldError(f"{path}.properties[metadata]", "FieldValueForbidden",
                                     "Forbidden: must not specify anything other than name and generateName, but "
                                     "metadata is implicitly specified"))
    return errors


def _check_defaults(schema: Schema, raw: dict[str, Any], path: str) -> list[FieldError]:
    # Each default: no field it sets may be pruned, it must pass its schema's value validations, and the CEL rules
    # of its own level, as written (nested defaults are not applied to it first).
    errors: list[FieldError] = []

    def walk(node: dict[str, Any], where: str) -> None:
        if "default" in node:
            default = copy.deepcopy(node["default"])
            pruned = list(prune(default, node, ""))
            at = f"{where}.default"
            if pruned:
                errors.append(FieldError(at, "FieldValueInvalid", f"Invalid value: {_shown(node['default'])}: "
                                                                  f"must not have unknown fields: {pruned}"))
            for e in _validate(node, default, ""):
                errors.append(FieldError(at + (f".{e.field}" if e.field else ""), e.reason, e.detail))
            for e in schema._cel(node, default, None, False, ""):
                errors.append(FieldError(at + (f".{e.field}" if e.field else ""), e.reason, e.detail))
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, f"{where}.properties[{key}]")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{where}.{key}")

    walk(raw, path)
    return errors
