"""A Kubernetes API server for tests: kmock's ``KubernetesEmulator`` on a real 127.0.0.1 port.

This is the one test double the suite allows, because it *is* the API server: the code under test
(the real ``kubernetes`` client, later kopf) talks plain HTTP to it, as it would to a cluster.
Nothing else is faked. The server runs in a background thread with its own event loop.

kmock 0.8 stores objects and serves discovery, but real clients need more of the API server's
rules than it implements. ``KubeEmulator`` below adds them, each commented with the rule it follows
(https://kubernetes.io/docs/reference/using-api/api-concepts/), and refuses what a real server refuses for our
CRD and chart: CRDs are registered through the API with the structural-schema checks, each default checked against
the CEL rules of its level (``kube_schema``); custom resources are pruned or refused (``fieldValidation``),
defaulted, validated and their CEL rules evaluated, transition rules included, in the server's 422 wording;
server-side apply keeps ``managedFields`` and refuses conflicting applies (``kube_fields``); the garbage collector
removes objects whose owners are gone; CRD printer columns come back as Tables; ``/openapi/v3`` lists each
resource's PATCH with ``fieldValidation``, which is what kubectl and Helm check before leaving validation to us.
It serves HTTPS only (a test CA; Go clients send bearer tokens over nothing else) and authenticates every request:
the admin kubeconfig's token is the cluster admin (system:masters), ``KubeAPI.kubeconfig_for`` mints a
ServiceAccount's token (refused with 401 once the ServiceAccount is gone), no credentials is system:anonymous.
Each request is authorized by RBAC against the stored Roles, ClusterRoles and bindings (``kube_rbac``: verbs,
groups, resources and subresources, resourceNames, namespace scope, non-resource URLs, the bootstrap discovery
roles), refused with the server's 403 message, and a Role or binding granting more than its author holds is refused
(escalation prevention). ``used`` and ``refused`` record what each user was allowed and denied (least-privilege
tests: tests/operator/test_operator_rbac.py).

Known gaps, and the test that would catch each:
- Tokens are opaque strings, not JWTs bound to a pod, with no expiry, TokenRequest or TokenReview API; no
  impersonation, client certificates or SelfSubjectAccessReview; the bootstrap policy has only the discovery and
  public-info roles (no admin/edit/view aggregation): a test using any of these would fail here.
- Request bodies are JSON or YAML, never protobuf: Helm's release Secrets are sent as protobuf, so Helm keeps its
  releases in memory against the emulator (tests/operator/test_helm_lifecycle.py); a test with Helm's Secret
  storage would catch it.
- Built-in kinds have no schema, defaults or validation (only their API rules below): a malformed Deployment is
  stored; the chart's objects are checked by kubernetes-validate instead (tests/deploy/test_deploy.py).
- Strategic-merge-patch is applied as a JSON merge patch, and apply treats every list as atomic (lists are replaced,
  not merged by key): a test patching one container of a Deployment by name would catch it.
- OpenAPI documents carry no schemas (client-side validation against them is not possible); no pagination
  (``limit`` is ignored, all items come in one page); no watch bookmarks (they are optional); field selectors
  accept any dotted path (the real server allows only a per-kind list).
- Controllers: the garbage collector (background propagation, at once) always; with ``controllers=True`` also the
  scheduler, the Deployment controller and the EndpointSlice controller (``kube_controllers``, for the end-to-end
  suite; a kubelet agent runs the pods). They are simplified: Deployments own their pods directly (no
  ReplicaSets) and replace them all at once on a template change; the scheduler fits only GPUs, pod count,
  nodeSelector and node readiness (no CPU or memory, taints, affinity or preemption); one EndpointSlice per
  Service. No namespace cascade; pods are deleted at once, not gracefully; foreground deletion and orphaning are
  not honoured. A rolling update under traffic, or a pod that must outlive its deletion mark, would show it.
- The TokenRequest API (serviceaccounts/token) mints tokens without audiences or binding to a pod.

Usage::

    with KubeAPI() as kube:                      # or kube = KubeAPI().start(); ...; kube.stop()
        kube.register(TTSCLUSTER)                # a custom resource, as if its CRD were applied
        kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path))
        kube.fail_writes([409, 0, 500], plurals=["pods"])  # fault injection: the next pod writes fail, then pass
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextvars
import copy
import dataclasses
import datetime
import functools
import inspect
import json
import random
import re
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Self

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import trustme
import yaml

from support.kube_controllers import deployment_step, endpoint_slice, schedule
from support.kube_fields import ApplyConflict, apply, manager_of, parse_apply_body, record_update
from support.kube_rbac import (
    ADMIN,
    ANONYMOUS,
    RBAC_GROUP,
    Attributes,
    Grant,
    Policy,
    User,
    authorize,
    escalation,
    forbidden_message,
    request_info,
    service_account_user,
)
from support.kube_schema import FieldError, Schema, check_crd, crd_schema

__all__ = ["CLUSTER_KOPFPEERING", "CORE_RESOURCES", "KOPFPEERING", "TTSCLUSTER", "KubeAPI", "KubeEmulator", "Resource", "WriteFaults"]

SERVER_MINOR = "36"  # /version answers v1.36.0
_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
ADMIN_TOKEN = "kube-emulator-admin"  # the admin kubeconfig's bearer token (group system:masters)
# Who sent the request being handled: set by KubeEmulator.__call__, read by admission (RBAC escalation checks).
# Writes the emulator makes itself (registering a CRD, the garbage collector) are the admin's.
_REQUEST_USER: contextvars.ContextVar[User] = contextvars.ContextVar("request_user", default=ADMIN)
_RBAC_PLURALS = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}


@dataclass(frozen=True)
class Resource:
    """One served resource, as its discovery entry (or its CRD) describes it."""

    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: tuple[str, ...] = ()  # "status" and "scale" have behaviour here
    custom: bool = False  # served from a CRD: no strategic-merge-patch (the real server answers 415)
    shortnames: tuple[str, ...] = ()
    # A CRD's subresources.scale: (specReplicasPath, statusReplicasPath, labelSelectorPath or None),
    # dotted JSON paths such as ".spec.workers.replicas". Required when "scale" is a subresource.
    scale: tuple[str, str, str | None] | None = None
    # The CRD this resource is served from: registering the resource applies it (and its checks) first.
    crd: dict[str, Any] | None = dataclasses.field(default=None, compare=False, hash=False, repr=False)

    @staticmethod
    def from_crd(crd: dict[str, Any]) -> Resource:
        """The storage version of a CustomResourceDefinition, as the server serves it once it is established."""
        s = crd["spec"]
        version = next(v for v in s["versions"] if v.get("storage"))
        subs = version.get("subresources") or {}
        scale = subs.get("scale")
        return Resource(
            s["group"], version["name"], s["names"]["plural"], s["names"]["kind"],
            namespaced=s.get("scope", "Namespaced") == "Namespaced",
            subresources=tuple(k for k in ("status", "scale") if k in subs), custom=True,
            shortnames=tuple(s["names"].get("shortNames") or ()),
            scale=(scale["specReplicasPath"], scale["statusReplicasPath"], scale.get("labelSelectorPath"))
            if scale else None,
            crd=crd,
        )

    def __post_init__(self) -> None:
        if ("scale" in self.subresources) != (self.scale is not None):
            raise ValueError(f"{self.plural}: the scale subresource and its paths go together")

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def ref(self) -> kmock.resource:
        return kmock.resource(group=self.group, version=self.version, plural=self.plural)


CORE_RESOURCES: tuple[Resource, ...] = (
    Resource(
        "", "v1", "namespaces", "Namespace", namespaced=False, subresources=("status",), shortnames=("ns",)
    ),
    Resource("", "v1", "pods", "Pod", subresources=("status",), shortnames=("po",)),
    Resource("", "v1", "services", "Service", subresources=("status",), shortnames=("svc",)),
    Resource("", "v1", "configmaps", "ConfigMap", shortnames=("cm",)),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", subresources=("token",), shortnames=("sa",)),
    Resource("", "v1", "events", "Event", shortnames=("ev",)),
    Resource("", "v1", "nodes", "Node", namespaced=False, subresources=("status",), shortnames=("no",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    Resource("apps", "v1", "deployments", "Deployment", subresources=("status",), shortnames=("deploy",)),
    Resource("apps", "v1", "replicasets", "ReplicaSet", subresources=("status",), shortnames=("rs",)),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Resource("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", shortnames=("netpol",)),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress", subresources=("status",), shortnames=("ing",)),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", subresources=("status",),
             shortnames=("pdb",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
             namespaced=False, subresources=("status",), shortnames=("crd", "crds")),
)
CRD_RESOURCE = CORE_RESOURCES[-1]
SERVICE_ACCOUNTS = next(r for r in CORE_RESOURCES if r.plural == "serviceaccounts")

CHART_CRDS = Path(__file__).resolve().parents[2] / "helm" / "tts-cluster" / "crds"
# The TTSCluster resource as the chart's CRD defines it (schema, defaults, CEL rules, scale, printer columns).
TTSCLUSTER = Resource.from_crd(yaml.safe_load((CHART_CRDS / "ttsclusters.tts-cluster.io.yaml").read_text()))
KOPFPEERING = Resource.from_crd(yaml.safe_load((CHART_CRDS / "kopfpeerings.kopf.dev.yaml").read_text()))
CLUSTER_KOPFPEERING = Resource.from_crd(
    yaml.safe_load((CHART_CRDS / "clusterkopfpeerings.kopf.dev.yaml").read_text()))


class _Event(NamedTuple):
    rv: int
    resource: kmock.resource
    namespace: str | None
    type: str  # ADDED / MODIFIED / DELETED, as stored; filtered watches may translate it
    obj: dict[str, Any]
    prev: dict[str, Any] | None


def _as_served(response: aiohttp.web.StreamResponse) -> aiohttp.web.StreamResponse:
    """A real API server's JSON answers say `Content-Type: application/json`, with no charset; aiohttp adds
    `; charset=utf-8`, and clients that compare the header exactly (lightkube, for its errors) then miss a Status."""
    if not response.prepared and response.content_type == "application/json" and response.charset:
        response.charset = None
    return response


def _error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    # Errors are a metav1.Status with a machine-readable reason (NotFound, AlreadyExists, Conflict, ...).
    return kmock.KubernetesError(
        status=status, reason=reason, message=message, details=details or {"causes": []}
    )


def _invalid(spec: Resource, name: str, errors: list[FieldError]) -> kmock.KubernetesError:
    # 422 Invalid, worded as the server words it: `<Kind>.<group> "<name>" is invalid: <field>: <detail>`.
    kind = f"{spec.kind}.{spec.group}" if spec.group else spec.kind
    shown = [str(e) for e in errors]
    text = shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"
    return _error(422, "Invalid", f'{kind} "{name}" is invalid: {text}', name=name, group=spec.group,
                  kind=spec.kind, causes=[e.cause() for e in errors])


def _age(timestamp: str) -> str:
    # duration.HumanDuration, as the server shows a date column: 45s, 5m30s, 7m, 3h, 2d5h, 9d, ...
    then = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    s = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d = h // 24
    return f"{d}d{h % 24}h" if d < 8 and h % 24 else f"{d}d"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _drop_nulls(value: Any) -> Any:
    # A JSON null in a create/update body means "unset": the server never stores explicit nulls.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _merge_patch(target: Any, patch: Any) -> Any:
    # RFC 7386 JSON merge patch: objects merge recursively, null deletes a key, anything else replaces.
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _dig(obj: Any, path: str) -> Any:
    # A dotted JSON path (".spec.workers.replicas"; the leading dot is optional); None if absent.
    for step in path.lstrip(".").split("."):
        obj = obj.get(step) if isinstance(obj, dict) else None
    return obj


def _spec_part(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


# --- selectors -------------------------------------------------------------------------------------

_LABEL_REQ = re.compile(
    r"(?P<neg>!)?\s*(?P<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*"
    r"(?:(?P<op>==|=|!=|>|<)\s*(?P<val>[-A-Za-z0-9_.]*)|\s+(?P<setop>in|notin)\s*\((?P<vals>[^()]*)\))?"
)


def _label_matcher(text: str) -> Callable[[dict[str, str]], bool]:
    """A labels.Selector: comma-separated requirements that must all hold.

    Operators: =, ==, !=, in, notin, key (exists), !key (does not exist), >, < (integers).
    """
    checks: list[Callable[[dict[str, str]], bool]] = []
    for part in re.split(r",(?![^(]*\))", text):
        if not part.strip():
            continue
        m = _LABEL_REQ.fullmatch(part.strip())
        if m is None or (m["neg"] and (m["op"] or m["setop"])):
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
        key, op, val = m["key"], m["op"], m["val"]
        if m["neg"]:
            checks.append(lambda labels, k=key: k not in labels)
        elif op in ("=", "=="):
            checks.append(lambda labels, k=key, v=val: labels.get(k) == v)
        elif op == "!=":  # also true when the label is absent
            checks.append(lambda labels, k=key, v=val: labels.get(k) != v)
        elif op in (">", "<"):
            bound = int(val)
            checks.append(
                lambda labels, k=key, o=op, b=bound: (
                    k in labels
                    and labels[k].lstrip("-").isdigit()
                    and (int(labels[k]) > b if o == ">" else int(labels[k]) < b)
                )
            )
        elif m["setop"]:
            values = {v.strip() for v in m["vals"].split(",") if v.strip()}
            if m["setop"] == "in":
                checks.append(lambda labels, k=key, vs=values: labels.get(k) in vs)
            else:  # notin: also true when the label is absent
                checks.append(lambda labels, k=key, vs=values: labels.get(k) not in vs)
        else:
            checks.append(lambda labels, k=key: k in labels)
    return lambda labels: all(check(labels) for check in checks)


def _field_matcher(text: str) -> Callable[[dict[str, Any]], bool]:
    """A fields.Selector: comma-separated path=value / path!=value, compared as strings."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.fullmatch(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*", part)
        if m is None:
            raise ValueError(f"invalid field selector: {part!r}")
        path, op, want = m.groups()

        def get(obj: dict[str, Any], path: str = path) -> str:
            value = _dig(obj, path)
            return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

        checks.append(lambda obj, g=get, w=want, neg=(op == "!="): (g(obj) == w) != neg)
    return lambda obj: all(check(obj) for check in checks)


def _selector(params: dict[str, str], name: str | None) -> Callable[[dict[str, Any]], bool]:
    try:
        labels = _label_matcher(params.get("labelSelector", ""))
        fields = _field_matcher(params.get("fieldSelector", ""))
    except ValueError as exc:
        raise _error(400, "BadRequest", str(exc)) from None

    def matches(obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return (name is None or meta.get("name") == name) and labels(meta.get("labels") or {}) and fields(obj)

    return matches


# --- fault injection -------------------------------------------------------------------------------

_WRITES = frozenset({kmock.method.POST, kmock.method.PUT, kmock.method.PATCH, kmock.method.DELETE})
_FAULT_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                  504: "Timeout"}


@dataclass
class WriteFaults:
    """Writes (create, update, patch, delete) answered with an error instead of being served, as a busy or
    failing API server answers them; for chaos runs of clients that must retry.

    ``plan`` is used one matching write at a time: a status (409, 500, 503, ...) answers that write with a
    metav1.Status of that code and stores nothing; 0 serves it normally. When the plan is used up, every write is
    served. Only writes to ``plurals`` are matched (every write when empty).
    """

    plan: deque[int]
    plurals: frozenset[str] = frozenset()
    matched: int = 0  # writes that used a plan entry
    injected: dict[int, int] = dataclasses.field(default_factory=dict)  # status -> writes answered with it

    def take(self, request: kmock.Request) -> kmock.KubernetesError | None:
        if not self.plan or request.method not in _WRITES:
            return None
        plural = request.resource.plural if request.resource is not None else None
        if self.plurals and plural not in self.plurals:
            return None
        self.matched += 1
        status = self.plan.popleft()
        if not status:
            return None
        self.injected[status] = self.injected.get(status, 0) + 1
        reason = _FAULT_REASONS.get(status, "InternalError")
        if status == 409:
            message = "Operation cannot be fulfilled: the object has been modified; please apply your changes " \
                      "to the latest version and try again (injected)"
        else:
            message = f"{reason} (injected fault)"
        return _error(status, reason, message)

    def counts(self) -> dict[str, Any]:
        return {"matched": self.matched, "injected": dict(self.injected), "left": len(self.plan)}


# --- the emulator ----------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API-server rules that real clients depend on.

    Objects live in kmock's ``objects`` array (with their history); every write is also appended to an
    event log so that watches can resume from any resourceVersion, as the API server's watch cache does.
    All methods run on the server's event loop; from another thread use ``KubeAPI.call``.
    """

    history_limit: int = 10_000  # events kept for watch resumption; older resourceVersions get 410 Gone
    default_watch_timeout: float = 1800.0  # the server's --min-request-timeout when a watch sets none

    _specs: dict[kmock.resource, Resource] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, Schema] = attrs.field(factory=dict, init=False)  # custom resources' schemas
    _columns: dict[kmock.resource, list[dict[str, Any]]] = attrs.field(factory=dict, init=False)  # printer columns
    _warnings: list[str] = attrs.field(factory=list, init=False)  # the current write's Warning headers
    # False: an API server before Kubernetes 1.25, which stores custom resources without evaluating their CRD's
    # x-kubernetes-validations rules (the operator must still refuse what they refuse).
    validation_rules: bool = True
    # True: the scheduler, the Deployment controller and the EndpointSlice controller run after every write
    # (kube_controllers); the end-to-end suite needs them, the other tests play their part by hand.
    controllers: bool = False
    _controllers_due: bool = attrs.field(default=False, init=False)
    _rv: int = attrs.field(default=1, init=False)
    _log: list[_Event] = attrs.field(factory=list, init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)  # events at or below it are gone
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    watch_count: int = attrs.field(default=0, init=False)  # watch streams open right now
    faults: WriteFaults | None = attrs.field(default=None, init=False)  # see fail_writes()
    _tokens: dict[str, User] = attrs.field(factory=lambda: {ADMIN_TOKEN: ADMIN}, init=False)
    # What each non-admin user was allowed, and by which grant: (user, verb, group, resource[/sub], namespace, grant).
    used: set[tuple[str, str, str, str, str, Grant | None]] = attrs.field(factory=set, init=False)
    # Requests refused by RBAC: (user, the server's message).
    refused: list[tuple[str, str]] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's discovery + get/list/watch/create/patch/delete fallbacks
        # PUT is "update" (full replacement) and DELETE on a collection is "deletecollection";
        # kmock guesses no action for either, so they get their own fallbacks.
        self.fallback[kmock.method.PUT] << self._serve_replace
        self.fallback[kmock.method.DELETE] << self._serve_delete_collection
        self.fallback[kmock.method.POST] << self._serve_token_request  # POST to a named object's subresource
        for spec in CORE_RESOURCES:
            self.register(spec)
        # Every cluster has the "default" namespace.
        self._store_new(CORE_RESOURCES[0], None, {"metadata": {"name": "default"}})

    # -- registration & lookup --

    def register(self, spec: Resource) -> None:
        """Serve a resource and list it in discovery. A resource made from a CRD (``Resource.from_crd``) is served
        by creating its CRD, with every check the API server makes of one (so a CRD it refuses fails here)."""
        if spec.crd is not None:
            name = spec.crd["metadata"]["name"]
            if self._current(CRD_RESOURCE, None, name) is None:
                self._store_new(CRD_RESOURCE, None, spec.crd)
            return
        self._serve_resource(spec)

    def _serve_resource(self, spec: Resource) -> None:
        if spec.crd is not None:
            self._schemas[spec.ref] = Schema(crd_schema(spec.crd, spec.version))
            version = next(v for v in spec.crd["spec"]["versions"] if v["name"] == spec.version)
            self._columns[spec.ref] = list(version.get("additionalPrinterColumns") or [])
        self._specs[spec.ref] = spec
        self.resources[spec.ref] = kmock.ResourceInfo(
            kind=spec.kind,
            singular=spec.kind.lower(),
            namespaced=spec.namespaced,
            verbs=set(_VERBS),
            shortnames=set(spec.shortnames),
            subresources=set(spec.subresources),
        )

    def _spec(self, request: kmock.Request) -> Resource:
        spec = self._specs.get(request.resource) if request.resource is not None else None
        if spec is None or request.resource is None or request.resource.plural is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource is not None and request.subresource not in spec.subresources:
            raise _error(
                404, "NotFound", f"the server could not find the requested resource ({request.subresource})"
            )
        return spec

    def _key(
        self, spec: Resource, namespace: str | None, name: str
    ) -> tuple[kmock.resource, str | None, str]:
        return (spec.ref, namespace if spec.namespaced else None, name)

    def _current(self, spec: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = self._key(spec, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def _existing(self, spec: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._current(spec, namespace, name)
        if obj is None:  # NotFound carries the name and the plural (as "kind"), like the real server
            plural = f"{spec.plural}.{spec.group}" if spec.group else spec.plural
            raise _error(
                404, "NotFound", f'{plural} "{name}" not found', name=name, group=spec.group, kind=spec.plural
            )
        return obj

    async def _serve_server_version(self, request: kmock.Request) -> Any:
        # The release whose rules this emulator follows (CEL rules with fieldPath, server-side apply, Tables).
        return {**await super()._serve_server_version(request), "major": "1", "minor": SERVER_MINOR,
                "gitVersion": f"v1.{SERVER_MINOR}.0", "buildDate": "2026-08-26T00:00:00Z", "goVersion": "go1.25.0"}

    async def _serve_version(self, request: kmock.Request) -> Any:
        # The core group's APIResourceList has groupVersion "v1" (kmock writes "/v1").
        result = await super()._serve_version(request)
        if request.resource is not None and request.resource.group == "":
            result["groupVersion"] = request.resource.version
        # Subresources are listed as "<plural>/<sub>" with no singular name and only get/patch/update;
        # /status has the parent's kind, /scale is an autoscaling/v1 Scale (as a CRD's scale is listed).
        for entry in result["resources"]:
            if "/" in entry["name"]:
                entry.update(singularName="", shortNames=[], categories=[], verbs=["get", "patch", "update"])
                if entry["name"].endswith("/scale"):
                    entry.update(group="autoscaling", version="v1", kind="Scale")
        return result

    # -- OpenAPI: only what clients read to learn that the server validates fields itself --

    def _openapi_v3(self, group_version: str) -> dict[str, Any] | None:
        """/openapi/v3 lists a document per group-version; each says, per resource, that its PATCH takes
        ``fieldValidation``. That is what kubectl and Helm check before they send ``fieldValidation=Strict`` and
        leave validation to the server; the documents carry no schemas (a client validating on its own, as
        ``kubectl apply --validate=true`` against a server without field validation, would find none)."""
        by_gv: dict[str, list[Resource]] = {}
        for spec in self._specs.values():
            key = f"api/{spec.version}" if not spec.group else f"apis/{spec.group}/{spec.version}"
            by_gv.setdefault(key, []).append(spec)
        if not group_version:
            return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={len(specs)}"}
                              for gv, specs in sorted(by_gv.items())}}
        specs = by_gv.get(group_version)
        if specs is None:
            return None
        paths: dict[str, Any] = {}
        for spec in specs:
            scope = "namespaces/{namespace}/" if spec.namespaced else ""
            gvk = {"group": spec.group, "version": spec.version, "kind": spec.kind}
            paths[f"/{group_version}/{scope}{spec.plural}/{{name}}"] = {"patch": {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}}
                               for name in ("dryRun", "fieldManager", "fieldValidation", "force")]}}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": f"v1.{SERVER_MINOR}.0"},
                "paths": paths, "components": {"schemas": {}}}

    # -- request plumbing --

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # The Namespace resource lives at /api/v1/namespaces[/{name}[/status|/finalize]], which kmock's
        # path parser reads as the *namespace prefix* of a namespaced path (and crashes on the bare
        # collection). Re-spell it as a namespaced path with a marker namespace; _handle() undoes that.
        # Also: a trailing slash is ignored, as by the real server; clients use both spellings
        # (the python client asks for "/api/v1/"; "/apis/" is asked for too), kmock routes only the bare one.
        path = raw_request.path
        user = self._authenticate(raw_request.headers.get("Authorization", ""))
        if user is None:
            return self._status_response(401, "Unauthorized", "Unauthorized")
        attrs = request_info(raw_request.method, path, dict(raw_request.rel_url.query))
        allowed, grant = authorize(self._policy(), user, attrs)
        if not allowed:
            message = forbidden_message(user, attrs)
            self.refused.append((user.name, message))
            return self._status_response(403, "Forbidden", message, name=attrs.name, group=attrs.api_group,
                                         kind=attrs.resource)
        if not user.superuser:
            self.used.add((user.name, attrs.verb, attrs.api_group if attrs.resource_request else "",
                           attrs.combined if attrs.resource_request else attrs.path, attrs.namespace, grant))
        _REQUEST_USER.set(user)  # this request's task only
        if raw_request.method == "GET" and (path == "/openapi/v3" or path.startswith("/openapi/v3/")):
            doc = self._openapi_v3(path.removeprefix("/openapi/v3").strip("/"))
            if doc is None:
                return self._status_response(404, "NotFound", "the server could not find the requested resource")
            return aiohttp.web.json_response(doc)
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and (
            len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
        ):
            path = "/api/v1/namespaces/~/namespaces" + "".join(f"/{p}" for p in parts[3:])
        elif len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path != raw_request.path:
            raw_request = raw_request.clone(
                rel_url=raw_request.rel_url.with_path(path).with_query(raw_request.rel_url.query)
            )
        return await super().__call__(raw_request)

    @staticmethod
    def _status_response(code: int, reason: str, message: str, **details: str) -> aiohttp.web.Response:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": message, "reason": reason, "code": code}
        if details:
            body["details"] = {k: v for k, v in details.items() if v}
        return aiohttp.web.json_response(body, status=code)

    # -- authentication and authorization (kube_rbac) --

    def _authenticate(self, header: str) -> User | None:
        """No credentials: system:anonymous. A bearer token: the user it was minted for; None (401) for an unknown
        token, or a ServiceAccount's token once the ServiceAccount is gone (the API server checks it exists)."""
        if not header:
            return ANONYMOUS
        scheme, _, token = header.partition(" ")
        user = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return None
        sa = user.service_account
        if sa is not None and self._current(SERVICE_ACCOUNTS, sa[0], sa[1]) is None:
            return None
        return user

    def mint_token(self, namespace: str, service_account: str) -> str:
        """A token for a ServiceAccount, as the TokenRequest API (or a projected volume) gives a pod."""
        token = f"sa-{namespace}-{service_account}-{uuid.uuid4().hex}"
        self._tokens[token] = service_account_user(namespace, service_account)
        return token

    def _policy(self) -> Policy:
        groups = {spec.ref for spec in self._specs.values() if spec.group == RBAC_GROUP}
        return Policy.of(obj.raw for (res, _, _), obj in self._objects.items() if res in groups and not obj.deleted)

    def _check_escalation(self, spec: Resource, obj: dict[str, Any]) -> None:
        """A Role or binding may grant only what its author holds, unless the author holds `escalate` (roles) or
        `bind` (the role a binding names) on it."""
        user = _REQUEST_USER.get()
        if user.superuser:
            return
        policy = self._policy()
        namespace = obj["metadata"].get("namespace") or "" if spec.namespaced else ""
        name = obj["metadata"].get("name", "")
        if spec.plural in ("roles", "clusterroles"):
            special = Attributes("escalate", True, api_group=RBAC_GROUP, resource=spec.plural, namespace=namespace,
                                 name=name)
            rules = list(obj.get("rules") or [])
        else:
            ref = obj.get("roleRef") or {}
            plural = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            special = Attributes("bind", True, api_group=RBAC_GROUP, resource=plural, namespace=namespace,
                                 name=ref.get("name", ""))
            _, rules = policy._role_rules(ref, namespace)
        if authorize(policy, user, special)[0]:
            return
        missing = escalation(policy, user, namespace, rules)
        if missing:
            what = f"{spec.plural}.{spec.group}"
            raise _error(403, "Forbidden", f'{what} "{name}" is forbidden: user "{user.name}" (groups='
                                           f'{list(user.groups)}) is attempting to grant RBAC permissions not '
                                           f'currently held:\n' + "\n".join(missing), name=name, group=spec.group,
                         kind=spec.plural)

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        return _as_served(await super()._render_error(exc))

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.namespace == "~" and request.resource == CORE_RESOURCES[0].ref:
            path = request.url.path.replace("/namespaces/~/namespaces", "/namespaces", 1)
            fixed = attrs.evolve(
                request, namespace=None, url=request.url.with_path(path).with_query(request.url.query)
            )
            for i in range(len(self._requests) - 1, -1, -1):  # keep kmock's request log truthful
                if self._requests[i] is request:
                    self._requests[i] = fixed
                    break
            request = fixed
        fault = self.faults.take(request) if self.faults is not None else None
        if fault is not None:  # answered, not raised: kmock would re-raise a raised error when the server stops
            return await self._render_error(fault)
        # Skip KubernetesEmulator._handle: it stores every write *before* any reaction is chosen.
        # Here the state changes only in the fallback handlers below, so a test's own reaction
        # (e.g. ``emulator['create v1/pods'] << 500``) really stands in for the server.
        return _as_served(await super(kmock.KubernetesEmulator, self)._handle(request))

    # -- writes: every write gets a new resourceVersion and one event in the log --

    def _next_rv(self) -> int:
        # resourceVersion: one cluster-wide counter, bumped on every write (etcd's revision).
        self._rv += 1
        return self._rv

    def _emit(
        self,
        spec: Resource,
        namespace: str | None,
        type_: str,
        obj: dict[str, Any],
        prev: dict[str, Any] | None,
    ) -> None:
        self._log.append(
            _Event(int(obj["metadata"]["resourceVersion"]), spec.ref, namespace, type_, obj, prev)
        )
        if len(self._log) > self.history_limit:
            self.compact(keep=self.history_limit // 2)
        self._changed.set()  # wake the open watches
        self._changed = asyncio.Event()
        self._wake_controllers()

    def compact(self, keep: int = 0) -> None:
        """Forget all but the last ``keep`` events, as etcd compaction does: older watches get 410 Gone."""
        drop = len(self._log) - keep
        if drop > 0:
            self._compacted_rv = self._log[drop - 1].rv
            del self._log[:drop]
        if keep == 0:
            self._compacted_rv = self._rv

    def _store_new(self, spec: Resource, namespace: str | None, body: dict[str, Any],
                   request: kmock.Request | None = None, fields_recorded: bool = False) -> dict[str, Any]:
        obj = _drop_nulls(copy.deepcopy(body))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            # generateName: the server appends 5 random characters (from its "safe" alphabet).
            while True:
                name = meta["generateName"] + "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
                if self._current(spec, namespace, name) is None:
                    break
        if not name:
            raise _error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        if self._current(spec, namespace, name) is not None:
            raise _error(
                409, "AlreadyExists", f'{spec.plural} "{name}" already exists', name=name, kind=spec.plural
            )
        # TypeMeta is always set on what the server returns, whatever the client sent.
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "uid"):
            meta.pop(field, None)  # system fields: whatever the client sent is ignored
        meta["name"] = name
        if spec.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1  # metadata.generation starts at 1 and counts spec changes
        if "status" in spec.subresources:
            obj.pop("status", None)  # with a status subresource, create ignores status (set it via /status)
        if spec.kind == "Namespace":  # the namespace strategy: an immutable name label, phase Active
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = name
            obj["status"] = {"phase": "Active"}
        elif spec.kind == "Pod":  # the pod strategy: a new pod is Pending until a kubelet says otherwise
            obj["status"] = {"phase": "Pending"}
        obj = self._admit(spec, request, obj, None)
        meta = obj["metadata"]
        if request is not None and not fields_recorded:
            record_update(None, obj, manager_of(request.params, dict(request.headers)), spec.api_version,
                          has_status="status" in spec.subresources)
        meta["resourceVersion"] = str(self._next_rv())
        key = self._key(spec, namespace, name)
        if key in self._objects:
            self._objects[key].create(obj)  # re-created after a deletion: kmock keeps the history
        else:
            self._objects[key] = obj
        self._emit(spec, meta.get("namespace"), "ADDED", obj, None)
        if spec is CRD_RESOURCE:
            self._serve_resource(Resource.from_crd(obj))
        refs = meta.get("ownerReferences") or []
        if refs and not any(self._exists(r.get("uid")) for r in refs):
            return self._store_delete(spec, obj)  # the collector removes an object whose owners are all gone
        return obj

    def _exists(self, uid: str | None) -> bool:
        return any(not s.deleted and s.raw["metadata"].get("uid") == uid for s in self._objects.values())

    def _store_update(
        self, spec: Resource, request: kmock.Request, old: dict[str, Any], new: dict[str, Any],
        fields_recorded: bool = False,
    ) -> dict[str, Any]:
        """Write a new version of an existing object (PATCH or PUT), keeping what clients cannot change."""
        if not isinstance(new, dict):
            raise _error(422, "Invalid", "the result of the update is not an object")
        new = _drop_nulls(new)
        new_meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        # Optimistic concurrency: a resourceVersion sent with the update must be the current one.
        sent_rv = new_meta.get("resourceVersion")
        if sent_rv is not None and sent_rv != old_meta["resourceVersion"]:
            raise _error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {spec.plural} "{old_meta["name"]}": '
                "the object has been modified; please apply your changes to the latest version and try again",
                name=old_meta["name"],
                kind=spec.plural,
            )
        if request.subresource == "status":
            # /status changes only .status; everything else comes from the stored object.
            new = {
                **{k: v for k, v in old.items() if k != "status"},
                **({"status": new["status"]} if "status" in new else {}),
            }
            new_meta = new["metadata"] = copy.deepcopy(old_meta)
        elif "status" in spec.subresources:
            # With a status subresource, the main resource ignores changes to .status.
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = old["status"]
        # System fields and identity are the server's: name, namespace, uid, creation time, deletion mark.
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ):
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        new["apiVersion"], new["kind"] = spec.api_version, spec.kind
        if old_meta.get("deletionTimestamp") and set(new_meta.get("finalizers") or []) - set(
            old_meta.get("finalizers") or []
        ):
            raise _error(
                422,
                "Invalid",
                "metadata.finalizers: Forbidden: "
                "no new finalizers can be added if the object is being deleted",
            )
        if not fields_recorded:  # the server's to keep (record_update below), whatever the client sent
            self._keep_managed_fields(old_meta, new_meta)
        new = self._admit(spec, request, new, old)
        new_meta = new["metadata"]
        if new == old:
            return old  # a no-op update writes nothing: same resourceVersion, no watch event
        if not fields_recorded:
            record_update(old, new, manager_of(request.params, dict(request.headers)), spec.api_version,
                          subresource=request.subresource or "", has_status="status" in spec.subresources)
        if _spec_part(new) != _spec_part(old):
            new_meta["generation"] = old_meta.get("generation", 1) + 1  # generation counts spec changes only
        new_meta["resourceVersion"] = str(self._next_rv())
        namespace = old_meta.get("namespace")
        self._objects[self._key(spec, namespace, old_meta["name"])].history.append(new)
        self._emit(spec, namespace, "MODIFIED", new, old)
        if spec is CRD_RESOURCE:
            self._serve_resource(Resource.from_crd(new))
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self._store_delete(spec, new)  # the last finalizer is gone: the deletion completes now
        return new

    @staticmethod
    def _keep_managed_fields(old_meta: dict[str, Any], new_meta: dict[str, Any]) -> None:
        if "managedFields" in old_meta:
            new_meta["managedFields"] = old_meta["managedFields"]
        else:
            new_meta.pop("managedFields", None)

    def _store_delete(self, spec: Resource, old: dict[str, Any]) -> dict[str, Any]:
        meta = old["metadata"]
        namespace = meta.get("namespace")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old  # already being deleted: nothing changes
            # Finalizers block deletion: the object only gets a deletion mark (and a new generation),
            # and disappears when the last finalizer is removed.
            new = copy.deepcopy(old)
            new["metadata"].update(
                deletionTimestamp=_now(),
                deletionGracePeriodSeconds=0,
                generation=meta.get("generation", 1) + 1,
                resourceVersion=str(self._next_rv()),
            )
            self._objects[self._key(spec, namespace, meta["name"])].history.append(new)
            self._emit(spec, namespace, "MODIFIED", new, old)
            return new
        gone = copy.deepcopy(
            old
        )  # the DELETED event carries the last state with the deletion's resourceVersion
        gone["metadata"]["resourceVersion"] = str(self._next_rv())
        self._objects[self._key(spec, namespace, meta["name"])].delete()
        self._emit(spec, namespace, "DELETED", gone, old)
        if spec is CRD_RESOURCE:
            self._unserve_crd(old)
        self._collect_dependents(meta["uid"])
        return gone

    # -- the controllers the API server's own tests rely on --

    def _collect_dependents(self, uid: str) -> None:
        """The garbage collector, background propagation: objects owned by a deleted object lose that owner
        reference, and are deleted when it was their last owner (kube-controller-manager does this shortly after;
        here it happens at once)."""
        for (res, _ns, _name), stored in list(self._objects.items()):
            if stored.deleted:
                continue
            obj = stored.raw
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            dependent = self._specs[res]
            left = [r for r in refs if r.get("uid") != uid]
            if left:
                new = copy.deepcopy(obj)
                new["metadata"]["ownerReferences"] = left
                new["metadata"]["resourceVersion"] = str(self._next_rv())
                self._objects[self._key(dependent, obj["metadata"].get("namespace"), obj["metadata"]["name"])
                              ].history.append(new)
                self._emit(dependent, obj["metadata"].get("namespace"), "MODIFIED", new, obj)
            else:
                self._store_delete(dependent, obj)

    def _crd_status(self, crd: dict[str, Any]) -> dict[str, Any]:
        # The CRD controllers accept its names and establish it at once (no other CRD here claims them).
        versions = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
        return {"conditions": [{"type": t, "status": "True", "reason": r, "message": m,
                                "lastTransitionTime": _now()}
                               for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                               ("Established", "InitialNamesAccepted",
                                                "the initial names have been accepted"))],
                "acceptedNames": crd["spec"]["names"], "storedVersions": versions}

    def _unserve_crd(self, crd: dict[str, Any]) -> None:
        # A deleted CRD takes its custom resources with it, and stops being served.
        spec = Resource.from_crd(crd)
        for (res, _ns, _name), stored in list(self._objects.items()):
            if res == spec.ref and not stored.deleted:
                gone = copy.deepcopy(stored.raw)
                gone["metadata"]["resourceVersion"] = str(self._next_rv())
                stored.delete()
                self._emit(spec, gone["metadata"].get("namespace"), "DELETED", gone, stored.raw)
        self._specs.pop(spec.ref, None)
        self._schemas.pop(spec.ref, None)
        self._columns.pop(spec.ref, None)
        self.resources.pop(spec.ref, None)

    # -- admission: what the server checks and fills in on every write --

    def _admit(self, spec: Resource, request: kmock.Request | None, obj: dict[str, Any],
               old: dict[str, Any] | None) -> dict[str, Any]:
        """A custom resource's schema (pruning, defaults, validation, CEL) and a CRD's own checks."""
        name = obj["metadata"].get("name", "")
        if spec.group == RBAC_GROUP and spec.plural in _RBAC_PLURALS:
            self._check_escalation(spec, obj)
        if spec is CRD_RESOURCE:
            errors = check_crd(obj)
            if errors:
                raise _invalid(spec, name, errors)
            return {**obj, "status": self._crd_status(obj)}
        schema = self._schemas.get(spec.ref)
        if schema is None:
            return obj
        schema.rules_enabled = self.validation_rules
        mode = (request.params.get("fieldValidation") if request is not None else None) or "Warn"
        if request is not None and request.subresource == "status":
            # A status write is checked against the status schema; the rest is the stored object's.
            admitted, unknown, errors = schema.admit(obj, old, mode)
            errors = [e for e in errors if e.field.startswith("status")]
            unknown = [u for u in unknown if u.startswith('unknown field "status')]
        else:
            admitted, unknown, errors = schema.admit(obj, old, mode)
            errors = [e for e in errors if not e.field.startswith("status")]
        if unknown and mode == "Strict":
            raise _error(400, "BadRequest", f'{spec.kind} in version "{spec.version}" cannot be handled as a '
                                            f'{spec.kind}: strict decoding error: {", ".join(unknown)}')
        if errors:
            raise _invalid(spec, name, errors)
        self._warnings.extend(unknown)
        return admitted

    # -- handlers (kmock fallbacks) --

    def _list_items(self, spec: Resource, request: kmock.Request) -> list[dict[str, Any]]:
        matches = _selector(request.params, None)
        items = [
            obj.raw
            for (res, ns, _), obj in self._objects.items()
            if res == spec.ref and not obj.deleted and (request.namespace is None or ns == request.namespace)
        ]
        # Lists come in key order (namespace, then name), as etcd returns them.
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return [obj for obj in items if matches(obj)]

    def _wants_table(self, spec: Resource, request: kmock.Request) -> bool:
        # kubectl get asks for a meta.k8s.io Table (and accepts plain JSON after it). Custom resources answer with
        # their CRD's printer columns; built-in kinds answer plain JSON here (kubectl then prints NAME and AGE).
        accept = next((v for k, v in request.headers.items() if k.lower() == "accept"), "")
        return spec.custom and spec.ref in self._columns and "as=Table" in accept

    def _table(self, spec: Resource, request: kmock.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The CRD table convertor: Name, the CRD's additionalPrinterColumns (Age when it names none), one row
        per object with its cells read by each column's jsonPath; dates shown as an age, as the server does."""
        columns = self._columns[spec.ref] or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                        "description": "Name must be unique within a namespace."}]
        definitions += [{"name": c["name"], "type": c["type"], "format": c.get("format", ""),
                         "description": c.get("description", ""), "priority": c.get("priority", 0)}
                        for c in columns]
        include = request.params.get("includeObject", "Metadata")
        rows = []
        for obj in items:
            cells: list[Any] = [obj["metadata"]["name"]]
            for c in columns:
                value = _dig(obj, c["jsonPath"])
                cells.append(_age(value) if c["type"] == "date" and isinstance(value, str) else value)
            row: dict[str, Any] = {"cells": cells}
            if include == "Object":
                row["object"] = obj
            elif include == "Metadata":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": obj["metadata"]}
            rows.append(row)
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(self._rv)},
                "columnDefinitions": definitions, "rows": rows}

    async def _serve_list(self, request: kmock.Request) -> Any:
        spec = self._spec(request)
        items = self._list_items(spec, request)
        if self._wants_table(spec, request):
            return self._table(spec, request, items)
        if not spec.custom:  # items of built-in lists carry no TypeMeta; custom resources' items do
            items = [{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")} for obj in items]
        # A list is a typed <Kind>List whose resourceVersion is the point to start a watch from.
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        spec = self._spec(request)
        assert request.name is not None
        obj = self._existing(spec, request.namespace, request.name)
        if request.subresource is None and self._wants_table(spec, request):
            return self._table(spec, request, [obj])
        return self._scale(spec, obj) if request.subresource == "scale" else obj

    async def _serve_create(self, request: kmock.Request) -> Any:
        spec = self._spec(request)
        if request.name is not None:
            raise _error(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        if spec.namespaced and request.namespace is None:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        body = request.data
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the request body is not a JSON object")
        sent_ns = (body.get("metadata") or {}).get("namespace")
        if spec.namespaced and sent_ns and sent_ns != request.namespace:
            raise _error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        self._warnings = []
        obj = self._store_new(spec, request.namespace, body, request)
        return kmock.Response(status=201, payload=obj, headers=self._warning_headers())  # 201 Created

    async def _serve_token_request(self, request: kmock.Request) -> Any:
        """The TokenRequest API (serviceaccounts/token): a token for the ServiceAccount, as the kubelet asks for
        one to project into a pod."""
        if request.name is None or request.subresource != "token":
            raise kmock.KubernetesEndpointNotFoundError()
        if self._spec(request) is not SERVICE_ACCOUNTS:
            raise _error(404, "NotFound", "the server could not find the requested resource")
        self._existing(SERVICE_ACCOUNTS, request.namespace, request.name)
        body = request.data if isinstance(request.data, dict) else {}
        seconds = int(((body.get("spec") or {}).get("expirationSeconds")) or 3600)
        expires = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds))
        return kmock.Response(status=201, payload={
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": request.name, "namespace": request.namespace},
            "spec": {"audiences": (body.get("spec") or {}).get("audiences") or [], "expirationSeconds": seconds},
            "status": {"token": self.mint_token(request.namespace or "", request.name),
                       "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}})

    # -- the controllers of kube-controller-manager and kube-scheduler that the end-to-end suite needs --

    def _wake_controllers(self) -> None:
        if self.controllers and not self._controllers_due:
            self._controllers_due = True
            # A fresh context: the controllers act as the system, not as the user whose write woke them.
            asyncio.get_running_loop().call_soon(self._run_controllers, context=contextvars.Context())

    def _objects_of(self, plural: str, group: str = "") -> tuple[Resource, list[dict[str, Any]]]:
        spec = next(r for r in self._specs.values() if r.plural == plural and r.group == group)
        return spec, [o.raw for (res, _, _), o in self._objects.items() if res == spec.ref and not o.deleted]

    def _system_write(self, spec: Resource, old: dict[str, Any], new: dict[str, Any]) -> None:
        if new == old:
            return
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        namespace = old["metadata"].get("namespace")
        self._objects[self._key(spec, namespace, old["metadata"]["name"])].history.append(new)
        self._emit(spec, namespace, "MODIFIED", new, old)

    def _run_controllers(self) -> None:
        self._controllers_due = False
        pods_spec, pods = self._objects_of("pods")
        _, nodes = self._objects_of("nodes")
        for pod in pods:  # kube-scheduler
            if (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
                continue
            node, why = schedule(pod, nodes, pods)
            new = copy.deepcopy(pod)
            conditions = [c for c in (new.setdefault("status", {}).get("conditions") or [])
                          if c.get("type") != "PodScheduled"]
            if node is not None:
                new["spec"]["nodeName"] = node
                conditions.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()})
            else:
                old_cond = next((c for c in (pod.get("status") or {}).get("conditions") or []
                                 if c.get("type") == "PodScheduled"), None)
                if old_cond is not None and old_cond.get("message") == why:
                    continue
                conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": why, "lastTransitionTime": _now()})
            new["status"]["conditions"] = conditions
            self._system_write(pods_spec, pod, new)
            pod.clear()
            pod.update(new)  # the next pod's fit counts this one
        deployments_spec, deployments = self._objects_of("deployments", "apps")
        for d in deployments:  # the Deployment controller (no ReplicaSets)
            ns = d["metadata"].get("namespace")
            names = (uuid.uuid4().hex[:5] for _ in iter(int, 1))
            create, delete, status = deployment_step(d, [p for p in pods if p["metadata"].get("namespace") == ns],
                                                     names)
            for name in delete:
                gone = self._current(pods_spec, ns, name)
                if gone is not None:
                    self._store_delete(pods_spec, gone)
            for body in create:
                self._store_new(pods_spec, ns, body)
            if d.get("status") != status:
                self._system_write(deployments_spec, d, {**copy.deepcopy(d), "status": status})
        services_spec, services = self._objects_of("services")
        slices_spec, _ = self._objects_of("endpointslices", "discovery.k8s.io")
        _, pods = self._objects_of("pods")
        for svc in services:  # the EndpointSlice controller
            ns = svc["metadata"].get("namespace")
            desired = endpoint_slice(svc, [p for p in pods if p["metadata"].get("namespace") == ns])
            if desired is None:
                continue
            current = self._current(slices_spec, ns, desired["metadata"]["name"])
            if current is None:
                self._store_new(slices_spec, ns, desired)
            elif {k: current.get(k) for k in ("endpoints", "ports")} != {k: desired[k] for k in ("endpoints", "ports")}:
                self._system_write(slices_spec, current, {**copy.deepcopy(current), "endpoints": desired["endpoints"],
                                                          "ports": desired["ports"]})

    def _warning_headers(self) -> dict[str, str | None]:
        # The server's warnings (an unknown field under fieldValidation=Warn) are `Warning: 299 - "..."` headers.
        # None when there are none: kmock merges a handler's headers into those of its earlier answers.
        return {"Warning": ", ".join(f"299 - {json.dumps(w)}" for w in self._warnings) if self._warnings else None}

    async def _serve_update(self, request: kmock.Request) -> Any:  # PATCH
        spec = self._spec(request)
        assert request.name is not None
        self._warnings = []
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        if content_type.split(";")[0].strip().lower() == "application/apply-patch+yaml":
            return self._serve_apply(spec, request)
        old = self._existing(spec, request.namespace, request.name)
        scale = request.subresource == "scale"
        target = self._scale(spec, old) if scale else old  # a /scale patch applies to the Scale object
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        content_type = content_type.split(";")[0].strip().lower()
        patch = request.data
        if content_type == "application/json-patch+json":  # RFC 6902, a list of operations
            if not isinstance(patch, list):
                raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                new = jsonpatch.apply_patch(copy.deepcopy(target), patch)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                # A failed "test" (or a bad path) rejects the whole patch: 422 Invalid, nothing written.
                raise _error(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
                ) from None
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if spec.custom and not scale and content_type == "application/strategic-merge-patch+json":
                # Custom resources have no patch-merge keys, so the server refuses strategic merge
                # (but not on /scale: the Scale is a built-in autoscaling/v1 type).
                raise _error(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                )
            if not isinstance(patch, dict):
                raise _error(400, "BadRequest", "a merge patch must be a JSON object")
            new = _merge_patch(target, patch)  # (strategic merge is approximated: lists are replaced)
        else:
            raise _error(415, "UnsupportedMediaType", f"unsupported patch type: {content_type or 'none'}")
        result = self._write(spec, request, old, new)
        return kmock.Response(payload=result, headers=self._warning_headers())

    def _serve_apply(self, spec: Resource, request: kmock.Request) -> Any:
        """Server-side apply: create the object, or merge the manager's configuration into it (kube_fields)."""
        assert request.name is not None
        manager = request.params.get("fieldManager")
        if not manager:
            raise _error(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: "
                                         "is required for apply patch")
        try:
            config = parse_apply_body(request.data, request.text)
        except (ValueError, yaml.YAMLError) as exc:
            raise _error(400, "BadRequest", f"error decoding YAML: {exc}") from None
        meta = config.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise _error(400, "BadRequest", "the name of the object does not match the name on the URL")
        if config.get("kind") != spec.kind or config.get("apiVersion") != spec.api_version:
            raise _error(400, "BadRequest", f"the apply configuration's kind and apiVersion must be {spec.kind} "
                                            f"and {spec.api_version}")
        live = self._current(spec, request.namespace, request.name)
        force = request.params.get("force", "false").lower() == "true"
        has_status = "status" in spec.subresources
        try:
            merged = apply(live, config, manager, spec.api_version, force=force,
                           subresource=request.subresource or "", has_status=has_status)
        except ApplyConflict as exc:
            raise _error(409, "Conflict", str(exc), name=request.name, group=spec.group, kind=spec.plural) from None
        if live is None:
            merged.setdefault("metadata", {})["name"] = request.name
            obj = self._store_new(spec, request.namespace, merged, request, fields_recorded=True)
            return kmock.Response(status=201, payload=obj, headers=self._warning_headers())
        result = self._store_update(spec, request, live, merged, fields_recorded=True)
        return kmock.Response(payload=result, headers=self._warning_headers())

    async def _serve_replace(self, request: kmock.Request) -> Any:  # PUT
        if request.resource is None or request.name is None:
            raise kmock.KubernetesEndpointNotFoundError()
        spec = self._spec(request)
        old = self._existing(spec, request.namespace, request.name)
        body = request.data
        if not isinstance(body, dict):
            raise _error(400, "BadRequest", "the request body is not a JSON object")
        if (body.get("metadata") or {}).get("name") not in (None, request.name):
            raise _error(400, "BadRequest", "the name of the object does not match the name on the URL")
        self._warnings = []
        result = self._write(spec, request, old, copy.deepcopy(body))
        return kmock.Response(payload=result, headers=self._warning_headers())

    def _write(
        self, spec: Resource, request: kmock.Request, old: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        if request.subresource != "scale":
            return self._store_update(spec, request, old, new)
        # Writing a CRD's /scale (apiextensions' scaleUpdatedObjectInfo) sets only specReplicasPath in
        # the object, from the new Scale's spec.replicas (absent is 0, negative is 422); the rest of the
        # Scale is ignored, except a resourceVersion, which is a precondition (stale: 409 Conflict).
        # It is a spec change like any other: new generation, new resourceVersion, a MODIFIED event.
        assert spec.scale is not None
        if not isinstance(new, dict):
            raise _error(422, "Invalid", "the result of the update is not an object")
        replicas = (new.get("spec") or {}).get("replicas")
        replicas = 0 if replicas is None else replicas
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise _error(
                422,
                "Invalid",
                f'Scale.autoscaling "{old["metadata"]["name"]}" is invalid: spec.replicas: '
                f"Invalid value: {json.dumps(replicas)}: must be greater than or equal to 0",
            )
        obj = copy.deepcopy(old)
        *parents, leaf = spec.scale[0].lstrip(".").split(".")
        at = obj
        for step in parents:  # missing (or non-object) parents on the path are created
            if not isinstance(at.get(step), dict):
                at[step] = {}
            at = at[step]
        at[leaf] = replicas
        sent_rv = (new.get("metadata") or {}).get("resourceVersion")
        if sent_rv:
            obj["metadata"]["resourceVersion"] = sent_rv
        return self._scale(spec, self._store_update(spec, request, old, obj))

    def _scale(self, spec: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        # A CRD's /scale reads as an autoscaling/v1 Scale (apiextensions' scaleFromCustomResource): the
        # parent's identity, spec.replicas and status.replicas from their paths (absent: 0), and
        # status.selector from labelSelectorPath when the CRD names one and the object has it.
        assert spec.scale is not None
        spec_path, status_path, selector_path = spec.scale
        meta = obj["metadata"]
        status: dict[str, Any] = {"replicas": _dig(obj, status_path) or 0}
        selector = _dig(obj, selector_path) if selector_path else None
        if selector:
            status["selector"] = selector
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": _dig(obj, spec_path) or 0},
            "status": status,
        }

    async def _serve_delete(self, request: kmock.Request) -> Any:
        spec = self._spec(request)
        assert request.name is not None
        if request.subresource is not None:  # subresources have no delete verb (see discovery)
            raise _error(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        old = self._existing(spec, request.namespace, request.name)
        # DeleteOptions.preconditions: delete only that uid / that resourceVersion.
        pre = (request.data.get("preconditions") or {}) if isinstance(request.data, dict) else {}
        for field in ("uid", "resourceVersion"):
            if pre.get(field) and pre[field] != old["metadata"].get(field):
                raise _error(
                    409,
                    "Conflict",
                    f"Precondition failed: {field} in precondition: {pre[field]}, "
                    f"{field} in object meta: {old['metadata'].get(field)}",
                    name=request.name,
                    kind=spec.plural,
                )
        return self._store_delete(spec, old)

    async def _serve_delete_collection(self, request: kmock.Request) -> Any:
        if request.resource is None or request.name is not None:
            raise kmock.KubernetesEndpointNotFoundError()
        spec = self._spec(request)
        items = self._list_items(spec, request)  # same label/field selectors as a list
        for obj in items:
            self._store_delete(spec, obj)
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _to_watch_event(
        self, event: _Event, matches: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        # The watch cache's rule for filtered watches: an object that starts matching is ADDED,
        # one that stops matching is DELETED (its previous state, at the new resourceVersion).
        cur = event.type != "DELETED" and matches(event.obj)
        old = event.prev is not None and matches(event.prev)
        if cur and not old:
            return {"type": "ADDED", "object": event.obj}
        if cur and old:
            return {"type": "MODIFIED", "object": event.obj}
        if old:
            prev = copy.deepcopy(event.prev)
            prev["metadata"]["resourceVersion"] = str(event.rv)
            return {"type": "DELETED", "object": prev}
        return None

    def _serve_watch(self, request: kmock.Request) -> kmock.Response:
        # A watch answers 200 with a JSON stream: one {"type", "object"} event per line.
        return kmock.Response(
            headers={"Content-Type": "application/json"}, payload=self._watch_stream(request)
        )

    async def _watch_stream(self, request: kmock.Request) -> AsyncIterator[Any]:
        spec = self._spec(request)
        params = request.params
        matches = _selector(params, request.name)
        rv_param = params.get("resourceVersion", "")
        try:
            since = int(rv_param) if rv_param not in ("", "0") else None
            timeout = float(params.get("timeoutSeconds") or self.default_watch_timeout)
        except ValueError:
            raise _error(
                400, "BadRequest", f"invalid resourceVersion or timeoutSeconds: {rv_param!r}"
            ) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.watch_count += 1
        try:
            yield b""  # send the headers now: the stream is open even if no event ever comes
            if since is None:
                # No resourceVersion ("" or "0"): the current state as synthetic ADDED events, then changes.
                since = self._rv
                for obj in self._list_items(spec, request):
                    if request.name is None or obj["metadata"]["name"] == request.name:
                        yield {"type": "ADDED", "object": obj}
            elif since < self._compacted_rv:
                # Too old to resume from: the stream reports 410 Gone (the client must re-list).
                yield {
                    "type": "ERROR",
                    "object": {
                        "apiVersion": "v1",
                        "kind": "Status",
                        "metadata": {},
                        "status": "Failure",
                        "code": 410,
                        "reason": "Expired",
                        "message": f"too old resource version: {since} ({self._compacted_rv})",
                    },
                }
                return
            # Then every change after `since`, in order, until timeoutSeconds passes or the server stops.
            while not self._closing:
                changed = self._changed
                log = self._log
                start = bisect.bisect_right(log, since, key=lambda e: e.rv)
                for event in log[start:]:
                    since = event.rv
                    if event.resource != spec.ref or (
                        request.namespace is not None and event.namespace != request.namespace
                    ):
                        continue
                    out = self._to_watch_event(event, matches)
                    if out is not None:
                        yield out
                if self._changed is not changed:
                    continue  # more events arrived while we were yielding
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return  # timeoutSeconds: the server ends the stream cleanly
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    return
        finally:
            self.watch_count -= 1

    def fail_writes(self, plan: Iterable[int], plurals: Iterable[str] = ()) -> None:
        """Fault injection: answer the next writes as ``plan`` says (see ``WriteFaults``)."""
        self.faults = WriteFaults(deque(plan), frozenset(plurals))

    def close_watches(self) -> None:
        """End all open watch streams (before the server stops)."""
        self._closing = True
        self._changed.set()


# --- the server thread -----------------------------------------------------------------------------


@functools.cache
def _certificate_authority() -> trustme.CA:
    """One test CA per process; each emulator gets a server certificate from it for 127.0.0.1."""
    return trustme.CA()


class KubeAPI:
    """The emulator served on http://127.0.0.1:<free port> from a background thread, plus a kubeconfig.

    ``start()`` returns once the port accepts connections; ``stop()`` ends open watches, closes the
    server, joins the thread and removes the kubeconfig. Usable as a context manager.
    """

    def __init__(
        self, *, namespace: str = "default", resources: Iterable[Resource] = (), startup_timeout: float = 10.0,
        validation_rules: bool = True, controllers: bool = False,
    ) -> None:
        self.namespace = namespace
        self.validation_rules = validation_rules
        self.controllers = controllers
        self._extra = tuple(resources)
        self._startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stopping: asyncio.Event | None = None
        self._tmpdir: Path | None = None
        self.emulator: KubeEmulator | None = None  # owned by the server's loop: touch it via call()
        self.port: int = 0
        self.url: str = ""
        self.kubeconfig_path: Path = Path()

    def start(self) -> KubeAPI:
        if self._thread is not None:
            raise RuntimeError("KubeAPI is already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._thread_main, args=(sock,), name=f"kube-api-{self.port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._startup_timeout) or self._failure is not None:
            self.stop()
            raise RuntimeError(f"the Kubernetes API emulator did not start: {self._failure!r}")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="kube-api-"))
        self.kubeconfig_path = self._tmpdir / "kubeconfig"
        self.kubeconfig_path.write_text(json.dumps(self.kubeconfig(), indent=2))
        return self

    @staticmethod
    def _server_ssl() -> ssl.SSLContext:
        # TLS, as every API server serves: Go clients (kubectl, Helm) send bearer tokens only over https.
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        _certificate_authority().issue_cert("127.0.0.1", "localhost").configure_cert(context)
        return context

    @property
    def ca_pem(self) -> bytes:
        """The certificate authority that signed the emulator's serving certificate."""
        return _certificate_authority().cert_pem.bytes()

    @property
    def verify(self) -> ssl.SSLContext:
        """For a raw HTTPS client (httpx ``verify=``): trusts the emulator's certificate."""
        context = ssl.create_default_context()
        _certificate_authority().configure_trust(context)
        return context

    def kubeconfig(self, token: str = ADMIN_TOKEN, user: str = "admin") -> dict[str, Any]:
        """https with the test CA, a bearer token (the cluster admin's unless given), one context with the default
        namespace."""
        ca = base64.b64encode(self.ca_pem).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "kube-emulator",
                          "cluster": {"server": self.url, "certificate-authority-data": ca}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kube-emulator",
                    "context": {"cluster": "kube-emulator", "user": user, "namespace": self.namespace},
                }
            ],
            "current-context": "kube-emulator",
        }

    @property
    def admin_headers(self) -> dict[str, str]:
        """For a raw HTTP request as the cluster admin."""
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def kubeconfig_for(self, namespace: str, service_account: str) -> Path:
        """A kubeconfig with a token of a ServiceAccount: what a pod running as it would send. The token stops
        working when the ServiceAccount is deleted."""
        token = self.call(lambda: self.emulator.mint_token(namespace, service_account))  # type: ignore[union-attr]
        assert self._tmpdir is not None, "start() first"
        path = self._tmpdir / f"kubeconfig-{namespace}-{service_account}"
        path.write_text(json.dumps(self.kubeconfig(token, f"{namespace}:{service_account}"), indent=2))
        return path

    def permissions_used(self, user: str) -> set[tuple[str, str, str, str]]:
        """(verb, API group, resource[/subresource] or non-resource path, namespace) that ``user`` was allowed."""
        used = self.call(lambda: set(self.emulator.used))  # type: ignore[union-attr]
        return {(verb, group, resource, ns) for name, verb, group, resource, ns, _ in used if name == user}

    def refusals(self) -> list[tuple[str, str]]:
        """(user, the server's 403 message) for every request RBAC refused, in order."""
        return self.call(lambda: list(self.emulator.refused))  # type: ignore[union-attr]

    def _thread_main(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sock))
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()
            sock.close()

    async def _serve(self, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        emulator = KubeEmulator(validation_rules=self.validation_rules, controllers=self.controllers)
        for spec in self._extra:
            emulator.register(spec)
        self.emulator = emulator
        # Not kmock.Server: it also patches aiohttp's resolver process-wide (LIFO-only), which other
        # aiohttp clients in this process (kopf) would then go through. A plain aiohttp server suffices.
        async with emulator:  # kmock's handler context: request errors are answered, not raised
            server = aiohttp.web.Server(emulator, handler_cancellation=True)  # client gone: handler cancelled
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
            await runner.setup()
            try:
                await aiohttp.web.SockSite(runner, sock, ssl_context=self._server_ssl()).start()
                self._ready.set()
                await self._stopping.wait()
                emulator.close_watches()
                await asyncio.sleep(0)  # let the watch generators see it and finish their streams
            finally:
                await runner.cleanup()

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` on the server's loop (awaiting it if it is a coroutine) and return its result."""
        if self._loop is None or self.emulator is None:
            raise RuntimeError("KubeAPI is not running")

        async def run() -> Any:
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def register(self, spec: Resource) -> None:
        """Serve one more resource (e.g. ``TTSCLUSTER``) and list it in discovery; before or after start()."""
        if self.emulator is None:
            self._extra += (spec,)
        else:
            self.call(lambda: self.emulator.register(spec))  # type: ignore[union-attr]

    def fail_writes(self, plan: Iterable[int], plurals: Iterable[str] = ()) -> None:
        """Answer the next writes with errors: ``plan`` lists a status per matching write, 0 to serve it."""
        statuses = list(plan)
        self.call(lambda: self.emulator.fail_writes(statuses, plurals))  # type: ignore[union-attr]

    def fault_counts(self) -> dict[str, Any]:
        """How many writes the fault plan matched and answered with each status."""
        faults = self.call(lambda: self.emulator.faults)  # type: ignore[union-attr]
        return faults.counts() if faults is not None else {"matched": 0, "injected": {}, "left": 0}

    def wait_watching(self, count: int = 1, timeout: float = 5.0) -> None:
        """Block until at least ``count`` watch streams are open on the server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call(lambda: self.emulator.watch_count) >= count:  # type: ignore[union-attr]
                return
            time.sleep(0.01)
        raise TimeoutError(f"fewer than {count} watch streams opened within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop already ended
        if self._thread is not None:
            self._thread.join(timeout)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
