"""The routing policies' names are defined once (tts_common.policies); everything that lists them agrees."""

from __future__ import annotations

import json
import typing

import pytest
import yaml

from support.paths import CHART, CRD
from tts_common.policies import DEFAULT_POLICY, POLICY_NAMES
from tts_operator.spec import RouterSpec
from tts_router.policy import POLICIES, make_policy
from tts_router.settings import RouterSettings

pytestmark = pytest.mark.unit


def _literal(annotation: object) -> tuple[str, ...]:
    return typing.get_args(annotation)


def test_router_operator_crd_and_chart_name_the_same_policies():
    assert tuple(POLICIES) == POLICY_NAMES
    assert _literal(RouterSettings.model_fields["policy"].annotation) == POLICY_NAMES
    assert _literal(RouterSpec.model_fields["policy"].annotation) == POLICY_NAMES
    crd = yaml.safe_load(CRD.read_text())
    router = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["router"]
    assert tuple(router["properties"]["policy"]["enum"]) == POLICY_NAMES
    assert router["properties"]["policy"]["default"] == DEFAULT_POLICY
    values = json.loads((CHART / "values.schema.json").read_text())
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "policy" in node.get("properties", {}):
                found.append(tuple(node["properties"]["policy"]["enum"]))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(values)
    assert found == [POLICY_NAMES]


def test_an_unknown_policy_is_refused_naming_the_known_ones():
    try:
        make_policy("fastest")
    except ValueError as exc:
        assert "least-work" in str(exc) and "round-robin" in str(exc)
    else:
        raise AssertionError("an unknown policy was accepted")
