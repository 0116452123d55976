"""The real kopf operator process against the Kubernetes API emulator, and the kubelet's part played by hand.

Used by tests/operator/test_operator.py and by the chaos suite's operator scenario (bench/chaos_operator.py).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import httpx
import kubernetes
import kubernetes.utils
import yaml
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi

from support.kube_emulator import KubeAPI, Resource
from support.paths import CHART
from support.wait import eventually
from tts_cli.processes import free_port

NS = "default"
GROUP, VERSION, PLURAL = "tts-cluster.io", "v1alpha1", "ttsclusters"
EXTRA = [
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
]


RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
OPERATOR_SA = "tts-cluster-operator"  # the chart's ServiceAccount for the operator, released as "tts-cluster"


@functools.lru_cache(maxsize=8)
def _chart_rbac(values_json: str) -> tuple[str, ...]:
    import helm_python as helm

    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(json.loads(values_json), name="tts-cluster", namespace=NS, is_install=True)
    docs = [d for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d and d["kind"] in RBAC_KINDS]
    return tuple(json.dumps(d) for d in docs)


def chart_rbac(values: dict | None = None) -> list[dict]:
    """The operator's ServiceAccount and RBAC as the chart renders them (real Helm) for the release "tts-cluster"
    in the test namespace: the same objects `helm install` would create."""
    return [json.loads(d) for d in _chart_rbac(json.dumps({"tests": {"enabled": False}, **(values or {})}))]


class Cluster:
    def __init__(self, kube: KubeAPI, log_dir: Path) -> None:
        self.kube = kube
        self.log_dir = log_dir
        kubernetes.config.load_kube_config(config_file=str(kube.kubeconfig_path))
        api = ApiClient()
        self.api = api
        self.core, self.apps, self.custom = CoreV1Api(api), AppsV1Api(api), CustomObjectsApi(api)
        self.operator: subprocess.Popen | None = None
        self.liveness = 0

    def install_operator_rbac(self, values: dict | None = None) -> None:
        """Create the chart's operator ServiceAccount and RBAC (those already there are kept, as a second replica
        of the operator finds them)."""
        for obj in chart_rbac(values):
            try:
                kubernetes.utils.create_from_dict(self.api, obj, namespace=NS)
            except kubernetes.utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise

    def start_operator(self, *extra: str, service_account: str | None = OPERATOR_SA,
                       rbac_values: dict | None = None) -> None:
        """The operator process, authenticated as the chart's ServiceAccount with the chart's RBAC: a permission
        the chart lacks is a 403 here, as in a cluster. ``service_account=None`` runs it as the cluster admin;
        a name other than the default is one a Helm release in the test already created."""
        if service_account == OPERATOR_SA:
            if rbac_values is None:  # the chart's values for the mode the flags ask for
                operator: dict = {}
                if "--peering" in extra:
                    operator["replicas"] = 2  # the chart grants (cluster)kopfpeerings to 2+ replicas
                if "--all-namespaces" in extra:
                    operator["watchAllNamespaces"] = True  # a ClusterRole instead of a Role
                rbac_values = {"operator": operator}
            self.install_operator_rbac(rbac_values)
        kubeconfig = (self.kube.kubeconfig_for(NS, service_account) if service_account
                      else self.kube.kubeconfig_path)
        scope = ["--all-namespaces"] if "--all-namespaces" in extra else ["--namespace", NS]
        self.liveness = free_port()
        log = open(self.log_dir / "operator.log", "ab")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "tts_cli", "operator", *scope, "--kubeconfig",
             str(kubeconfig), "--interval", "0.3", "--liveness",
             f"http://127.0.0.1:{self.liveness}/healthz", "--not-ready-seconds", "30",
             *[a for a in extra if a != "--all-namespaces"]],
            stdout=log, stderr=subprocess.STDOUT,
        )
        eventually(lambda: httpx.get(f"http://127.0.0.1:{self.liveness}/healthz", timeout=1).status_code == 200,
                   timeout=30, ignore=(httpx.HTTPError,))

    def stop_operator(self) -> None:
        if self.operator and self.operator.poll() is None:
            self.operator.terminate()
            self.operator.wait(30)

    def log(self) -> str:
        return (self.log_dir / "operator.log").read_text(errors="replace")

    # -- TTSCluster ----------------------------------------------------------------------------------------
    def create(self, name: str, spec: dict) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TTSCluster", "metadata": {"name": name}, "spec": spec})

    def get(self, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    def patch_spec(self, name: str, spec: dict) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, {"spec": spec})

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    # -- the kubelet's part --------------------------------------------------------------------------------
    def workers(self, name: str) -> list:
        pods = self.core.list_namespaced_pod(NS, label_selector=f"tts-cluster.io/cluster={name},"
                                                                 "app.kubernetes.io/component=worker").items
        return sorted([p for p in pods if not p.metadata.deletion_timestamp], key=lambda p: p.metadata.name)

    def run_pod(self, pod_name: str, ip: str = "10.0.0.1", ready: bool = True, phase: str = "Running",
                waiting: str | None = None, restarts: int = 0) -> None:
        status: dict = {"phase": phase, "podIP": ip,
                        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
        if waiting:
            status["containerStatuses"] = [{"name": "worker", "ready": False, "restartCount": restarts,
                                            "image": "w", "imageID": "", "state": {"waiting": {"reason": waiting}}}]
        self.core.patch_namespaced_pod_status(pod_name, NS, {"status": status})

    def run_all(self, name: str, ip: str = "10.0.0.1") -> None:
        for pod in self.workers(name):
            self.run_pod(pod.metadata.name, ip)

    def router_available(self, name: str) -> None:
        self.apps.patch_namespaced_deployment_status(
            f"{name}-router", NS, {"status": {"replicas": 1, "availableReplicas": 1, "readyReplicas": 1}})

    def events(self, reason: str) -> list:
        return [e for e in self.core.list_namespaced_event(NS).items if e.reason == reason]
