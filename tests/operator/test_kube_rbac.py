"""The emulator's authentication and RBAC: the API server's request attributes, rule matching, binding scope,
escalation prevention, and its answers (401, 403 in the server's words) over real HTTPS clients."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import kubernetes
import pytest
from kubernetes.client import CoreV1Api, RbacAuthorizationV1Api

from support.kube_emulator import KubeAPI
from support.kube_rbac import ANONYMOUS, Policy, authorize, escalation, request_info, service_account_user

NS = "default"
SA = service_account_user(NS, "bot")


def role(name: str, rules: list[dict], namespace: str | None = NS) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": "Role" if namespace else "ClusterRole", "metadata": meta, "rules": rules}


def binding(name: str, role_kind: str, role_name: str, subjects: list[dict], namespace: str | None = NS) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"kind": "RoleBinding" if namespace else "ClusterRoleBinding", "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
            "subjects": subjects}


BOT = {"kind": "ServiceAccount", "name": "bot"}  # a RoleBinding's subject without namespace: the binding's own


@pytest.mark.unit
@pytest.mark.parametrize(("method", "path", "query", "want"), [
    ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"}, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods/p1", {}, ("get", "", "pods", "", "default", "p1")),
    ("PATCH", "/api/v1/namespaces/default/pods/p1/status", {}, ("patch", "", "pods", "status", "default", "p1")),
    ("DELETE", "/api/v1/namespaces/default/pods", {}, ("deletecollection", "", "pods", "", "default", "")),
    ("POST", "/apis/apps/v1/namespaces/x/deployments", {}, ("create", "apps", "deployments", "", "x", "")),
    ("PUT", "/apis/tts-cluster.io/v1alpha1/namespaces/x/ttsclusters/a/scale", {},
     ("update", "tts-cluster.io", "ttsclusters", "scale", "x", "a")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/x", {}, ("get", "", "namespaces", "", "x", "x")),
    ("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {},
     ("list", "apiextensions.k8s.io", "customresourcedefinitions", "", "", "")),
])
def test_request_attributes_as_the_server_reads_them(method, path, query, want):
    a = request_info(method, path, query)
    assert a.resource_request
    assert (a.verb, a.api_group, a.resource, a.subresource, a.namespace, a.name) == want


@pytest.mark.unit
@pytest.mark.parametrize("path", ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version",
                                  "/openapi/v3/apis/apps/v1"])
def test_discovery_and_version_are_non_resource_urls(path):
    a = request_info("GET", path, {})
    assert not a.resource_request and a.verb == "get" and a.path == path


@pytest.mark.unit
def test_a_role_binding_grants_only_in_its_namespace_and_subject_namespace_defaults_to_it():
    policy = Policy.of([role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
                        binding("b", "Role", "r", [BOT])])
    assert authorize(policy, SA, request_info("GET", "/api/v1/namespaces/default/pods", {}))[0]
    assert not authorize(policy, SA, request_info("GET", "/api/v1/namespaces/other/pods", {}))[0]
    assert not authorize(policy, SA, request_info("GET", "/api/v1/pods", {}))[0]  # cluster scope
    assert not authorize(policy, SA, request_info("GET", "/api/v1/namespaces/default/pods", {"watch": "1"}))[0]
    other = service_account_user("other", "bot")  # same name, another namespace
    assert not authorize(policy, other, request_info("GET", "/api/v1/namespaces/default/pods", {}))[0]


@pytest.mark.unit
def test_a_cluster_role_through_a_role_binding_is_namespaced_and_through_a_cluster_binding_is_not():
    rules = [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]
    namespaced = Policy.of([role("c", rules, None), binding("b", "ClusterRole", "c", [BOT])])
    assert not authorize(namespaced, SA, request_info("GET", "/api/v1/namespaces", {}))[0]
    wide = Policy.of([role("c", rules, None),
                      binding("b", "ClusterRole", "c", [{**BOT, "namespace": NS}], None)])
    assert authorize(wide, SA, request_info("GET", "/api/v1/namespaces", {}))[0]


@pytest.mark.unit
@pytest.mark.parametrize(("rule", "allowed"), [
    ({"apiGroups": ["tts-cluster.io"], "resources": ["ttsclusters"], "verbs": ["patch"]}, False),
    ({"apiGroups": ["tts-cluster.io"], "resources": ["ttsclusters/status"], "verbs": ["patch"]}, True),
    ({"apiGroups": ["tts-cluster.io"], "resources": ["*/status"], "verbs": ["patch"]}, True),
    ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, True),
    ({"apiGroups": ["tts-cluster.io"], "resources": ["ttsclusters/status"], "verbs": ["patch"],
      "resourceNames": ["a"]}, True),
    ({"apiGroups": ["tts-cluster.io"], "resources": ["ttsclusters/status"], "verbs": ["patch"],
      "resourceNames": ["b"]}, False),
    ({"apiGroups": [""], "resources": ["ttsclusters/status"], "verbs": ["patch"]}, False),
])
def test_rule_matching_of_groups_subresources_wildcards_and_names(rule, allowed):
    policy = Policy.of([role("r", [rule]), binding("b", "Role", "r", [BOT])])
    a = request_info("PATCH", "/apis/tts-cluster.io/v1alpha1/namespaces/default/ttsclusters/a/status", {})
    assert authorize(policy, SA, a)[0] is allowed


@pytest.mark.unit
def test_discovery_is_for_authenticated_users_and_version_for_everyone():
    policy = Policy()
    assert authorize(policy, SA, request_info("GET", "/apis", {}))[0]
    assert not authorize(policy, ANONYMOUS, request_info("GET", "/apis", {}))[0]
    assert authorize(policy, ANONYMOUS, request_info("GET", "/version", {}))[0]


@pytest.mark.unit
def test_escalation_lists_what_the_author_does_not_hold():
    policy = Policy.of([role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]),
                        binding("b", "Role", "r", [BOT])])
    wanted = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
              {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]},
              {"apiGroups": [""], "resources": ["*"], "verbs": ["list"]}]
    missing = escalation(policy, SA, NS, wanted)
    assert missing == ["{APIGroups:['discovery.k8s.io'], Resources:['endpointslices'], Verbs:['list']}",
                       "{APIGroups:[''], Resources:['*'], Verbs:['list']}"]
    assert escalation(policy, SA, "other", wanted[:1]) != []  # held in default only


# --- over HTTPS, with real clients ------------------------------------------------------------------


def clients(kubeconfig: Path) -> tuple[CoreV1Api, RbacAuthorizationV1Api]:
    api = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    return CoreV1Api(api), RbacAuthorizationV1Api(api)


def admin(kube: KubeAPI) -> tuple[CoreV1Api, RbacAuthorizationV1Api]:
    return clients(kube.kubeconfig_path)


@pytest.mark.kube
def test_a_service_account_token_is_refused_in_the_servers_words_and_dies_with_its_account(kube):
    core, rbac = admin(kube)
    core.create_namespaced_service_account(NS, {"metadata": {"name": "bot"}})
    rbac.create_namespaced_role(NS, role("r", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    rbac.create_namespaced_role_binding(NS, binding("b", "Role", "r", [BOT]))
    bot, _ = clients(kube.kubeconfig_for(NS, "bot"))
    assert bot.list_namespaced_pod(NS).items == []
    with pytest.raises(kubernetes.client.ApiException) as refused:
        bot.list_namespaced_config_map(NS)
    assert refused.value.status == 403
    assert json.loads(refused.value.body)["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:default:bot" cannot list resource "configmaps" '
        'in API group "" in the namespace "default"')
    assert kube.refusals()[-1][0] == "system:serviceaccount:default:bot"
    assert ("list", "", "pods", NS) in kube.permissions_used("system:serviceaccount:default:bot")
    core.delete_namespaced_service_account("bot", NS)
    with pytest.raises(kubernetes.client.ApiException) as gone:
        bot.list_namespaced_pod(NS)
    assert gone.value.status == 401


@pytest.mark.kube
def test_no_credentials_is_anonymous_and_a_bad_token_is_unauthorized(kube):
    anonymous = httpx.get(f"{kube.url}/api/v1/namespaces/default/pods", verify=kube.verify)
    assert anonymous.status_code == 403 and 'User "system:anonymous"' in anonymous.json()["message"]
    bad = httpx.get(f"{kube.url}/api", verify=kube.verify, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["reason"] == "Unauthorized"
    assert httpx.get(f"{kube.url}/version", verify=kube.verify).status_code == 200


@pytest.mark.kube
def test_a_role_may_grant_only_what_its_author_holds(kube):
    core, rbac = admin(kube)
    core.create_namespaced_service_account(NS, {"metadata": {"name": "bot"}})
    rbac.create_namespaced_role(NS, role("r", [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    rbac.create_namespaced_role_binding(NS, binding("b", "Role", "r", [BOT]))
    _, bot = clients(kube.kubeconfig_for(NS, "bot"))
    bot.create_namespaced_role(NS, role("ok", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]))
    with pytest.raises(kubernetes.client.ApiException) as refused:
        bot.create_namespaced_role(NS, role("more", [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]))
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert "is attempting to grant RBAC permissions not currently held" in message and "endpointslices" in message
    # Binding a role whose permissions the author lacks is refused the same way (no `bind` verb held).
    rbac.create_namespaced_role(NS, role("admin-ish", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))
    with pytest.raises(kubernetes.client.ApiException) as bound:
        bot.create_namespaced_role_binding(NS, binding("b2", "Role", "admin-ish", [BOT]))
    assert bound.value.status == 403


@pytest.mark.kube
def test_the_admin_kubeconfig_speaks_https_with_the_test_ca(kube):
    assert kube.url.startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{kube.url}/version")  # the system's trust store does not know the test CA
    core, _ = admin(kube)
    assert core.list_namespace().items[0].metadata.name == "default"

