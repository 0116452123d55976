"""Pure parts of the operator: the CRD's schema refuses bad specs, the spec model agrees with its defaults,
the RBAC covers the calls, and the autoscaler's stabilization windows."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from support.paths import CHART, OPERATOR_RULES
from support.paths import CRD as CRD_PATH
from tts_operator.autoscale import Autoscaler
from tts_operator.spec import parse_spec

pytestmark = pytest.mark.unit

CRD = yaml.safe_load(CRD_PATH.read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate(spec: dict) -> None:
    jsonschema.validate({"spec": spec}, SCHEMA)


def test_crd_shape():
    version = CRD["spec"]["versions"][0]
    assert CRD["metadata"]["name"] == "ttsclusters.tts-cluster.io"
    assert CRD["spec"]["names"]["shortNames"] == ["ttsc"] and CRD["spec"]["scope"] == "Namespaced"
    assert version["subresources"]["scale"] == {"specReplicasPath": ".spec.workers.replicas",
                                                "statusReplicasPath": ".status.workers",
                                                "labelSelectorPath": ".status.selector"}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Workers", "Ready", "Mode", "Age"]


@pytest.mark.parametrize("spec,needle", [
    ({"workers": {"replicas": -1}}, "-1 is less than the minimum of 0"),
    ({"workers": {"engine": "espeak"}}, "'espeak' is not one of"),
    ({"workers": {"maxQueueSize": 0}}, "0 is less than the minimum of 1"),
    ({"router": {"serviceType": "Ingress"}}, "'Ingress' is not one of"),
    ({"autoscaling": {"targetQueueDepth": 0}}, "0 is less than the minimum of 0.1"),
    ({"drainTimeoutSeconds": "soon"}, "'soon' is not of type 'integer'"),
    ({"admin": {"allowUnauthenticated": "yes"}}, "'yes' is not of type 'boolean'"),
    ({"admin": {"tokenSecret": ""}}, "should be non-empty"),
    ({"apiKeys": {"secretName": ""}}, "should be non-empty"),
    ({"workers": {"maxBatch": 0}}, "0 is less than the minimum of 1"),
    ({"apiKeys": {"secretName": "k", "key": "a/b"}}, "does not match"),
])
def test_crd_schema_refuses_bad_specs_with_a_clear_message(spec, needle):
    with pytest.raises(jsonschema.ValidationError) as err:
        validate(spec)
    assert needle in err.value.message


def test_schema_defaults_match_the_operator_model():
    def defaults(schema: dict) -> dict:
        return {k: (defaults(v) if v.get("type") == "object" and "properties" in v else v.get("default"))
                for k, v in schema["properties"].items() if "default" in v or v.get("type") == "object"}

    crd_defaults = defaults(SCHEMA["properties"]["spec"])
    model = parse_spec({}).model_dump(by_alias=True)
    for section in ("workers", "router", "autoscaling", "admin", "apiKeys"):
        for key, value in crd_defaults[section].items():
            if value is not None:
                assert model[section][key] == value, (section, key)
    assert model["drainTimeoutSeconds"] == crd_defaults["drainTimeoutSeconds"]


def test_the_model_refuses_what_the_schema_cannot_express():
    with pytest.raises(ValueError, match="minReplicas must not exceed"):
        parse_spec({"workers": {"minReplicas": 3, "maxReplicas": 2}})
    with pytest.raises(ValueError, match="not both"):
        parse_spec({"workers": {"ttsInferConfigMap": "a", "ttsInferYaml": "b"}})


# Whether the chart grants the operator exactly what it uses is checked where it can be seen, not by reading the
# source: tests/operator/test_operator_rbac.py runs the operator as the chart's service account against the
# emulator's RBAC, which records every permission used and refuses every one not granted.


def test_the_charts_rbac_is_the_operators():
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    rendered = chart.render({}, name="t", namespace="ns")
    docs = [d for path, text in rendered.items() if not path.endswith("NOTES.txt") for d in yaml.safe_load_all(text) if d]
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["rules"] == yaml.safe_load(OPERATOR_RULES.read_text())["rules"]


def _spec(up: int = 30, down: int = 300, target: float = 2, lo: int = 1, hi: int = 8):
    return parse_spec({"workers": {"minReplicas": lo, "maxReplicas": hi},
                       "autoscaling": {"enabled": True, "targetQueueDepth": target,
                                       "scaleUpStabilizationSeconds": up, "scaleDownStabilizationSeconds": down}})


def test_recommendation_is_admitted_over_target_within_bounds():
    a, spec = Autoscaler(), _spec()
    assert [a.recommend(n, spec) for n in (0, 1, 2, 3, 9, 100)] == [1, 1, 1, 2, 5, 8]


def test_scale_up_waits_out_its_window_and_a_burst_changes_nothing():
    a, spec = Autoscaler(), _spec(up=30, down=300)
    assert a.decide(2, 2, spec, at=0) == 2
    assert a.decide(2, 6, spec, at=10) == 2  # the window still holds a lower recommendation
    assert a.decide(2, 6, spec, at=41) == 6  # 30 s of "6" in a row
    b = Autoscaler()
    for t in range(0, 30, 5):
        b.decide(3, 3, spec, at=t)
    assert b.decide(3, 8, spec, at=30) == 3  # a single burst


def test_scale_down_takes_the_highest_recommendation_of_its_window():
    a, spec = Autoscaler(), _spec(up=0, down=60)
    assert a.decide(4, 4, spec, at=0) == 4
    assert a.decide(4, 1, spec, at=30) == 4
    assert a.decide(4, 1, spec, at=61) == 1


def test_admin_settings_reach_router_and_workers_and_the_token_never_argv():
    from tts_operator import resources

    closed = parse_spec({})
    pod, router = resources.worker_pod("c", closed), resources.router_deployment("c", closed)
    worker_c, router_c = pod["spec"]["containers"][0], router["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-unauthenticated-admin" not in worker_c["args"] + router_c["args"]
    spec = parse_spec({"admin": {"tokenSecret": "tts-admin", "allowUnauthenticated": True}})
    pod, router = resources.worker_pod("c", spec), resources.router_deployment("c", spec)
    worker_c, router_c = pod["spec"]["containers"][0], router["spec"]["template"]["spec"]["containers"][0]
    assert "--allow-unauthenticated-admin" in worker_c["args"] and "--allow-unauthenticated-admin" in router_c["args"]
    secret = {"secretKeyRef": {"name": "tts-admin", "key": "token"}}
    assert {"name": "TTSC_ADMIN_TOKEN", "valueFrom": secret} in worker_c["env"]
    assert router_c["env"] == [{"name": "TTSC_ROUTER_ADMIN_TOKEN", "valueFrom": secret}]
    assert not any("tts-admin" in a for a in worker_c["args"] + router_c["args"])


def test_batching_reaches_the_workers_flags_only_when_on():
    from tts_operator import resources

    assert "--batching" not in resources.worker_pod("c", parse_spec({}))["spec"]["containers"][0]["args"]
    spec = parse_spec({"workers": {"batching": True, "maxBatch": 6, "maxQueueSize": 12}})
    args = resources.worker_pod("c", spec)["spec"]["containers"][0]["args"]
    assert args[args.index("--batching"):args.index("--batching") + 3] == ["--batching", "--max-batch", "6"]
    with pytest.raises(ValueError, match="maxBatch must not exceed"):
        parse_spec({"workers": {"batching": True, "maxBatch": 16, "maxQueueSize": 10}})


def test_gpt_sovits_knobs_reach_the_workers_flags():
    """--vocoder-thread only when the spec sets it (else the worker's default for its device), either way;
    --max-reference-clips for gpt-sovits workers, whose flag it is."""
    from tts_cli.flags import given
    from tts_cli.main import build_parser
    from tts_operator import resources
    from tts_worker.settings import WorkerSettings

    def args(workers: dict[str, object]) -> list[str]:
        out: list[str] = resources.worker_pod("c", parse_spec({"workers": workers}))["spec"]["containers"][0]["args"]
        return out

    plain = args({"engine": "gpt-sovits"})
    assert not any("vocoder-thread" in a for a in plain)
    assert plain[plain.index("--max-reference-clips") + 1] == "32"
    assert "--max-reference-clips" not in args({"engine": "piper"})
    on = args({"engine": "gpt-sovits", "batching": True, "vocoderThread": True, "maxReferenceClips": 5})
    off = args({"engine": "gpt-sovits", "batching": True, "vocoderThread": False})
    assert "--vocoder-thread" in on and "--no-vocoder-thread" in off
    # the worker's own command line takes them as these settings
    parsed = {name: build_parser().parse_args(a) for name, a in (("plain", plain), ("on", on), ("off", off))}
    assert [(vars(ns).get("vocoder_thread"), vars(ns)["max_reference_clips"]) for ns in parsed.values()] == \
        [(None, 32), (True, 5), (False, 32)]
    assert WorkerSettings(**given(parsed["on"], WorkerSettings)).vocoder_thread is True


def test_the_weights_volume_is_the_workers_models_directory():
    """Default weights and catalog voices name files on the weights volume, and a worker takes only paths inside
    its models directory, which is otherwise the image's GPT-SoVITS checkout: so --models-dir is the mount point,
    whenever a volume is mounted there (and the worker's own command line takes it so)."""
    from tts_cli.flags import given
    from tts_cli.main import build_parser
    from tts_operator import resources
    from tts_worker.settings import WorkerSettings

    for workers in ({"modelPVC": "weights"}, {"modelVolume": {"nfs": {"server": "nfs", "path": "/w"}}}):
        pod = resources.worker_pod("c", parse_spec({"workers": {"engine": "gpt-sovits", **workers}}))
        container = pod["spec"]["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
        parsed = build_parser().parse_args(container["args"])
        assert WorkerSettings(**given(parsed, WorkerSettings)).models_dir == Path(mount["mountPath"]) == \
            Path("/models")
    bare = resources.worker_pod("c", parse_spec({"workers": {"engine": "gpt-sovits"}}))["spec"]["containers"][0]
    assert "--models-dir" not in bare["args"]


def test_api_keys_are_a_mounted_secret_the_router_reads(tmp_path, monkeypatch):
    from tts_operator import resources
    from tts_router.settings import RouterSettings

    router = resources.router_deployment("c", parse_spec({}))
    assert "volumes" not in router["spec"]["template"]["spec"]
    spec = parse_spec({"apiKeys": {"secretName": "tts-api-keys"}})
    pod = resources.router_deployment("c", spec)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["volumes"] == [{"name": "api-keys", "secret": {"secretName": "tts-api-keys",
                                                              "items": [{"key": "keys.yaml", "path": "keys.yaml"}]}}]
    mount = container["volumeMounts"][0]
    assert mount["name"] == "api-keys" and mount["readOnly"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TTSC_ROUTER_API_KEYS_FILE"] == f"{mount['mountPath']}/keys.yaml"
    # ... which is the variable the router's settings read
    monkeypatch.setenv("TTSC_ROUTER_API_KEYS_FILE", env["TTSC_ROUTER_API_KEYS_FILE"])
    assert str(RouterSettings().api_keys_file) == env["TTSC_ROUTER_API_KEYS_FILE"]
    # The workers, reached only through the router (the NetworkPolicy), hold no keys.
    assert "TTSC_API_KEYS_FILE" not in str(resources.worker_pod("c", spec))


def _pending_pod(condition: dict | None, phase: str = "Pending", created: str = "2026-01-01T00:00:00Z") -> dict:
    status: dict = {"phase": phase}
    if condition is not None:
        status["conditions"] = [condition]
    return {"metadata": {"name": "w", "creationTimestamp": created}, "status": status}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}


def test_a_worker_waiting_for_a_gpu_is_pending_not_failed():
    from tts_operator.pods import failure, unschedulable

    waiting = _pending_pod(UNSCHEDULABLE)
    assert unschedulable(waiting) == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    # Long past the not-ready limit, it is still not replaced: a replacement would wait for a GPU too.
    assert failure(waiting, crashloop_restarts=5, not_ready_seconds=1) is None
    # Scheduled but never ready is a failure, as before; so is a Pending pod that the scheduler did not refuse.
    assert failure(_pending_pod(None), crashloop_restarts=5, not_ready_seconds=1) == "NotReady"
    assert unschedulable(_pending_pod({**UNSCHEDULABLE, "reason": "SchedulingGated"})) is None
    assert unschedulable(_pending_pod(UNSCHEDULABLE, phase="Running")) is None
