"""The API server's admission of our CRD and of TTSClusters, as the emulator enforces it (tests/support/kube_schema.py,
kube_fields.py): what a real kube-apiserver refuses, the emulator refuses, with the field named the same way.

The first test holds the defect a real v1.36 server found: `helm install` failed because the CRD's rules read
`self.workers.*` on `spec`'s `default: {}`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.rest import ApiException

from support.kube_emulator import CHART_CRDS, TTSCLUSTER, KubeAPI, Resource
from support.kube_schema import Schema, check_crd, crd_schema
from support.ttscluster_cases import CASES, RULES, VALID, set_path

CRD = yaml.safe_load((CHART_CRDS / "ttsclusters.tts-cluster.io.yaml").read_text())
SCHEMA = Schema(crd_schema(CRD, "v1alpha1"))
NS = "default"
GROUP, VERSION, PLURAL = TTSCLUSTER.group, TTSCLUSTER.version, TTSCLUSTER.plural

def ttscluster(spec: dict[str, Any], name: str = "tts") -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TTSCluster", "metadata": {"name": name}, "spec": spec}


def admit(spec: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    _, _, errors = SCHEMA.admit(ttscluster(spec), ttscluster(old) if old is not None else None)
    return [str(e) for e in errors]


# --- the CRD at registration -------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_charts_crds_register_and_a_rule_reading_past_a_default_is_refused_as_the_server_refuses_it():
    for path in sorted(CHART_CRDS.glob("*.yaml")):
        assert check_crd(yaml.safe_load(path.read_text())) == [], path.name
    broken = copy.deepcopy(CRD)
    spec = broken["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"].append({"rule": "self.workers.minReplicas <= self.workers.maxReplicas",
                                             "message": "workers.minReplicas must not exceed workers.maxReplicas"})
    # Word for word what kube-apiserver v1.36 answered to the chart's CRD before its rules were guarded.
    assert [str(e) for e in check_crd(broken)] == [
        'spec.validation.openAPIV3Schema.properties[spec].default: Invalid value: "object": no such key: workers '
        "evaluating rule: workers.minReplicas must not exceed workers.maxReplicas"]


@pytest.mark.unit
def test_structural_schema_rules_are_enforced_at_registration():
    bad = copy.deepcopy(CRD)
    root = bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    del root["properties"]["spec"]["properties"]["drainTimeoutSeconds"]["type"]
    root["properties"]["spec"]["properties"]["router"]["properties"]["port"]["default"] = 70000
    root["properties"]["spec"]["properties"]["voices"]["items"]["anyOf"][0]["type"] = "object"
    fields = {e.field for e in check_crd(bad)}
    assert fields == {
        "spec.validation.openAPIV3Schema.properties[spec].properties[drainTimeoutSeconds].type",
        "spec.validation.openAPIV3Schema.properties[spec].properties[router].properties[port].default",
        "spec.validation.openAPIV3Schema.properties[spec].properties[voices].items.anyOf[0].type",
    }


# --- every constraint of the schema ------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_valid_spec_is_admitted_and_reaches_every_constrained_field():
    assert admit(VALID) == []
    assert len(CASES) > 100  # every leaf of the schema contributes at least one


@pytest.mark.unit
@pytest.mark.parametrize(("path", "bad", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_schema_constraint_is_refused_naming_its_field(path: str, bad: Any, field: str):
    errors = admit(set_path(VALID, path, bad))
    assert any(e.startswith(f"{field}: ") for e in errors), errors


@pytest.mark.unit
@pytest.mark.parametrize(("spec", "field", "message"), RULES, ids=[r[1] + " " + r[2][:30] for r in RULES])
def test_every_crd_rule_is_refused_naming_its_field(spec: dict[str, Any], field: str, message: str):
    errors = admit(spec)
    assert any(e.startswith(f'{field}: Invalid value: "object": ') and message in e for e in errors), errors


@pytest.mark.unit
def test_defaults_fill_an_empty_spec_and_satisfy_every_rule():
    obj, warnings, errors = SCHEMA.admit({"apiVersion": f"{GROUP}/{VERSION}", "kind": "TTSCluster",
                                          "metadata": {"name": "t"}}, None)
    assert errors == [] and warnings == []
    assert obj["spec"]["workers"]["replicas"] == 1 and obj["spec"]["router"]["policy"] == "least-work"


# --- through the HTTP API ----------------------------------------------------------------------------------------


@pytest.fixture
def kube() -> Iterator[KubeAPI]:  # the conftest's, with the TTSCluster CRD
    with KubeAPI(resources=[TTSCLUSTER]) as api:
        yield api


def _refusal(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as err:
        call()
    return err.value.status, json.loads(err.value.body)


@pytest.mark.kube
def test_a_refused_write_is_a_422_listing_each_field_and_nothing_is_stored(client: ApiClient):
    crs = CustomObjectsApi(client)
    status, body = _refusal(lambda: crs.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, ttscluster({"workers": {"replicas": 300, "engine": "espeak"}})))
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('TTSCluster.tts-cluster.io "tts" is invalid: [')
    assert {c["field"] for c in body["details"]["causes"]} == {"spec.workers.replicas", "spec.workers.engine"}
    assert crs.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)["items"] == []
    crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ttscluster({}))
    # A /scale write is checked against the CRD's rules too: kubectl scale past maxReplicas is refused.
    status, body = _refusal(lambda: crs.patch_namespaced_custom_object_scale(
        GROUP, VERSION, NS, PLURAL, "tts", {"spec": {"replicas": 20}}))
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.workers.replicas"
    assert crs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "tts")["spec"]["workers"]["replicas"] == 1


@pytest.mark.kube
def test_unknown_fields_are_refused_strictly_warned_or_dropped_as_field_validation_says(client: ApiClient):
    crs = CustomObjectsApi(client)
    body = ttscluster({"workers": {"replicas": 1, "replica": 2}})
    status, refused = _refusal(lambda: crs.create_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, body, field_validation="Strict"))
    assert status == 400 and 'unknown field "spec.workers.replica"' in refused["message"]
    response = crs.create_namespaced_custom_object_with_http_info(GROUP, VERSION, NS, PLURAL, body,
                                                                  field_validation="Warn")
    assert response[2]["Warning"] == '299 - "unknown field \\"spec.workers.replica\\""'
    assert "replica" not in response[0]["spec"]["workers"]  # pruned, as the server prunes it
    kept = crs.create_namespaced_custom_object_with_http_info(GROUP, VERSION, NS, PLURAL, ttscluster(
        {"workers": {"replica": 2}}, name="quiet"), field_validation="Ignore")
    assert "Warning" not in kept[2] and "replica" not in kept[0]["spec"]["workers"]


WIDGETS = Resource.from_crd({
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Widget", "plural": "widgets"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "size": {"type": "integer", "x-kubernetes-validations": [
                         {"rule": "self >= oldSelf", "message": "size may only grow"}]},
                     "owner": {"type": "string"}}}}}}}]},
})


@pytest.mark.kube
def test_transition_rules_compare_with_the_stored_object(kube: KubeAPI, client: ApiClient):
    kube.register(WIDGETS)
    crs = CustomObjectsApi(client)
    body = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 5}}
    crs.create_namespaced_custom_object("example.com", "v1", NS, "widgets", body)  # no old value: not evaluated
    crs.patch_namespaced_custom_object("example.com", "v1", NS, "widgets", "w", {"spec": {"size": 6}})
    status, refused = _refusal(lambda: crs.patch_namespaced_custom_object(
        "example.com", "v1", NS, "widgets", "w", {"spec": {"size": 2}}))
    assert status == 422 and refused["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.size", "message": 'Invalid value: "integer": size may only grow'}]


# --- server-side apply and field ownership -----------------------------------------------------------------------


def _apply(kube: KubeAPI, body: dict[str, Any], manager: str, force: bool = False) -> httpx.Response:
    # A server-side apply as kubectl and Helm send it: YAML, a field manager, force only when asked.
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}/{body['metadata']['name']}"
    return httpx.patch(kube.url + path, params={"fieldManager": manager, "force": str(force).lower()},
                       content=yaml.safe_dump(body), headers={"Content-Type": "application/apply-patch+yaml", **kube.admin_headers},
                       verify=kube.verify,
                       timeout=10)


@pytest.mark.kube
def test_apply_after_kubectl_scale_conflicts_on_the_replicas_unless_it_keeps_them(kube: KubeAPI, client: ApiClient):
    crs = CustomObjectsApi(client)
    created = _apply(kube, ttscluster({"workers": {"replicas": 1}, "drainTimeoutSeconds": 60}), "helm")
    assert created.status_code == 201 and created.json()["spec"]["workers"]["replicas"] == 1
    crs.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "tts", {"spec": {"replicas": 3}})
    # The error Helm reported on a real server: `helm upgrade` applying the chart's count after `kubectl scale`.
    refused = _apply(kube, ttscluster({"workers": {"replicas": 1}, "drainTimeoutSeconds": 60}), "helm")
    assert refused.status_code == 409
    assert refused.json()["message"].startswith('Apply failed with 1 conflict: conflict with "')
    assert refused.json()["message"].endswith(
        ' with subresource "scale" using tts-cluster.io/v1alpha1: .spec.workers.replicas')
    # Applying the live count (what the chart renders on upgrade) shares the field: no conflict.
    kept = _apply(kube, ttscluster({"workers": {"replicas": 3}, "drainTimeoutSeconds": 90}), "helm").json()
    assert kept["spec"]["workers"]["replicas"] == 3 and kept["spec"]["drainTimeoutSeconds"] == 90
    # A field the manager no longer applies, and nobody else holds, is removed (then defaulted again).
    dropped = _apply(kube, ttscluster({"workers": {"replicas": 3}}), "helm").json()
    assert dropped["spec"]["drainTimeoutSeconds"] == 120
    forced = _apply(kube, ttscluster({"workers": {"replicas": 2}}), "helm", force=True).json()
    assert forced["spec"]["workers"]["replicas"] == 2


# --- garbage collection ------------------------------------------------------------------------------------------


@pytest.mark.kube
def test_dependents_go_with_their_last_owner(client: ApiClient):
    core = CoreV1Api(client)
    crs = CustomObjectsApi(client)
    owner = crs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, ttscluster({}))
    other = core.create_namespaced_config_map(NS, {"metadata": {"name": "other"}})
    ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TTSCluster", "name": "tts", "uid": owner["metadata"]["uid"]}
    other_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": other.metadata.uid}
    core.create_namespaced_config_map(NS, {"metadata": {"name": "only", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(NS, {"metadata": {"name": "shared", "ownerReferences": [ref, other_ref]}})
    crs.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "tts")
    left = {cm.metadata.name: cm for cm in core.list_namespaced_config_map(NS).items}
    assert sorted(left) == ["other", "shared"]
    assert [r.name for r in left["shared"].metadata.owner_references] == ["other"]
