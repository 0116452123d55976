"""Least privilege: the operator, run with the chart's ServiceAccount token, uses every permission the chart grants
it, and is refused none (a refusal would fail the test; every operator test also checks for none, see conftest).

The scenario walks each of the operator's code paths that calls the API: create (pods, Services, ConfigMap, the
router's Deployment, ServiceAccount and RBAC), re-apply on the next reconciliation (patches), the status, Events,
autoscaling through the scale subresource, a drain on scale-down (relabel, then delete), and a worker deleted by
someone else (read the TTSCluster, post WorkerDeleted, replace it).
"""

from __future__ import annotations

import pytest

from support.kube_emulator import TTSCLUSTER, KubeAPI
from support.operator_cluster import EXTRA, NS, OPERATOR_SA, Cluster, chart_rbac
from support.wait import eventually
from tts_cli.processes import start_worker
from tts_operator.resources import router_role

pytestmark = pytest.mark.kube

USER = f"system:serviceaccount:{NS}:{OPERATOR_SA}"


def broken_down(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {(verb, group, resource) for rule in rules for verb in rule["verbs"]
            for group in rule["apiGroups"] for resource in rule["resources"]}


def test_the_chart_grants_the_operator_nothing_it_does_not_use(tmp_path, voice_dir, logs_dir, spawn_router):
    worker = start_worker(["--engine", "synthetic", "--voice-dir", str(voice_dir)], logs_dir)
    with KubeAPI(resources=[TTSCLUSTER, *EXTRA]) as kube:
        cluster = Cluster(kube, tmp_path)
        try:
            router = spawn_router(worker)
            cluster.start_operator("--router-url", "http://127.0.0.1:{port}", "--not-ready-seconds", "600")
            cluster.create("lp", {"workers": {"replicas": 2, "minReplicas": 1, "maxReplicas": 3},
                                  "drainTimeoutSeconds": 5, "router": {"port": router.port}})
            eventually(lambda: len(cluster.workers("lp")) == 2, timeout=20)
            cluster.run_all("lp", ip="127.0.0.250")  # nothing listens there: a drain ends at once
            # The router is idle: once autoscaling is on, the autoscaler asks for minReplicas through the scale
            # subresource, and the operator drains one running worker (relabels it, then deletes it).
            cluster.patch_spec("lp", {"autoscaling": {"enabled": True, "targetQueueDepth": 2,
                                                      "scaleUpStabilizationSeconds": 0,
                                                      "scaleDownStabilizationSeconds": 0}})
            eventually(lambda: cluster.get("lp")["spec"]["workers"]["replicas"] == 1, timeout=30)
            eventually(lambda: len(cluster.workers("lp")) == 1, timeout=30)
            # A worker deleted by someone else: the operator reads its TTSCluster for the Event, and replaces it.
            gone = cluster.workers("lp")[0].metadata.name
            cluster.core.delete_namespaced_pod(gone, NS)
            eventually(lambda: cluster.events("WorkerDeleted"), timeout=20)
            eventually(lambda: [p.metadata.name for p in cluster.workers("lp")] not in ([], [gone]), timeout=20)
        finally:
            cluster.stop_operator()
            worker.stop()
        assert kube.refusals() == []
        granted = broken_down(next(d for d in chart_rbac() if d["kind"] == "Role")["rules"])
        used = {(verb, group, resource) for verb, group, resource, _ in kube.permissions_used(USER)}
        # Held only to be granted: Kubernetes lets the operator create the router's Role only with what it holds.
        grant_only = broken_down(router_role("lp")["rules"])
        assert granted - used - grant_only == set()
        assert grant_only <= granted
