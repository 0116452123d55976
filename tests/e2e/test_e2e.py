"""The path a user takes, end to end, on one of two backends:

- the cluster ``E2E_KUBECONFIG`` names (any real cluster: kind, k3d, minikube; see docs/e2e.md), or
- when it is unset (CI), the API-server emulator with its scheduler, Deployment and EndpointSlice controllers.

Either way the project's own Helm SDK installs the chart, and a test agent plays kubelet for one node advertising two
GPUs (tests/support/kubelet_agent.py: each pod runs as a local process on its own 127.0.0.N). The operator, the
router and the workers are this checkout's real processes, started from their pods' specs; they find each other only
through the API (the router through the workers' EndpointSlices, with its own ServiceAccount's token).

One test, in the order a user meets things: install with one worker more than GPUs (it stays Pending and the
TTSCluster says so), audio through the router, a worker's process killed and restarted, a worker deleted and replaced, `kubectl scale` down with traffic
running (a drain: nothing lost), `helm upgrade` with traffic running, then `helm uninstall`, which leaves nothing
behind but the CRDs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from support.e2e_backend import GROUP, PLURAL, RELEASE, VERSION, Backend
from support.kubelet_agent import KubeletAgent
from support.params import tts_params
from support.paths import CHART
from support.wait import eventually

pytestmark = pytest.mark.kube

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the deploy extra) is not installed")

GPUS = 2
VALUES = {
    "tests": {"enabled": False},
    "operator": {"interval": 1},
    "ttsCluster": {"workers": {"engine": "synthetic", "replicas": GPUS + 1, "maxReplicas": 4},
                   "router": {"replicas": 1}, "drainTimeoutSeconds": 30},
}


class Traffic:
    """Requests through the router, one after another, until stopped: every answer must be audio."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                try:
                    r = client.get(f"{self.url}/tts", params=tts_params(text="Hello there."))
                    ok = r.status_code == 200 and r.content[:4] == b"RIFF"
                    self.answers.append(200 if ok else r.status_code)
                except httpx.HTTPError as exc:
                    self.answers.append(type(exc).__name__)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(70)


@pytest.mark.slow
def test_install_serve_replace_scale_upgrade_uninstall(backend: Backend, tmp_path: Path):
    agent = KubeletAgent(backend.kubeconfig, f"gpu-node-{uuid.uuid4().hex[:4]}", GPUS, tmp_path / "node").start()
    storage = {} if backend.real else {"storage_driver": "memory"}  # the emulator does not decode protobuf
    try:
        with helm.Config(namespace=backend.namespace, kubeconfig_path=str(backend.kubeconfig), **storage) as cfg:
            cfg.install(str(CHART), RELEASE, VALUES, timeout=60)

            # -- install: three workers wanted, two GPUs: one stays Pending, and the TTSCluster says why --
            eventually(lambda: any(backend.ready(p) for p in backend.pods("operator")), timeout=60)
            eventually(lambda: (s := backend.ttsc().get("status", {})).get("workers") == GPUS + 1
                       and s.get("readyWorkers") == GPUS, timeout=90)
            pending = [p for p in backend.pods("worker") if not p.spec.node_name]
            assert len(pending) == 1
            scheduled = next(c for c in pending[0].status.conditions if c.type == "PodScheduled")
            assert scheduled.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in scheduled.message
            degraded = eventually(lambda: next(c for c in backend.ttsc()["status"]["conditions"]
                                               if c["type"] == "Degraded" and c["reason"] == "WorkersUnschedulable"))
            assert "1 Pending" in degraded["message"] and "nvidia.com/gpu" in degraded["message"]
            events = eventually(lambda: [e for e in backend.core.list_namespaced_event(backend.namespace).items
                                         if e.reason == "WorkerUnschedulable"])
            assert pending[0].metadata.name in events[0].message

            # -- audio through the router, which found the workers through their EndpointSlices --
            url = eventually(backend.router_url, timeout=60)
            stats = eventually(lambda: (b := httpx.get(f"{url}/concurrent_stats", timeout=5).json())
                               and len([w for w in b["workers"] if w.get("healthy", True)]) == GPUS and b,
                               timeout=30, ignore=(httpx.HTTPError,))
            assert {w["url"].split("//")[1].split(":")[0] for w in stats["workers"]} == {
                p.status.pod_ip for p in backend.pods("worker") if backend.ready(p)}
            answer = httpx.get(f"{url}/tts", params=tts_params(), timeout=60)
            assert answer.status_code == 200 and answer.content[:4] == b"RIFF"

            # -- a worker's process killed: the node restarts its container, and it serves again --
            crashed = next(p for p in backend.pods("worker") if backend.ready(p)).metadata.name
            os.kill(agent.running()[crashed], signal.SIGKILL)
            eventually(lambda: (p := backend.core.read_namespaced_pod(crashed, backend.namespace)).status
                       .container_statuses[0].restart_count == 1 and backend.ready(p), timeout=60)
            answer = httpx.get(f"{url}/tts", params=tts_params(), timeout=60)
            assert answer.status_code == 200 and answer.content[:4] == b"RIFF"

            # -- a worker deleted: its GPU goes to the Pending one, and the operator makes a replacement --
            victim = next(p for p in backend.pods("worker") if backend.ready(p)).metadata.name
            backend.core.delete_namespaced_pod(victim, backend.namespace)
            eventually(lambda: victim not in {p.metadata.name for p in backend.pods("worker")}
                       and len(backend.pods("worker")) == GPUS + 1
                       and sum(backend.ready(p) for p in backend.pods("worker")) == GPUS, timeout=90)
            eventually(lambda: [e for e in backend.core.list_namespaced_event(backend.namespace).items
                                if e.reason == "WorkerDeleted" and victim in e.message])

            # -- kubectl scale down with traffic running: the drained worker finishes what it holds --
            with Traffic(url) as traffic:
                time.sleep(1)
                backend.custom.patch_namespaced_custom_object_scale(
                    GROUP, VERSION, backend.namespace, PLURAL, RELEASE, {"spec": {"replicas": 1}})
                eventually(lambda: len(backend.pods("worker")) == 1
                           and backend.ttsc()["status"].get("readyWorkers") == 1, timeout=90)
                time.sleep(1)
            assert traffic.answers and set(traffic.answers) == {200}, traffic.answers

            # -- helm upgrade with traffic running (a new operator pod; the count stays the scaled one) --
            before = {p.metadata.name for p in backend.pods("operator")}
            with Traffic(url) as traffic:
                cfg.upgrade(str(CHART), RELEASE, {**VALUES, "operator": {"interval": 1, "logLevel": "debug"}},
                            timeout=60)
                eventually(lambda: (now := backend.pods("operator")) and before.isdisjoint(
                    p.metadata.name for p in now) and all(backend.ready(p) for p in now), timeout=60)
                time.sleep(2)
            assert traffic.answers and set(traffic.answers) == {200}, traffic.answers
            assert backend.ttsc()["spec"]["workers"]["replicas"] == 1

            # -- uninstall: nothing left but the CRDs (Helm keeps them), and no process of any pod --
            cfg.uninstall(RELEASE, timeout=60)
        left = eventually(lambda: not backend.core.list_namespaced_pod(backend.namespace).items
                          and not backend.apps.list_namespaced_deployment(backend.namespace).items
                          and not [s for s in backend.core.list_namespaced_service(backend.namespace).items]
                          and not backend.core.list_namespaced_config_map(
                              backend.namespace, label_selector="app.kubernetes.io/part-of=tts-cluster").items,
                          timeout=60)
        assert left
        eventually(lambda: not agent.running(), timeout=60)  # every pod's process stopped
        assert agent.errors == []
    finally:
        agent.stop()
