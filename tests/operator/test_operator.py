"""The real kopf operator process against a real HTTP Kubernetes API (kmock's emulator on 127.0.0.1).

Nothing runs pods in the emulator, so these tests play the kubelet (an allowed double): they set pod phase,
readiness and podIP, and point pods at real worker processes on 127.0.0.x so drains read real /stats.
The operator runs as the chart's ServiceAccount under the chart's RBAC; what a TTSCluster owns goes with it through the
emulator's garbage collector (owner references).
"""

from __future__ import annotations

import time

import httpx
import kubernetes
import pytest

from support.kube_emulator import CLUSTER_KOPFPEERING, KOPFPEERING, TTSCLUSTER, KubeAPI
from support.operator_cluster import EXTRA, GROUP, NS, PLURAL, VERSION, Cluster
from support.wait import eventually
from tts_cli.processes import free_port, start_worker

pytestmark = pytest.mark.kube


def test_create_makes_router_and_workers_with_the_right_specs(cluster):
    cluster.create("voice", {"workers": {"replicas": 3, "maxQueueSize": 7, "ttsInferYaml": "custom:\n  device: cuda\n",
                                         "nodeSelector": {"gpu": "a100"}},
                             "router": {"serviceType": "LoadBalancer"}})
    pods = eventually(lambda: len(w := cluster.workers("voice")) == 3 and w)
    owner = cluster.get("voice")["metadata"]["uid"]
    for pod in pods:
        c = pod.spec.containers[0]
        assert c.resources.limits == {"nvidia.com/gpu": "1"} or c.resources.limits == {"nvidia.com/gpu": 1}
        assert c.readiness_probe.http_get.path == "/readyz"
        assert "--max-queue-size" in c.args and c.args[c.args.index("--max-queue-size") + 1] == "7"
        assert c.args[c.args.index("--tts-config") + 1] == "/etc/tts-cluster/tts_infer.yaml"
        assert pod.spec.node_selector == {"gpu": "a100"}
        assert pod.metadata.labels["app.kubernetes.io/name"] == "tts-cluster"
        assert [r.uid for r in pod.metadata.owner_references] == [owner]
    svc = cluster.core.read_namespaced_service("voice-workers", NS)
    assert svc.spec.cluster_ip == "None"
    assert cluster.core.read_namespaced_service("voice", NS).spec.type == "LoadBalancer"
    router = cluster.apps.read_namespaced_deployment("voice-router", NS)
    args = router.spec.template.spec.containers[0].args
    assert args[:1] == ["router"] and "kubernetes" in args and "voice-workers" in args
    cm = cluster.core.read_namespaced_config_map("voice-tts-infer", NS)
    assert cm.data["tts_infer.yaml"].startswith("custom:")
    eventually(lambda: cluster.events("CreatedWorker"))


def test_status_conditions_and_mode_follow_the_pods(cluster):
    cluster.create("st", {"workers": {"replicas": 2}})
    eventually(lambda: len(cluster.workers("st")) == 2)
    status = eventually(lambda: (s := cluster.get("st").get("status", {})).get("workers") == 2 and s)
    assert status["mode"] == "unavailable" and status["readyWorkers"] == 0
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False", "Progressing": "True", "Degraded": "True"}
    pods = cluster.workers("st")
    cluster.run_pod(pods[0].metadata.name)
    eventually(lambda: cluster.get("st")["status"].get("mode") == "single")
    cluster.run_pod(pods[1].metadata.name)
    cluster.router_available("st")
    status = eventually(lambda: (s := cluster.get("st")["status"]).get("mode") == "concurrent"
                        and s["conditions"][0]["status"] == "True" and s)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True", "Progressing": "False", "Degraded": "False"}
    assert status["observedGeneration"] == cluster.get("st")["metadata"]["generation"]
    assert status["routerEndpoint"] == "http://st.default.svc:9880"


def test_scale_up_and_down_through_the_spec(cluster):
    cluster.create("sc", {"workers": {"replicas": 1}, "drainTimeoutSeconds": 5})
    eventually(lambda: len(cluster.workers("sc")) == 1)
    cluster.patch_spec("sc", {"workers": {"replicas": 4}})
    eventually(lambda: len(cluster.workers("sc")) == 4)
    cluster.run_all("sc", ip="127.0.0.250")  # nothing listens there: no requests held, drains at once
    cluster.patch_spec("sc", {"workers": {"replicas": 2}})
    eventually(lambda: len(cluster.workers("sc")) == 2)
    eventually(lambda: len(cluster.events("RemovedWorker")) == 2)  # kopf posts Events in the background
    assert eventually(lambda: cluster.get("sc")["status"].get("workers") == 2)


def test_scale_down_drains_the_least_loaded_worker_first(cluster, voice_dir, logs_dir):
    port = free_port()
    busy = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-base-seconds", "5",
                         "--max-queue-size", "5"], logs_dir, port=port)
    light = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-base-seconds", "5",
                          "--max-queue-size", "5"], logs_dir, port=port, host="127.0.0.2")
    try:
        cluster.create("dr", {"workers": {"replicas": 2, "port": port}, "drainTimeoutSeconds": 60})
        a, b = eventually(lambda: len(w := cluster.workers("dr")) == 2 and w)
        cluster.run_pod(a.metadata.name, ip="127.0.0.1")
        cluster.run_pod(b.metadata.name, ip="127.0.0.2")
        body = {"text": "Hi.", "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en"}
        import threading

        threads = [threading.Thread(target=httpx.post, args=(f"{busy.url}/tts",), kwargs={"json": body, "timeout": 60})
                   for _ in range(3)]
        threads.append(threading.Thread(target=httpx.post, args=(f"{light.url}/tts",),
                                        kwargs={"json": body, "timeout": 60}))
        for t in threads:
            t.start()
        eventually(lambda: httpx.get(f"{light.url}/stats").json()["in_flight"] == 1)
        cluster.patch_spec("dr", {"workers": {"replicas": 1}})
        # The lighter worker (1 request) is marked draining, and stays until its request is done.
        drained = eventually(lambda: [p for p in cluster.workers("dr")
                                      if (p.metadata.labels or {}).get("tts-cluster.io/draining") == "true"])
        assert [p.metadata.name for p in drained] == [b.metadata.name]
        assert httpx.get(f"{light.url}/stats").json()["in_flight"] == 1
        assert b.metadata.name in [p.metadata.name for p in cluster.workers("dr")]
        eventually(lambda: [p.metadata.name for p in cluster.workers("dr")] == [a.metadata.name])
        assert httpx.get(f"{light.url}/stats").json()["processed"] == 1  # it finished before removal
        for t in threads:
            t.join(60)
    finally:
        busy.stop()
        light.stop()


@pytest.mark.parametrize("breakage,reason", [
    ({"phase": "Failed"}, "PodFailed"),
    ({"phase": "Running", "ready": False, "waiting": "CrashLoopBackOff", "restarts": 7}, "CrashLoopBackOff"),
    ({"phase": "Unknown", "ready": False}, "NodeLost"),
])
def test_failed_workers_are_replaced_with_an_event(cluster, breakage, reason):
    cluster.create("rp", {"workers": {"replicas": 2}})
    first = eventually(lambda: len(w := cluster.workers("rp")) == 2 and w)
    victim = first[0].metadata.name
    cluster.run_pod(victim, **breakage)
    eventually(lambda: victim not in [p.metadata.name for p in cluster.workers("rp")]
               and len(cluster.workers("rp")) == 2)
    eventually(lambda: any(victim in e.message and reason in e.message for e in cluster.events("ReplacingWorker")))


def test_a_worker_deleted_by_hand_is_replaced(cluster):
    cluster.create("hd", {"workers": {"replicas": 2}})
    first = eventually(lambda: len(w := cluster.workers("hd")) == 2 and w)
    cluster.core.delete_namespaced_pod(first[0].metadata.name, NS)
    eventually(lambda: len(cluster.workers("hd")) == 2
               and first[0].metadata.name not in [p.metadata.name for p in cluster.workers("hd")])
    eventually(lambda: any(first[0].metadata.name in e.message for e in cluster.events("WorkerDeleted")))


def test_operator_restart_makes_no_duplicates(cluster):
    cluster.create("rs", {"workers": {"replicas": 3}})
    eventually(lambda: len(cluster.workers("rs")) == 3)
    before = [p.metadata.name for p in cluster.workers("rs")]
    cluster.stop_operator()
    cluster.start_operator()
    time.sleep(2)  # several reconciliation intervals of the new process
    assert [p.metadata.name for p in cluster.workers("rs")] == before


def test_delete_removes_everything_it_owned(cluster):
    cluster.create("gone", {"workers": {"replicas": 2}})
    eventually(lambda: len(cluster.workers("gone")) == 2)
    eventually(lambda: _exists(cluster.apps.read_namespaced_deployment, "gone-router"))
    cluster.delete("gone")
    eventually(lambda: not cluster.workers("gone"))
    eventually(lambda: not _exists(cluster.core.read_namespaced_service, "gone-workers"))
    assert not _exists(cluster.apps.read_namespaced_deployment, "gone-router")
    assert not _exists(cluster.core.read_namespaced_service, "gone")
    time.sleep(1)  # several timer intervals: nothing comes back
    assert not cluster.workers("gone") and not _exists(cluster.core.read_namespaced_service, "gone")


def test_an_invalid_spec_is_reported_not_acted_on(tmp_path):
    # The CRD's rules refuse this spec (tests/operator/test_kube_admission.py); an API server before Kubernetes
    # 1.25 does not evaluate them and stores it, and then the operator refuses it itself.
    with KubeAPI(resources=[TTSCLUSTER], validation_rules=False) as kube:
        cluster = Cluster(kube, tmp_path)
        cluster.start_operator()
        try:
            cluster.create("bad", {"workers": {"replicas": 1, "minReplicas": 5, "maxReplicas": 2}})
            status = eventually(lambda: (s := cluster.get("bad").get("status", {})).get("conditions") and s)
            degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
            assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
            assert "minReplicas must not exceed" in degraded["message"]
            assert cluster.workers("bad") == []
        finally:
            cluster.stop_operator()


def _exists(read, name: str) -> bool:
    try:
        read(name, NS)
        return True
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def test_autoscaling_follows_the_routers_queue_depth(cluster, voice_dir, logs_dir, spawn_router):
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir), "--synthetic-base-seconds", "3",
                           "--max-queue-size", "10"], logs_dir)
    try:
        router = spawn_router(worker)
        cluster.stop_operator()
        cluster.start_operator("--router-url", "http://127.0.0.1:{port}")
        cluster.create("auto", {"workers": {"replicas": 1, "minReplicas": 1, "maxReplicas": 4},
                                "router": {"port": router.port},
                                "autoscaling": {"enabled": True, "targetQueueDepth": 2,
                                                "scaleUpStabilizationSeconds": 0, "scaleDownStabilizationSeconds": 0}})
        eventually(lambda: len(cluster.workers("auto")) == 1)
        body = {"text": "Hi.", "text_lang": "en", "ref_audio_path": "reference.wav", "prompt_lang": "en"}
        import threading

        threads = [threading.Thread(target=httpx.post, args=(f"{router.url}/tts",), kwargs={"json": body, "timeout": 60})
                   for _ in range(6)]
        for t in threads:
            t.start()
        # 6 admitted, 2 per worker wanted: 3 workers, written to the spec (and so to the scale subresource)
        eventually(lambda: cluster.get("auto")["spec"]["workers"]["replicas"] == 3, timeout=20)
        eventually(lambda: len(cluster.workers("auto")) == 3)
        eventually(lambda: cluster.events("Autoscaled"))
        for t in threads:
            t.join(60)
        # idle again: back to minReplicas
        eventually(lambda: cluster.get("auto")["spec"]["workers"]["replicas"] == 1, timeout=30)
    finally:
        worker.stop()


@pytest.mark.parametrize("all_namespaces", [False, True], ids=["namespaced", "all-namespaces"])
def test_two_peered_operators_act_once(tmp_path, all_namespaces):
    """kopf peering: two replicas with (random, so different) priorities: the higher acts, the other stands by.
    Watching all namespaces, kopf peers through a ClusterKopfPeering (the chart ships its CRD and grants it)."""
    with KubeAPI(resources=[TTSCLUSTER, *EXTRA, KOPFPEERING, CLUSTER_KOPFPEERING]) as kube:
        c = Cluster(kube, tmp_path)
        if all_namespaces:
            c.custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
                "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "tts-cluster"}})
        else:
            c.custom.create_namespaced_custom_object("kopf.dev", "v1", NS, "kopfpeerings", {
                "apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "tts-cluster"}})
        second = Cluster(kube, tmp_path / "second")
        (tmp_path / "second").mkdir()
        scope = ["--all-namespaces"] if all_namespaces else []
        try:
            c.start_operator("--peering", "tts-cluster", *scope)
            second.start_operator("--peering", "tts-cluster", *scope)
            c.create("peer", {"workers": {"replicas": 3}})
            eventually(lambda: len(c.workers("peer")) == 3)
            time.sleep(2)  # many reconciliation intervals of both replicas
            assert len(c.workers("peer")) == 3
            if all_namespaces:
                peers = c.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "tts-cluster")
            else:
                peers = c.custom.get_namespaced_custom_object("kopf.dev", "v1", NS, "kopfpeerings", "tts-cluster")
            assert len(peers.get("status", {})) == 2  # both replicas registered themselves
        finally:
            c.stop_operator()
            second.stop_operator()
        assert kube.refusals() == []


def test_a_worker_never_ready_is_replaced(cluster):
    cluster.stop_operator()
    cluster.start_operator("--not-ready-seconds", "1.5")
    cluster.create("nr", {"workers": {"replicas": 1}})
    first = eventually(lambda: cluster.workers("nr"))[0].metadata.name
    cluster.run_pod(first, ready=False)  # running, but /readyz never passes
    # One listing per check: between two, the replacement may be half done (old one deleted, new one not yet made).
    eventually(lambda: (now := cluster.workers("nr")) and now[0].metadata.name != first, timeout=20)
    eventually(lambda: any(first in e.message and "NotReady" in e.message for e in cluster.events("ReplacingWorker")))


def test_scale_subresource_scales_workers(cluster):
    cluster.create("ss", {"workers": {"replicas": 1}})
    eventually(lambda: len(cluster.workers("ss")) == 1)
    cluster.custom.patch_namespaced_custom_object_scale(GROUP, VERSION, NS, PLURAL, "ss", {"spec": {"replicas": 3}})
    eventually(lambda: len(cluster.workers("ss")) == 3)
    scale = eventually(lambda: (s := cluster.custom.get_namespaced_custom_object_scale(
        GROUP, VERSION, NS, PLURAL, "ss"))["status"].get("replicas") == 3 and s)
    assert scale["spec"]["replicas"] == 3
    assert "tts-cluster.io/cluster=ss" in scale["status"]["selector"]
