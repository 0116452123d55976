"""The few Kubernetes API calls the operator makes, on lightkube's synchronous client (kopf runs sync handlers on a
thread pool). lightkube rather than the official `kubernetes` client: it does the same calls in a fraction of the
router image's size (the official client and its models are about 126 MB installed; lightkube about 5 MB)."""

from __future__ import annotations

from typing import Any, cast

from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from .spec import GROUP, KIND, PLURAL, VERSION

TTSClusterResource = create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)

# Kinds a TTSCluster owns and the operator writes: they go with it through their owner references.
OWNED_KINDS = frozenset({"ConfigMap", "Service", "ServiceAccount", "Deployment", "Role", "RoleBinding", "Pod"})


def client_for(kubeconfig: str | None) -> Client:
    """The given kubeconfig; else in-cluster (the pod's service account); else $KUBECONFIG or ~/.kube/config."""
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    return Client(config, field_manager="tts-cluster-operator")


def _status(exc: ApiError) -> int:
    return int(exc.status.code or 0)


class Kube:
    def __init__(self, client: Client) -> None:
        self.client = client

    @staticmethod
    def _typed(obj: dict[str, Any]) -> NamespacedResource:
        if obj.get("kind") not in OWNED_KINDS:
            raise ValueError(f"the operator does not write {obj.get('kind')!r} objects")
        typed = from_dict(obj)
        assert isinstance(typed, NamespacedResource)
        return typed

    def apply(self, namespace: str, obj: dict[str, Any]) -> str:
        """Create, or bring an existing object to `obj` with a strategic merge patch (what `kubectl apply` sends
        for built-in kinds). Returns "created" or "updated"."""
        typed = self._typed(obj)
        try:
            self.client.create(typed, namespace=namespace)
            return "created"
        except ApiError as exc:
            if _status(exc) != 409:
                raise
        self.client.patch(type(typed), obj["metadata"]["name"], obj, namespace=namespace,
                          patch_type=PatchType.STRATEGIC)
        return "updated"

    def create_if_absent(self, namespace: str, obj: dict[str, Any]) -> bool:
        """Create `obj` unless one of its name exists (that one is left as it is). Returns whether it created."""
        try:
            self.client.create(self._typed(obj), namespace=namespace)
            return True
        except ApiError as exc:
            if _status(exc) != 409:
                raise
        return False

    def list_pods(self, namespace: str, selector: dict[str, str]) -> list[dict[str, Any]]:
        labels: dict[str, Any] = dict(selector)
        return [pod.to_dict() for pod in self.client.list(Pod, namespace=namespace, labels=labels)]

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> dict[str, Any]:
        created = self.client.create(self._typed(pod), namespace=namespace)
        return cast(dict[str, Any], created.to_dict())  # type: ignore[attr-defined]

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.client.delete(Pod, name, namespace=namespace)
        except ApiError as exc:
            if _status(exc) != 404:
                raise

    def patch_pod_metadata(self, namespace: str, name: str, metadata: dict[str, Any]) -> None:
        self.client.patch(Pod, name, {"metadata": metadata}, namespace=namespace)

    def deployment_available(self, namespace: str, name: str) -> int:
        try:
            d = self.client.get(Deployment, name, namespace=namespace)
        except ApiError as exc:
            if _status(exc) == 404:
                return 0
            raise
        return int((d.status and d.status.availableReplicas) or 0)

    def get_cluster(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.client.get(TTSClusterResource, name, namespace=namespace)
        return dict(found.to_dict())  # type: ignore[no-untyped-call]

    def patch_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        """A merge patch of a TTSCluster's spec (the default voice persisted from a router's switch). Custom
        resources take no strategic merge patch."""
        self.client.patch(TTSClusterResource, name, {"spec": spec}, namespace=namespace, patch_type=PatchType.MERGE)

    def set_worker_replicas(self, namespace: str, name: str, replicas: int) -> None:
        """Through the scale subresource, as `kubectl scale`, an HPA or KEDA would: the autoscaler never writes
        the user's spec directly (the CRD maps scale's replicas to spec.workers.replicas)."""
        self.client.patch(TTSClusterResource.Scale, name, {"spec": {"replicas": replicas}}, namespace=namespace,
                          patch_type=PatchType.MERGE)
