"""TTSCluster specs the API server must refuse, one per constraint of the CRD, each with the field its refusal
must name: generated from the CRD's schema (every type, bound, length, pattern, enum, item count and required key
of every field a fully set valid spec reaches) plus one per CEL rule. Used by the emulator's admission tests
(tests/operator/test_kube_admission.py) and by the end-to-end suite against any API server (tests/e2e/)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import yaml

from support.paths import CRD

SPEC_SCHEMA: dict[str, Any] = next(v for v in yaml.safe_load(CRD.read_text())["spec"]["versions"]
                                   if v.get("storage"))["schema"]["openAPIV3Schema"]["properties"]["spec"]

GPT = {"gpt_weights": "g.ckpt", "sovits_weights": "s.pth", "version": "v2", "ref_audio": "a.wav", "prompt_text": "hi",
       "prompt_lang": "en", "aux_ref_audio": ["b.wav"]}
# A spec that sets every field the schema has, each to a valid value: every constraint is checked against it.
VALID: dict[str, Any] = {
    "workers": {"replicas": 2, "minReplicas": 1, "maxReplicas": 8, "image": "w:1", "imagePullPolicy": "Always",
                "engine": "gpt-sovits", "port": 9880, "maxQueueSize": 10, "maxLoadedVoices": 3, "batching": True,
                "maxBatch": 4, "vocoderThread": False, "maxReferenceClips": 32, "ttsInferYaml": "a: 1",
                "modelPVC": "weights", "resources": {"limits": {"nvidia.com/gpu": 1}}, "nodeSelector": {"gpu": "a"},
                "tolerations": [{"key": "k"}], "affinity": {}},
    "router": {"replicas": 1, "image": "r:1", "serviceType": "ClusterIP", "port": 9880, "policy": "least-work"},
    "autoscaling": {"enabled": True, "targetQueueDepth": 2, "scaleUpStabilizationSeconds": 30,
                    "scaleDownStabilizationSeconds": 300},
    "admin": {"tokenSecret": "admin", "allowUnauthenticated": False},
    "apiKeys": {"secretName": "keys", "key": "keys.yaml"},
    "drainTimeoutSeconds": 120,
    "voices": [{"name": "g", "minWorkers": 1, "gpt_sovits": GPT, "defaults": {"top_k": 5}},
               {"name": "p", "piper": {"model": "p.onnx"}},
               {"name": "s", "synthetic": {"tone_hz": 220, "speed": 1, "weights": "w.bin"}}],
    "defaultVoice": "g",
    "openai": {"models": ["tts-1"], "voices": {"alloy": "g"}},
    "defaultWeights": {"gpt": "a.ckpt", "sovits": "b.pth"},
}


def _targets(value: Any, schema: dict[str, Any], path: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(path, value, schema node) for every value of VALID the schema constrains."""
    yield path, value, schema
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, item in value.items():
            if key in props:
                yield from _targets(item, props[key], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            yield from _targets(item, schema["items"], f"{path}[{i}]")


def _violations(path: str, value: Any, node: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(what, a value breaking one constraint of ``node``, the field the error must name)."""
    wrong_type = {"integer": "1", "number": "1", "string": 1, "boolean": "yes", "object": [], "array": {}}
    if node.get("type") in wrong_type:
        yield "type", wrong_type[node["type"]], path
    if "minimum" in node:
        yield "minimum", node["minimum"] - 1, path
    if "maximum" in node:
        yield "maximum", node["maximum"] + 1, path
    if node.get("minLength"):
        yield "minLength", "", path
    if "maxLength" in node:
        yield "maxLength", "a" * (node["maxLength"] + 1), path
    if "pattern" in node:
        yield "pattern", "Not/A.Match!", path
    if "enum" in node:
        yield "enum", "no-such-value", path
    if "maxItems" in node and isinstance(value, list) and value:
        many = [copy.deepcopy(value[0]) for _ in range(node["maxItems"] + 1)]
        for i, item in enumerate(many):
            if isinstance(item, dict) and "name" in item:
                item["name"] = f"v{i}"
        yield "maxItems", many, path
    if node.get("minItems"):
        yield "minItems", [], path
    if "maxProperties" in node and isinstance(value, dict):
        yield "maxProperties", {f"k{i}": "g" for i in range(node["maxProperties"] + 1)}, path
    for key in node.get("required") or []:
        if isinstance(value, dict):
            yield f"required {key}", {k: v for k, v in value.items() if k != key}, f"{path}.{key}"


def set_path(spec: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(spec)
    steps = path.replace("[", ".[").split(".")[1:]  # "spec.voices[0].name" -> ["voices", "[0]", "name"]
    at: Any = out
    for step in steps[:-1]:
        at = at[int(step[1:-1])] if step.startswith("[") else at[step]
    last = steps[-1]
    if last.startswith("["):
        at[int(last[1:-1])] = value
    else:
        at[last] = value
    return out


CASES = [(f"{path} {what}", path, bad, field)
         for path, value, node in _targets(VALID, SPEC_SCHEMA, "spec")
         if path != "spec"
         for what, bad, field in _violations(path, value, node)]


RULES = [
    ({"workers": {"minReplicas": 5, "maxReplicas": 2, "replicas": 3}}, "spec.workers.minReplicas",
     "workers.minReplicas must not exceed workers.maxReplicas"),
    ({"workers": {"replicas": 20, "maxReplicas": 8}}, "spec.workers.replicas",
     "workers.replicas must not exceed workers.maxReplicas"),
    ({"workers": {"replicas": 0}}, "spec.workers.replicas", "workers.replicas must not be below workers.minReplicas"),
    ({"workers": {"batching": True, "maxBatch": 16, "maxQueueSize": 8}}, "spec.workers.maxBatch",
     "workers.maxBatch must not exceed workers.maxQueueSize"),
    ({"workers": {"ttsInferYaml": "a: 1", "ttsInferConfigMap": "cm"}}, "spec.workers.ttsInferYaml",
     "not both"),
    ({"workers": {"modelPVC": "p", "modelVolume": {"hostPath": {"path": "/m"}}}}, "spec.workers.modelVolume",
     "not both"),
    ({"defaultVoice": "nobody", "voices": [{"name": "a", "synthetic": {}}]}, "spec",
     "defaultVoice must name one of voices"),
]
