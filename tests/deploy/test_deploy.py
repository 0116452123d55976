"""The Helm chart and manifests, checked by real Helm (helm-python-sdk) and Kubernetes' own schemas.

Renders for the default values and several other sets, lints, validates every object with kubernetes-validate
(strict, pinned version) and custom resources against their CRDs, checks values.schema.json refuses bad values,
pod security everywhere, and that manifests/ is exactly the chart's default render.
"""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from support.paths import CHART, ROOT

pytestmark = pytest.mark.unit

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the deploy extra) is not installed")

KUBERNETES = "1.36.0"
CRDS = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"]: yaml.safe_load(p.read_text())
        for p in (CHART / "crds").glob("*.yaml")}
# Prometheus Operator kinds: their CRDs are not ours to ship; checked for the fields we rely on instead.
MONITORING = {"ServiceMonitor", "PodMonitor"}

VALUE_SETS = {
    "default": {},
    "ingress-tls-monitoring": {
        "ingress": {"enabled": True, "className": "nginx", "hosts": [{"host": "tts.example.org",
                    "paths": [{"path": "/", "pathType": "Prefix"}]}],
                    "tls": [{"secretName": "tts-tls", "hosts": ["tts.example.org"]}]},
        "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                       "podMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "networkPolicy": {"metricsNamespaceSelector": {"matchLabels": {"name": "monitoring"}}}},
    "all-namespaces-ha": {"operator": {"watchAllNamespaces": True, "replicas": 2}},
    "watch-two-namespaces": {"operator": {"watchNamespaces": ["voice-a", "voice-b"]}},
    "gpt-sovits-autoscaled": {"ttsCluster": {
        "workers": {"engine": "gpt-sovits", "replicas": 4, "modelPVC": "gpt-sovits-weights",
                    "ttsInferYaml": "custom:\n  device: cuda\n  version: v2\n",
                    "nodeSelector": {"nvidia.com/gpu.present": "true"}},
        "autoscaling": {"enabled": True, "targetQueueDepth": 3}}},
    "operator-only": {"ttsCluster": {"enabled": False}, "dashboards": {"enabled": False}},
    "voices": {"ttsCluster": {
        "workers": {"engine": "synthetic", "maxLoadedVoices": 4},
        "voices": [{"name": "alice", "minWorkers": 2, "synthetic": {"tone_hz": 330}, "defaults": {"top_k": 5}},
                   {"name": "bob", "gpt_sovits": {"gpt_weights": "gpt/bob.ckpt", "sovits_weights": "sovits/bob.pth",
                                                  "ref_audio": "bob.wav", "prompt_lang": "en"}}],
        "defaultVoice": "alice"}},
    "api-keys": {"ttsCluster": {"apiKeys": {"secretName": "tts-api-keys", "key": "keys.txt"}}},
}


def render(values: dict) -> list[dict]:
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name="tts-cluster", namespace="voice", is_install=True)
    return [d for path, text in sorted(out.items()) if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(VALUE_SETS[request.param])


def test_lint_finds_nothing():
    report = helm.lint(str(CHART), strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == [], name


def test_every_object_is_valid_kubernetes(rendered):
    name, docs = rendered
    assert docs
    for doc in docs:
        kind = doc["kind"]
        if kind in CRDS:
            schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            jsonschema.validate(doc, schema)
        elif kind in MONITORING:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["spec"]["selector"]["matchLabels"]
        elif kind == "PrometheusRule":  # its rules are checked by promtool (tests/monitoring/test_alerts.py)
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert [r["alert"] for g in doc["spec"]["groups"] for r in g["rules"]]
        else:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_labels_everywhere(rendered):
    _, docs = rendered
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                    "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of"):
            assert key in labels, (doc["kind"], doc["metadata"]["name"], key)


def _pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    out = []
    for doc in docs:
        if doc["kind"] == "Pod":
            out.append((doc["metadata"]["name"], doc["spec"]))
        elif doc["kind"] == "Deployment":
            out.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
    return out


def _check_restricted(name: str, spec: dict) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True, name
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["capabilities"]["drop"] == ["ALL"], name


def test_pods_run_restricted(rendered):
    _, docs = rendered
    for name, spec in _pod_specs(docs):
        _check_restricted(name, spec)


def test_pods_the_operator_creates_run_restricted_too():
    from tts_operator import resources
    from tts_operator.spec import parse_spec

    spec = parse_spec({})
    keyed = parse_spec({"apiKeys": {"secretName": "tts-api-keys"}})
    _check_restricted("worker", resources.worker_pod("tts", spec)["spec"])
    _check_restricted("router", resources.router_deployment("tts", spec)["spec"]["template"]["spec"])
    for obj in (resources.worker_pod("tts", spec), resources.workers_service("tts", spec),
                resources.router_deployment("tts", spec), resources.router_deployment("tts", keyed), resources.router_service("tts", spec),
                resources.router_role("tts"), resources.router_role_binding("tts"),
                resources.router_service_account("tts")):
        obj = copy.deepcopy(obj)
        obj["metadata"].setdefault("name", "tts-worker-abcde")
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_rbac_is_namespaced_unless_watching_all():
    kinds = {d["kind"] for d in render({})}
    assert {"Role", "RoleBinding"} <= kinds and not {"ClusterRole", "ClusterRoleBinding"} & kinds
    wide = render(VALUE_SETS["all-namespaces-ha"])
    assert {"ClusterRole", "ClusterRoleBinding"} <= {d["kind"] for d in wide} and "Role" not in {d["kind"] for d in wide}
    # kopf peers through a ClusterKopfPeering when it watches all namespaces (a KopfPeering would go unread), and
    # the ClusterRole lets it.
    assert [d["kind"] for d in wide if "Peering" in d["kind"]] == ["ClusterKopfPeering"]
    rules = next(d for d in wide if d["kind"] == "ClusterRole")["rules"]
    assert {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["get", "list", "watch", "patch"]
            } in rules
    two = [d for d in render(VALUE_SETS["watch-two-namespaces"]) if d["kind"] == "Role"]
    assert sorted(d["metadata"]["namespace"] for d in two) == ["voice-a", "voice-b"]
    # Namespaced, kopf peers in each namespace it watches.
    peered = render({"operator": {"watchNamespaces": ["voice-a", "voice-b"], "replicas": 2}})
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in peered if "Peering" in d["kind"]) == [
        ("KopfPeering", "voice-a"), ("KopfPeering", "voice-b")]


@pytest.mark.parametrize("values,needle", [
    ({"ttsCluster": {"workers": {"engine": "espeak"}}}, "engine"),
    ({"ttsCluster": {"router": {"port": 0}}}, "port"),
    ({"operator": {"replicas": "two"}}, "replicas"),
    ({"ttsCluster": {"name": "Bad_Name"}}, "name"),
    ({"ingress": {"enabled": True, "hosts": []}}, "hosts"),
    ({"monitoring": {"serviceMonitor": {"interval": "often"}}}, "interval"),
    ({"surprise": True}, "surprise"),
    ({"ttsCluster": {"voices": [{"name": "../x", "synthetic": {}}]}}, "../x"),
    ({"ttsCluster": {"workers": {"maxLoadedVoices": 0}}}, "maxLoadedVoices"),
    ({"ttsCluster": {"apiKeys": {"key": "../keys"}}}, "key"),
])
def test_values_schema_refuses_wrong_values(values, needle):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    assert needle in str(err.value)


def test_voices_reach_the_ttscluster_as_given():
    cluster = next(d for d in render(VALUE_SETS["voices"]) if d["kind"] == "TTSCluster")
    assert cluster["spec"]["voices"] == VALUE_SETS["voices"]["ttsCluster"]["voices"]
    assert cluster["spec"]["defaultVoice"] == "alice" and cluster["spec"]["workers"]["maxLoadedVoices"] == 4
    default = next(d for d in render({}) if d["kind"] == "TTSCluster")
    assert "voices" not in default["spec"] and "defaultVoice" not in default["spec"]


def test_api_keys_reach_the_ttscluster_only_when_a_secret_is_named():
    cluster = next(d for d in render(VALUE_SETS["api-keys"]) if d["kind"] == "TTSCluster")
    assert cluster["spec"]["apiKeys"] == {"secretName": "tts-api-keys", "key": "keys.txt"}
    default = next(d for d in render({}) if d["kind"] == "TTSCluster")
    assert "apiKeys" not in default["spec"]


def test_gpt_sovits_worker_knobs_reach_the_ttscluster_and_the_crd_takes_them():
    """vocoderThread reaches the TTSCluster only when set (unset: the worker's own default for its device);
    maxReferenceClips always, and the CRD's schema takes both."""
    schema = CRDS["TTSCluster"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    default = next(d for d in render({}) if d["kind"] == "TTSCluster")
    assert "vocoderThread" not in default["spec"]["workers"]
    assert default["spec"]["workers"]["maxReferenceClips"] == 32
    for thread in (False, True):
        values = {"ttsCluster": {"workers": {"engine": "gpt-sovits", "vocoderThread": thread, "maxReferenceClips": 64}}}
        cluster = next(d for d in render(values) if d["kind"] == "TTSCluster")
        assert cluster["spec"]["workers"]["vocoderThread"] is thread
        assert cluster["spec"]["workers"]["maxReferenceClips"] == 64
        jsonschema.validate(cluster, schema)
    with pytest.raises(jsonschema.ValidationError, match="maxReferenceClips|1025"):
        jsonschema.validate({**default, "spec": {**default["spec"], "workers": {
            **default["spec"]["workers"], "maxReferenceClips": 1025}}}, schema)


def test_example_ttscluster_fits_the_crd():
    schema = CRDS["TTSCluster"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    docs = [d for d in yaml.safe_load_all((ROOT / "manifests" / "ttscluster.yaml").read_text()) if d]
    example = [d for d in docs if d["kind"] == "TTSCluster"]
    assert len(example) == 1 and example[0]["spec"]["workers"]["replicas"] == 4
    jsonschema.validate(example[0], schema)


def test_manifests_equal_the_charts_default_render():
    import runpy

    module = runpy.run_path(str(ROOT / "helm" / "render_manifests.py"), run_name="render_manifests")
    assert module["main"](["--check"]) == 0, "run `make manifests` and commit the result"


def test_dashboards_ship_as_their_own_optional_manifest():
    """The dashboards' one source is the chart's JSON; manifests/ carries them apart from the operator."""
    def configmaps(name: str) -> list[dict]:
        return [d for d in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if d and d["kind"] == "ConfigMap"]

    assert not [d for d in configmaps("operator.yaml") if "dashboard" in d["metadata"]["name"]]
    shipped = {key: text for d in configmaps("dashboards.yaml") for key, text in d["data"].items()}
    sources = {p.name: p.read_text() for p in (CHART / "dashboards").glob("*.json")}
    assert len(sources) == 3 and shipped.keys() == sources.keys()
    assert all(json.loads(shipped[name]) == json.loads(text) for name, text in sources.items())
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    assert "dashboards.yaml" not in kustomization["resources"]


def test_generated_files_are_marked_and_name_their_source():
    attributes = (ROOT / ".gitattributes").read_text()
    for generated in ("manifests/*.yaml", "docs/concurrent_stats.schema.json"):
        assert f"{generated} linguist-generated=true" in attributes
    for path in (ROOT / "manifests").glob("*.yaml"):
        assert path.read_text().startswith("# Generated by `make manifests` from helm/tts-cluster"), path.name


# The fields of Kubernetes' JSONSchemaProps: a CRD key outside them (a YAML slip such as an unquoted comma in a flow
# mapping makes one) is refused by an API server with strict field validation, and kubernetes-validate lets it by.
JSON_SCHEMA_PROPS = frozenset({
    "$schema", "$ref", "id", "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum",
    "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not",
    "properties", "additionalProperties", "patternProperties", "dependencies", "additionalItems", "definitions",
    "externalDocs", "example", "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-validations",
})


def _schema_keys_outside(node: object, path: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    bad = [f"{path}/{k}" for k in node if k not in JSON_SCHEMA_PROPS]
    for key in ("properties", "patternProperties", "definitions"):
        for name, sub in (node.get(key) or {}).items():
            bad += _schema_keys_outside(sub, f"{path}/{key}/{name}")
    for key in ("items", "additionalProperties", "not"):
        bad += _schema_keys_outside(node.get(key), f"{path}/{key}")
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(node.get(key) or []):
            bad += _schema_keys_outside(sub, f"{path}/{key}/{i}")
    return bad


def test_every_crd_schema_key_is_a_json_schema_prop():
    assert _schema_keys_outside({"properties": {"x": {"type": "string", "inside the dir.": None}}}, "") == [
        "/properties/x/inside the dir."]  # the check itself can fail
    for kind, crd in CRDS.items():
        for version in crd["spec"]["versions"]:
            assert _schema_keys_outside(version["schema"]["openAPIV3Schema"], f"{kind}/{version['name']}") == []


def test_manifests_apply_in_dependency_order():
    """`kubectl apply -f` creates a file's objects in the order written, and -k in the kustomization's order: each
    object must follow what it needs (its namespace, its pods' ServiceAccount, the role a binding names, the CRD of
    its kind), or the first try fails (a real server's first operator ReplicaSet did: "error looking up service
    account")."""
    kustomization = yaml.safe_load((ROOT / "manifests" / "kustomization.yaml").read_text())
    docs = [d for name in kustomization["resources"]
            for d in yaml.safe_load_all((ROOT / "manifests" / name).read_text()) if d]
    seen: set[tuple[str, str]] = set()
    kinds_served = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                    "Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Secret",
                    "CustomResourceDefinition", "Ingress"}
    for doc in docs:
        kind, meta = doc["kind"], doc["metadata"]
        needs = []
        if meta.get("namespace"):
            needs.append(("Namespace", meta["namespace"]))
        if kind not in kinds_served:
            needs.append(("CustomResourceDefinition", next(
                c["metadata"]["name"] for c in CRDS.values() if c["spec"]["names"]["kind"] == kind)))
        if kind == "Deployment":
            needs.append(("ServiceAccount", doc["spec"]["template"]["spec"].get("serviceAccountName", "default")))
        if kind in ("RoleBinding", "ClusterRoleBinding"):
            needs.append((doc["roleRef"]["kind"], doc["roleRef"]["name"]))
            needs += [("ServiceAccount", s["name"]) for s in doc["subjects"] if s["kind"] == "ServiceAccount"]
        missing = [n for n in needs if n not in seen]
        assert not missing, f"{kind}/{meta['name']} comes before {missing}"
        seen.add((kind, meta["name"]))
    assert {d["kind"] for d in docs} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment",
                                         "CustomResourceDefinition", "TTSCluster"}
