"""Kubernetes discovery: the router follows the workers' EndpointSlices and the draining label, served by the
kmock-based API server on 127.0.0.1 and read by the real `kubernetes` client inside the router process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import kubernetes
import pytest

from support.kube_emulator import KubeAPI
from support.params import tts_params
from support.wait import eventually

pytestmark = pytest.mark.process

NS = "default"


@pytest.fixture
def kube() -> Iterator[KubeAPI]:
    with KubeAPI() as api:
        yield api


def endpoint_slice(name: str, pod: str, port: int, ready: bool = True) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": "tts-workers"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready},
                       "targetRef": {"kind": "Pod", "name": pod, "namespace": NS}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def pod(name: str, draining: bool) -> dict:
    labels = {"app.kubernetes.io/component": "worker"}
    if draining:
        labels["tts-cluster.io/draining"] = "true"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "worker", "image": "tts-cluster-worker"}]}}


def workers_seen(router) -> dict[str, dict]:
    return {w["name"]: w for w in httpx.get(f"{router.url}/concurrent_stats").json()["workers"]}


def test_router_follows_endpointslices_and_the_draining_label(kube, spawn_worker, spawn_router):
    kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path))
    api = kubernetes.client.ApiClient()
    slices, core = kubernetes.client.DiscoveryV1Api(api), kubernetes.client.CoreV1Api(api)
    w1, w2 = spawn_worker(), spawn_worker()
    router = spawn_router(
        args=("--discovery", "kubernetes", "--kubeconfig", str(kube.kubeconfig_path), "--k8s-namespace", NS),
        wait_ready=False,
    )
    eventually(lambda: httpx.get(f"{router.url}/healthz").status_code == 200 if _up(router) else False)
    assert workers_seen(router) == {}

    slices.create_namespaced_endpoint_slice(NS, endpoint_slice("workers-a", "worker-a", w1.port))
    eventually(lambda: httpx.get(f"{router.url}/concurrent_stats").json()["mode"] == "single")
    slices.create_namespaced_endpoint_slice(NS, endpoint_slice("workers-b", "worker-b", w2.port))
    eventually(lambda: httpx.get(f"{router.url}/concurrent_stats").json()["mode"] == "concurrent")
    assert set(workers_seen(router)) == {"worker-a", "worker-b"}

    # Not ready: no longer a target.
    slices.patch_namespaced_endpoint_slice("workers-b", NS, endpoint_slice("workers-b", "worker-b", w2.port, ready=False))
    eventually(lambda: set(workers_seen(router)) == {"worker-a"})
    slices.patch_namespaced_endpoint_slice("workers-b", NS, endpoint_slice("workers-b", "worker-b", w2.port))
    eventually(lambda: set(workers_seen(router)) == {"worker-a", "worker-b"})

    # The operator's draining label: still known, no new requests.
    core.create_namespaced_pod(NS, pod("worker-a", draining=True))
    eventually(lambda: workers_seen(router)["worker-a"]["draining"])
    eventually(lambda: httpx.get(f"{router.url}/concurrent_stats").json()["mode"] == "single")
    for _ in range(4):
        r = httpx.post(f"{router.url}/tts", json=tts_params(), timeout=30)
        assert r.status_code == 200 and r.headers["x-worker-id"].endswith(f":{w2.port}")
    core.patch_namespaced_pod("worker-a", NS, {"metadata": {"labels": {"tts-cluster.io/draining": None}}})
    eventually(lambda: not workers_seen(router)["worker-a"]["draining"])

    slices.delete_namespaced_endpoint_slice("workers-a", NS)
    eventually(lambda: set(workers_seen(router)) == {"worker-b"})


def _up(router) -> bool:
    try:
        httpx.get(f"{router.url}/healthz", timeout=0.5)
        return True
    except httpx.HTTPError:
        return False
