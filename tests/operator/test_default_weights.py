"""A default-voice switch made through the router is persisted by the operator in spec.defaultWeights, which
every router replica is started with (unit cases for the decision, then the real kopf operator against the
emulator reading a real router)."""

from __future__ import annotations

import httpx
import kubernetes
import pytest

from support.kube_emulator import TTSCLUSTER, KubeAPI
from support.operator_cluster import EXTRA, NS, Cluster
from support.params import ADMIN_TOKEN
from support.wait import eventually
from tts_cli.processes import start_worker
from tts_operator.default_weights import to_persist
from tts_operator.resources import router_deployment
from tts_operator.spec import DefaultWeightsSpec, parse_spec


@pytest.mark.unit
@pytest.mark.parametrize(("current", "reported", "expected"), [
    ({}, None, None),  # the router has no choice
    ({}, {"gpt_weights": "a.ckpt", "sovits_weights": None, "switched": False}, None),  # started with it: not news
    ({}, {"gpt_weights": "a.ckpt", "sovits_weights": None, "switched": True}, {"gpt": "a.ckpt"}),
    ({"gpt": "a.ckpt"}, {"gpt_weights": "a.ckpt", "sovits_weights": None, "switched": True}, None),  # already
    ({"gpt": "a.ckpt"}, {"gpt_weights": "a.ckpt", "sovits_weights": "s.pth", "switched": True},
     {"gpt": "a.ckpt", "sovits": "s.pth"}),
    ({"gpt": "b.ckpt"}, {"gpt_weights": "a.ckpt", "sovits_weights": None, "switched": False}, None),  # an old replica
])
def test_only_a_switch_made_through_a_router_is_written(current, reported, expected):
    assert to_persist(DefaultWeightsSpec(**current), reported) == expected


@pytest.mark.unit
def test_every_router_replica_starts_with_the_persisted_choice():
    spec = parse_spec({"defaultWeights": {"gpt": "gpt/alice.ckpt", "sovits": "sovits/alice.pth"}})
    env = router_deployment("c", spec)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "TTSC_ROUTER_DEFAULT_GPT_WEIGHTS", "value": "gpt/alice.ckpt"} in env
    assert {"name": "TTSC_ROUTER_DEFAULT_SOVITS_WEIGHTS", "value": "sovits/alice.pth"} in env
    assert "env" not in router_deployment("c", parse_spec({}))["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.kube
def test_a_switch_through_the_router_lands_in_the_spec(tmp_path, voice_dir, logs_dir, spawn_router):
    models = tmp_path / "models"
    models.mkdir()
    (models / "a.ckpt").write_bytes(b"weights")
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--models-dir", str(models)],
                          logs_dir, env={"TTSC_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        router = spawn_router(worker, env={"TTSC_ROUTER_ADMIN_TOKEN": ADMIN_TOKEN})
        with KubeAPI(resources=[TTSCLUSTER, *EXTRA]) as kube:
            cluster = Cluster(kube, tmp_path)
            cluster.start_operator("--router-url", "http://127.0.0.1:{port}")
            try:
                cluster.create("dw", {"workers": {"replicas": 0, "minReplicas": 0}, "router": {"port": router.port},
                                      "admin": {"tokenSecret": "admin"}})
                eventually(lambda: cluster.apps.read_namespaced_deployment("dw-router", NS),
                           ignore=(kubernetes.client.ApiException,))
                assert "defaultWeights" not in cluster.get("dw")["spec"]  # nothing switched: nothing written
                r = httpx.get(f"{router.url}/set_gpt_weights", params={"weights_path": "a.ckpt"},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
                assert r.status_code == 200, r.text
                eventually(lambda: cluster.get("dw")["spec"].get("defaultWeights") == {"gpt": "a.ckpt"}, timeout=20)
                assert eventually(lambda: cluster.events("DefaultVoiceSwitched"))

                def router_env() -> list:
                    deployment = cluster.apps.read_namespaced_deployment("dw-router", NS)
                    return [(e.name, e.value) for e in deployment.spec.template.spec.containers[0].env or []]

                eventually(lambda: ("TTSC_ROUTER_DEFAULT_GPT_WEIGHTS", "a.ckpt") in router_env())
            finally:
                cluster.stop_operator()
    finally:
        worker.stop()
