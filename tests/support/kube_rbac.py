"""Authentication and RBAC for the API-server emulator, with the real server's semantics.

What a request is (``request_info``, after the API server's RequestInfoFactory), who sends it (bearer tokens the
emulator minted for ServiceAccounts, or its admin token), and whether the Roles, ClusterRoles and their bindings
allow it (``authorize``, after the RBAC authorizer's rule matching). Creating or changing a Role or a binding is
refused when it would grant more than its author holds (``escalation``: privilege escalation prevention), unless
the author holds the ``escalate`` or ``bind`` verb. Everything here is a pure function of its arguments.

https://kubernetes.io/docs/reference/access-authn-authz/rbac/
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ADMIN", "ANONYMOUS", "BOOTSTRAP_CLUSTER_ROLES", "Attributes", "Grant", "Policy", "User",
           "authorize", "escalation", "forbidden_message", "request_info", "service_account_user"]

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def superuser(self) -> bool:
        return "system:masters" in self.groups

    @property
    def service_account(self) -> tuple[str, str] | None:
        """(namespace, name) when this user is a ServiceAccount."""
        parts = self.name.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
            return parts[2], parts[3]
        return None


ADMIN = User("kube-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def service_account_user(namespace: str, name: str) -> User:
    return User(f"system:serviceaccount:{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"))


@dataclass(frozen=True)
class Attributes:
    """What authorization sees of a request."""

    verb: str
    resource_request: bool
    path: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""

    @property
    def combined(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_METHOD_VERBS = {"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def request_info(method: str, path: str, query: dict[str, str]) -> Attributes:
    """The API server's reading of a URL: a resource request when it names at least a resource under /api/{v} or
    /apis/{group}/{v}; anything else (discovery, /version, /openapi) is a non-resource URL."""
    parts = [p for p in path.strip("/").split("/") if p]
    verb = _METHOD_VERBS.get(method.upper(), method.lower())
    non_resource = Attributes(verb=method.lower(), resource_request=False, path="/" + "/".join(parts))
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    rest = parts[1:]
    group = ""
    if parts[0] == "apis":
        if len(rest) < 3:  # /apis/{group}/{version}: discovery
            return non_resource
        group, rest = rest[0], rest[1:]
    rest = rest[1:]  # the version
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in ("status", "finalize"):
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if resource == "namespaces" and name:
        namespace = name  # the namespace object itself
    if verb == "get" and not name:
        verb = "watch" if query.get("watch") in ("1", "true") else "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    return Attributes(verb=verb, resource_request=True, path=non_resource.path, api_group=group,
                      resource=resource, subresource=subresource, namespace=namespace, name=name)


@dataclass(frozen=True)
class Grant:
    """Which binding and which rule of its role allowed a request."""

    binding: str  # "RoleBinding ns/name" or "ClusterRoleBinding name"
    role: str  # "Role ns/name" or "ClusterRole name"
    rule: int


@dataclass
class Policy:
    """The RBAC objects stored in the cluster, plus the built-in bootstrap roles."""

    cluster_roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster_role_bindings: list[dict[str, Any]] = field(default_factory=list)
    roles: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (namespace, name)
    role_bindings: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, role in BOOTSTRAP_CLUSTER_ROLES.items():
            self.cluster_roles.setdefault(name, role)
        self.cluster_role_bindings.extend(BOOTSTRAP_BINDINGS)

    @staticmethod
    def of(objects: Iterable[dict[str, Any]]) -> Policy:
        policy = Policy()
        for obj in objects:
            kind, meta = obj.get("kind"), obj["metadata"]
            if kind == "ClusterRole":
                policy.cluster_roles[meta["name"]] = obj
            elif kind == "ClusterRoleBinding":
                policy.cluster_role_bindings.append(obj)
            elif kind == "Role":
                policy.roles[(meta.get("namespace", ""), meta["name"])] = obj
            elif kind == "RoleBinding":
                policy.role_bindings.append(obj)
        return policy

    def _role_rules(self, ref: dict[str, Any], namespace: str) -> tuple[str, list[dict[str, Any]]]:
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(ref.get("name", ""))
            return f"ClusterRole {ref.get('name')}", list((role or {}).get("rules") or [])
        role = self.roles.get((namespace, ref.get("name", "")))
        return f"Role {namespace}/{ref.get('name')}", list((role or {}).get("rules") or [])

    def rules_for(self, user: User, namespace: str) -> Iterator[tuple[Grant, dict[str, Any]]]:
        """Every rule that applies to ``user`` for a request in ``namespace`` ("" for cluster scope), with its
        source: ClusterRoleBindings everywhere, a RoleBinding only in its own namespace."""
        for binding in self.cluster_role_bindings:
            if _applies(binding, user, ""):
                role, rules = self._role_rules(binding.get("roleRef") or {}, "")
                for i, rule in enumerate(rules):
                    yield Grant(f"ClusterRoleBinding {binding['metadata']['name']}", role, i), rule
        if not namespace:
            return
        for binding in self.role_bindings:
            meta = binding["metadata"]
            if meta.get("namespace") == namespace and _applies(binding, user, namespace):
                role, rules = self._role_rules(binding.get("roleRef") or {}, namespace)
                for i, rule in enumerate(rules):
                    yield Grant(f"RoleBinding {namespace}/{meta['name']}", role, i), rule


def _applies(binding: dict[str, Any], user: User, namespace: str) -> bool:
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == user.name:
            return True
        if kind == "Group" and name in user.groups:
            return True
        if kind == "ServiceAccount":
            # A RoleBinding's ServiceAccount subject without a namespace means the binding's own namespace.
            sa_namespace = subject.get("namespace") or namespace
            if user.service_account == (sa_namespace, name):
                return True
    return False


def _matches(values: Iterable[str], wanted: str) -> bool:
    values = list(values)
    return "*" in values or wanted in values


def _resource_matches(rule_resources: Iterable[str], attrs: Attributes) -> bool:
    for r in rule_resources:
        if r == "*" or r == attrs.combined:
            return True
        if attrs.subresource and r == f"*/{attrs.subresource}":
            return True
    return False


def _url_matches(rule_urls: Iterable[str], path: str) -> bool:
    for u in rule_urls:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def rule_allows(rule: dict[str, Any], attrs: Attributes) -> bool:
    if not _matches(rule.get("verbs") or [], attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs") or [], attrs.path)
    names = rule.get("resourceNames") or []
    return (_matches(rule.get("apiGroups") or [], attrs.api_group)
            and _resource_matches(rule.get("resources") or [], attrs)
            and (not names or attrs.name in names))


def authorize(policy: Policy, user: User, attrs: Attributes) -> tuple[bool, Grant | None]:
    """(allowed, the grant that allowed it: None for a superuser or a refusal)."""
    if user.superuser:
        return True, None
    # Non-resource URLs are granted only cluster-wide.
    namespace = attrs.namespace if attrs.resource_request else ""
    for grant, rule in policy.rules_for(user, namespace):
        if rule_allows(rule, attrs):
            return True, grant
    return False, None


def forbidden_message(user: User, attrs: Attributes) -> str:
    """The API server's wording for a 403."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    what = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f'{what} "{attrs.name}"' if attrs.name else what
    scope = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (f'{subject} is forbidden: User "{user.name}" cannot {attrs.verb} resource "{attrs.combined}" '
            f'in API group "{attrs.api_group}" {scope}')


def _split(rule: dict[str, Any]) -> Iterator[Attributes]:
    """A rule broken into one request per (group, resource, verb, name), as coverage is checked."""
    for verb in rule.get("verbs") or []:
        for url in rule.get("nonResourceURLs") or []:
            yield Attributes(verb=verb, resource_request=False, path=url)
        for group in rule.get("apiGroups") or []:
            for combined in rule.get("resources") or []:
                resource, _, sub = combined.partition("/")
                for name in rule.get("resourceNames") or [""]:
                    yield Attributes(verb=verb, resource_request=True, api_group=group, resource=resource,
                                     subresource=sub, name=name)


def _covers(owner: dict[str, Any], wanted: Attributes) -> bool:
    """Whether one of the author's rules covers one broken-down rule: a "*" is covered only by a "*"."""
    if not (_matches(owner.get("verbs") or [], wanted.verb)):
        return False
    if not wanted.resource_request:
        urls = owner.get("nonResourceURLs") or []
        return _url_matches(urls, wanted.path) if wanted.path != "*" else "*" in urls
    names = owner.get("resourceNames") or []
    return (_matches(owner.get("apiGroups") or [], wanted.api_group)
            and _resource_matches(owner.get("resources") or [], wanted)
            and (not names or (wanted.name != "" and wanted.name in names)))


def escalation(policy: Policy, user: User, namespace: str, rules: list[dict[str, Any]]) -> list[str]:
    """What ``rules`` (a Role's, or the role a binding names) grant in ``namespace`` that ``user`` does not hold,
    one line per broken-down permission; empty when the user may grant them."""
    if user.superuser:
        return []
    held = [rule for _, rule in policy.rules_for(user, namespace)]
    missing = []
    for rule in rules:
        for wanted in _split(rule):
            if not any(_covers(owner, wanted) for owner in held):
                missing.append(_describe(wanted))
    return missing


def _describe(a: Attributes) -> str:
    if not a.resource_request:
        return f"{{NonResourceURLs:[{a.path}], Verbs:[{a.verb}]}}"
    names = f", ResourceNames:[{a.name}]" if a.name else ""
    return f"{{APIGroups:[{a.api_group!r}], Resources:[{a.combined!r}]{names}, Verbs:[{a.verb!r}]}}"


# The API server's own policy that every cluster has (a subset: what clients here touch).
BOOTSTRAP_CLUSTER_ROLES: dict[str, dict[str, Any]] = {
    "system:discovery": {"kind": "ClusterRole", "metadata": {"name": "system:discovery"}, "rules": [
        {"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                               "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]}]},
    "system:public-info-viewer": {"kind": "ClusterRole", "metadata": {"name": "system:public-info-viewer"}, "rules": [
        {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}]},
}
BOOTSTRAP_BINDINGS: list[dict[str, Any]] = [
    {"kind": "ClusterRoleBinding", "metadata": {"name": "system:discovery"},
     "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "system:discovery"},
     "subjects": [{"kind": "Group", "name": "system:authenticated"}]},
    {"kind": "ClusterRoleBinding", "metadata": {"name": "system:public-info-viewer"},
     "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "system:public-info-viewer"},
     "subjects": [{"kind": "Group", "name": "system:authenticated"},
                  {"kind": "Group", "name": "system:unauthenticated"}]},
]
