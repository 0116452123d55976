"""Bad input at the API server, on the same two backends as the rest of the suite: every constraint of the TTSCluster
CRD (tests/support/ttscluster_cases.py: one bad spec per type, bound, length, pattern, enum, item count and required
key of every field, and one per CEL rule) is refused with 422 naming the field, and an unknown field is refused under
kubectl's strict validation, naming it. Against a real cluster this checks the emulator's wording too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiextensionsV1Api
from kubernetes.client.rest import ApiException

from support.e2e_backend import GROUP, PLURAL, VERSION, Backend
from support.paths import CRD
from support.ttscluster_cases import CASES, RULES, VALID, set_path
from support.wait import eventually

pytestmark = pytest.mark.kube


@pytest.fixture
def server(backend: Backend) -> Iterator[Backend]:
    """The backend with the chart's TTSCluster CRD (created when absent; Helm would keep it anyway)."""
    crds = ApiextensionsV1Api(backend.custom.api_client)
    crd = yaml.safe_load(CRD.read_text())
    try:
        crds.create_custom_resource_definition(crd)
    except ApiException as exc:
        if exc.status != 409:
            raise
    eventually(lambda: any(c.type == "Established" and c.status == "True" for c in
                           crds.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []),
               timeout=30)
    yield backend


def refusal(server: Backend, spec: Any, strict: bool = False) -> tuple[int, str]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TTSCluster", "metadata": {"name": "bad"}, "spec": spec}
    try:
        server.custom.create_namespaced_custom_object(GROUP, VERSION, server.namespace, PLURAL, body,
                                                      field_validation="Strict" if strict else None)
    except ApiException as exc:
        return exc.status, json.loads(exc.body)["message"]
    server.custom.delete_namespaced_custom_object(GROUP, VERSION, server.namespace, PLURAL, "bad")
    return 201, "admitted"


def test_every_crd_constraint_and_rule_is_refused_naming_its_field(server: Backend):
    assert refusal(server, VALID) == (201, "admitted")
    missed = []
    for name, path, bad, field in CASES:
        status, message = refusal(server, set_path(VALID, path, bad))
        if status != 422 or f"{field}: " not in message:
            missed.append((name, status, message))
    for spec, field, text in RULES:
        status, message = refusal(server, spec)
        if status != 422 or field not in message or text not in message:
            missed.append((field, status, message))
    assert missed == [], "\n".join(map(str, missed))
    assert len(CASES) + len(RULES) > 100


def test_an_unknown_field_is_refused_under_strict_validation(server: Backend):
    status, message = refusal(server, {"workers": {"replicaz": 2}}, strict=True)
    assert status == 400 and 'unknown field "spec.workers.replicaz"' in message
