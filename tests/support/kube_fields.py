"""Field ownership (``metadata.managedFields``) and server-side apply, as the API server keeps them, for the emulator.

Every write records which manager set which fields: an update (POST, PUT, PATCH) gives its manager the fields it
changed and takes them from everyone else; an apply (``PATCH`` with ``application/apply-patch+yaml``) makes its
manager's set exactly the fields of its configuration, removes fields it set before and no longer sets (unless
another manager holds them too), and is refused with 409 Conflict when it would change a field another manager
holds, unless ``force=true`` takes the field over. That refusal is what `helm upgrade` meets after `kubectl scale`.

Known gaps (what would catch each): lists are atomic, never merged by key (``x-kubernetes-list-type: map`` or a
built-in ``patchMergeKey``): two managers each applying one item of a keyed list would replace each other here
where a real server merges; a test applying list items from two managers would show it. Fields set by defaulting
are owned by the writer here (the real server owns them by nobody): a test reading managedFields would show it.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["ApplyConflict", "Managers", "apply", "record_update"]

FieldPath = tuple[str, ...]

# Identity and system fields belong to the server: nobody owns them.
_META_SYSTEM = frozenset({"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                          "managedFields", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"})


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def leaves(obj: Any, prefix: FieldPath = (), *, status: bool | None = None) -> Iterator[FieldPath]:
    """The owned fields of an object: paths to every scalar, list (atomic) and empty map.

    ``status``: None counts every field; False leaves .status out (a main resource with a status subresource);
    True counts only .status (a write to /status).
    """
    if not isinstance(obj, dict) or (not obj and prefix):
        yield prefix
        return
    for key, value in obj.items():
        if not prefix:
            if key in ("apiVersion", "kind") or (status is False and key == "status") or (
                    status is True and key != "status"):
                continue
        if prefix == ("metadata",) and key in _META_SYSTEM:
            continue
        yield from leaves(value, (*prefix, key))


def _get(obj: Any, path: FieldPath) -> tuple[bool, Any]:
    for step in path:
        if not isinstance(obj, dict) or step not in obj:
            return False, None
        obj = obj[step]
    return True, obj


def _remove(obj: dict[str, Any], path: FieldPath) -> None:
    # Drop the field, then every map it leaves empty on the way up.
    parents = [obj]
    for step in path[:-1]:
        nxt = parents[-1].get(step)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


def _merge(live: Any, config: Any) -> Any:
    # Maps merge; scalars and lists (atomic here) replace.
    if not isinstance(config, dict) or not isinstance(live, dict):
        return copy.deepcopy(config)
    out = dict(live)
    for key, value in config.items():
        out[key] = _merge(live.get(key), value)
    return out


def _overlaps(a: FieldPath, b: FieldPath) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def to_fields_v1(paths: set[FieldPath]) -> dict[str, Any]:
    """FieldsV1, the managedFields encoding: {"f:spec": {"f:workers": {"f:replicas": {}}}}."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        at = tree
        for step in path:
            at = at.setdefault(f"f:{step}", {})
    return tree


def from_fields_v1(tree: dict[str, Any], prefix: FieldPath = ()) -> set[FieldPath]:
    out: set[FieldPath] = set()
    for key, sub in tree.items():
        if not key.startswith("f:"):
            continue  # "." and "k:{...}" / "v:..." keys: lists are atomic here
        path = (*prefix, key[2:])
        out |= from_fields_v1(sub, path) if sub else {path}
    return out


@dataclass
class _Entry:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    subresource: str
    fields: set[FieldPath]
    time: str

    def describe(self) -> str:
        sub = f' with subresource "{self.subresource}"' if self.subresource else ""
        return f'"{self.manager}"{sub} using {self.api_version}'


class ApplyConflict(Exception):
    """An apply would change fields that other managers hold: the server's 409 and its message."""


class Managers:
    """An object's managedFields, read from it and written back to it."""

    def __init__(self, obj: dict[str, Any] | None) -> None:
        self.entries: list[_Entry] = []
        for raw in ((obj or {}).get("metadata") or {}).get("managedFields") or []:
            self.entries.append(_Entry(raw.get("manager", ""), raw.get("operation", "Update"),
                                       raw.get("apiVersion", ""), raw.get("subresource", ""),
                                       from_fields_v1(raw.get("fieldsV1") or {}), raw.get("time", _now())))

    def _entry(self, manager: str, operation: str, api_version: str, subresource: str) -> _Entry:
        for e in self.entries:
            if (e.manager, e.operation, e.subresource) == (manager, operation, subresource):
                e.api_version = api_version
                e.time = _now()
                return e
        e = _Entry(manager, operation, api_version, subresource, set(), _now())
        self.entries.append(e)
        return e

    def write(self, obj: dict[str, Any]) -> None:
        self.entries = [e for e in self.entries if e.fields]
        raw = []
        for e in self.entries:
            entry = {"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version, "time": e.time,
                     "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(e.fields)}
            if e.subresource:
                entry["subresource"] = e.subresource
            raw.append(entry)
        meta = obj.setdefault("metadata", {})
        if raw:
            meta["managedFields"] = raw
        else:
            meta.pop("managedFields", None)


def _scope(subresource: str, has_status: bool) -> bool | None:
    if subresource == "status":
        return True
    return False if has_status else None


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, api_version: str,
                  subresource: str = "", has_status: bool = False) -> None:
    """After a create or update: its manager owns what it changed, nobody else does; new's managedFields set."""
    managers = Managers(old)
    scope = _scope(subresource, has_status)
    before = {p: _get(old, p)[1] for p in leaves(old, status=scope)} if old is not None else {}
    after = {p: _get(new, p)[1] for p in leaves(new, status=scope)}
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    gone = {p for p in before if p not in after}
    for e in managers.entries:
        e.fields = {f for f in e.fields if not any(_overlaps(f, c) for c in changed | gone)}
    if changed:
        managers._entry(manager, "Update", api_version, subresource).fields |= changed
    managers.write(new)


def apply(live: dict[str, Any] | None, config: dict[str, Any], manager: str, api_version: str, *,
          force: bool, subresource: str = "", has_status: bool = False) -> dict[str, Any]:
    """Server-side apply: the object after ``manager`` applies ``config`` to ``live`` (None: create it).

    Raises ApplyConflict when a field another manager holds would change and ``force`` is false.
    """
    scope = _scope(subresource, has_status)
    managers = Managers(live)
    wanted = set(leaves(config, status=scope))
    conflicts: dict[int, list[FieldPath]] = {}
    for i, e in enumerate(managers.entries):
        if (e.manager, e.operation, e.subresource) == (manager, "Apply", subresource):
            continue
        for path in wanted:
            for held in e.fields:
                if _overlaps(path, held) and _get(live, held) != _get(_merge(live or {}, config), held):
                    conflicts.setdefault(i, []).append(held)
    if conflicts and not force:
        count = sum(len(v) for v in conflicts.values())
        lines = []
        for i, paths in conflicts.items():
            shown = sorted({"." + ".".join(p) for p in paths})
            if len(shown) == 1 and len(conflicts) == 1:
                lines.append(f"conflict with {managers.entries[i].describe()}: {shown[0]}")
            else:
                lines.append(f"conflicts with {managers.entries[i].describe()}:\n"
                             + "\n".join(f"- {s}" for s in shown))
        raise ApplyConflict(f"Apply failed with {count} conflict{'s' if count > 1 else ''}: " + "\n".join(lines))
    for i, paths in conflicts.items():  # force: the fields change hands
        managers.entries[i].fields -= set(paths)
    mine = managers._entry(manager, "Apply", api_version, subresource)
    result = copy.deepcopy(live) if live is not None else {}
    others = set().union(*(e.fields for e in managers.entries if e is not mine))
    for path in mine.fields - wanted:  # no longer applied, and nobody else holds it: removed
        if not any(_overlaps(path, o) for o in others):
            _remove(result, path)
    result = _merge(result, config)
    mine.fields = wanted
    managers.write(result)
    return result


def manager_of(params: dict[str, str], headers: dict[str, str]) -> str:
    """The request's field manager: ?fieldManager=, else the User-Agent's program name, as the server derives it."""
    if params.get("fieldManager"):
        return params["fieldManager"]
    agent = next((v for k, v in headers.items() if k.lower() == "user-agent"), "unknown")
    return agent.split("/")[0] or "unknown"


def parse_apply_body(data: Any, text: str) -> dict[str, Any]:
    """An apply body: YAML (JSON is YAML too)."""
    if isinstance(data, dict):
        return data
    import yaml

    loaded = yaml.safe_load(text)
    if not isinstance(loaded, dict):
        raise ValueError("the apply configuration is not an object")
    return json.loads(json.dumps(loaded))
